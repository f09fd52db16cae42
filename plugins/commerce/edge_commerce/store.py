"""Durable state in SQLite: products, pins, views, clicks, orders and their history.

One file, ``<data_dir>/plugins/commerce/commerce.sqlite3``, in WAL mode with
``synchronous=FULL``: a transaction that returned is on disk, so an order the
buyer was told about survives a crash. ``Database`` is synchronous and owns
the connection; ``Store`` runs it on one worker thread so the node's event loop
never waits on the disk, and serialises every transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from .analytics import RoomCounts
from .catalog import Product
from .currency import Rates
from .orders import (
    CATALOG,
    RELEASES_STOCK,
    Answer,
    Order,
    accepted,
    check_transition,
    new_order_id,
    rejected,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    room TEXT NOT NULL,
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    image_url TEXT NOT NULL DEFAULT '',
    price_minor INTEGER NOT NULL CHECK (price_minor >= 0),
    currency TEXT NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (room, sku)
);
CREATE TABLE IF NOT EXISTS pins (
    room TEXT PRIMARY KEY,
    sku TEXT NOT NULL,
    pinned_by TEXT NOT NULL,
    pinned_at REAL NOT NULL,
    ends_at REAL
);
CREATE TABLE IF NOT EXISTS views (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS views_room ON views (room, identity);
CREATE TABLE IF NOT EXISTS clicks (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    sku TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS clicks_room ON clicks (room, sku);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    buyer TEXT NOT NULL,
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_minor INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    amount_base_minor INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'paid', 'expired', 'cancelled', 'refunded')),
    source TEXT NOT NULL,
    external_id TEXT NOT NULL DEFAULT '',
    payment_ref TEXT NOT NULL DEFAULT '',
    idem_key TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    paid_at REAL,
    UNIQUE (room, buyer, idem_key)
);
CREATE INDEX IF NOT EXISTS orders_room ON orders (room, created_at);
CREATE INDEX IF NOT EXISTS orders_open ON orders (state, expires_at);
CREATE TABLE IF NOT EXISTS order_events (
    id INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS order_events_order ON order_events (order_id, id);
CREATE TABLE IF NOT EXISTS idempotency (
    room TEXT NOT NULL,
    buyer TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    answer TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (room, buyer, key)
);
"""

ORDER_COLUMNS = (
    "order_id, room, buyer, sku, title, quantity, unit_price_minor, amount_minor, currency, "
    "amount_base_minor, state, source, external_id, payment_ref, idem_key, created_at, expires_at, "
    "updated_at, paid_at"
)
PRODUCT_COLUMNS = "room, sku, title, image_url, price_minor, currency, stock, created_at, updated_at"


class AlreadyExists(Exception):
    pass


class Database:
    """The synchronous store. Every public method is one transaction."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self.db)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return result

    # products ------------------------------------------------------------------------

    @staticmethod
    def _product(row: Iterable[Any] | None) -> Product | None:
        return None if row is None else Product(*row)

    def products(self, room: str) -> list[Product]:
        rows = self.db.execute(
            f"SELECT {PRODUCT_COLUMNS} FROM products WHERE room = ? ORDER BY created_at, sku", (room,)
        ).fetchall()
        return [Product(*row) for row in rows]

    def product(self, room: str, sku: str) -> Product | None:
        row = self.db.execute(
            f"SELECT {PRODUCT_COLUMNS} FROM products WHERE room = ? AND sku = ?", (room, sku)
        ).fetchone()
        return self._product(row)

    def create_product(self, room: str, columns: dict[str, Any], now: float) -> Product:
        def tx(db: sqlite3.Connection) -> Product:
            try:
                db.execute(
                    f"INSERT INTO products ({PRODUCT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        room, columns["sku"], columns["title"], columns["image_url"], columns["price_minor"],
                        columns["currency"], columns["stock"], now, now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(columns["sku"]) from None
            return Product(room=room, created_at=now, updated_at=now, **columns)

        return self._tx(tx)

    def update_product(self, room: str, sku: str, changes: dict[str, Any], now: float) -> Product | None:
        allowed = {"title", "image_url", "price_minor", "currency", "stock"}
        assert set(changes) <= allowed, changes

        def tx(db: sqlite3.Connection) -> Product | None:
            sets = ", ".join(f"{name} = ?" for name in changes)
            cur = db.execute(
                f"UPDATE products SET {sets}, updated_at = ? WHERE room = ? AND sku = ?",
                (*changes.values(), now, room, sku),
            )
            if cur.rowcount == 0:
                return None
            return self.product(room, sku)

        return self._tx(tx)

    def delete_product(self, room: str, sku: str) -> tuple[bool, bool]:
        """(deleted, was pinned). Orders keep their own copy of SKU and title."""

        def tx(db: sqlite3.Connection) -> tuple[bool, bool]:
            deleted = db.execute("DELETE FROM products WHERE room = ? AND sku = ?", (room, sku)).rowcount
            unpinned = db.execute("DELETE FROM pins WHERE room = ? AND sku = ?", (room, sku)).rowcount
            return bool(deleted), bool(unpinned)

        return self._tx(tx)

    # pins ----------------------------------------------------------------------------

    def set_pin(self, room: str, sku: str, by: str, now: float, ends_at: float | None) -> None:
        self._tx(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO pins (room, sku, pinned_by, pinned_at, ends_at) VALUES (?, ?, ?, ?, ?)",
                (room, sku, by, now, ends_at),
            )
        )

    def clear_pin(self, room: str, sku: str | None = None) -> bool:
        if sku is None:
            return bool(self._tx(lambda db: db.execute("DELETE FROM pins WHERE room = ?", (room,)).rowcount))
        return bool(
            self._tx(lambda db: db.execute("DELETE FROM pins WHERE room = ? AND sku = ?", (room, sku)).rowcount)
        )

    def pins(self) -> list[tuple[str, str, str, float, float | None]]:
        return self.db.execute("SELECT room, sku, pinned_by, pinned_at, ends_at FROM pins").fetchall()

    # views and clicks ----------------------------------------------------------------------

    def record_events(
        self, views: list[tuple[str, str, float]], clicks: list[tuple[str, str, str, float]]
    ) -> None:
        if not views and not clicks:
            return

        def tx(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO views (room, identity, ts) VALUES (?, ?, ?)", views)
            db.executemany("INSERT INTO clicks (room, identity, sku, ts) VALUES (?, ?, ?, ?)", clicks)

        self._tx(tx)

    def clicks(self, room: str) -> list[tuple[str, str, float]]:
        """(identity, sku, ts) of every recorded click in the room, oldest first."""
        return self.db.execute(
            "SELECT identity, sku, ts FROM clicks WHERE room = ? ORDER BY id", (room,)
        ).fetchall()

    def counts(self, room: str) -> RoomCounts:
        db = self.db
        views, unique_viewers = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT identity) FROM views WHERE room = ?", (room,)
        ).fetchone()
        (clicks,) = db.execute("SELECT COUNT(*) FROM clicks WHERE room = ?", (room,)).fetchone()
        (orders,) = db.execute("SELECT COUNT(*) FROM orders WHERE room = ?", (room,)).fetchone()
        paid, items, gmv, buyers = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(quantity), 0), COALESCE(SUM(amount_base_minor), 0), "
            "COUNT(DISTINCT buyer) FROM orders WHERE room = ? AND paid_at IS NOT NULL",
            (room,),
        ).fetchone()
        (refunds,) = db.execute(
            "SELECT COALESCE(SUM(amount_base_minor), 0) FROM orders WHERE room = ? AND state = 'refunded'",
            (room,),
        ).fetchone()
        return RoomCounts(views, unique_viewers, clicks, orders, paid, items, gmv, refunds, buyers)

    # orders -------------------------------------------------------------------------------

    @staticmethod
    def _order(row: Iterable[Any] | None) -> Order | None:
        return None if row is None else Order(*row)

    def order(self, order_id: str) -> Order | None:
        row = self.db.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return self._order(row)

    def orders(self, room: str, *, state: str | None = None, limit: int = 100) -> list[Order]:
        query = f"SELECT {ORDER_COLUMNS} FROM orders WHERE room = ?"
        args: list[Any] = [room]
        if state is not None:
            query += " AND state = ?"
            args.append(state)
        rows = self.db.execute(query + " ORDER BY created_at DESC, order_id DESC LIMIT ?", (*args, limit)).fetchall()
        return [Order(*row) for row in rows]

    def history(self, order_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT state, reason, ts FROM order_events WHERE order_id = ? ORDER BY id", (order_id,)
        ).fetchall()
        return [{"state": s, "reason": r, "ts": ts} for s, r, ts in rows]

    def open_orders(self) -> list[Order]:
        rows = self.db.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE state = 'reserved' ORDER BY expires_at"
        ).fetchall()
        return [Order(*row) for row in rows]

    def due_orders(self, now: float, limit: int = 500) -> list[Order]:
        rows = self.db.execute(
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE state = 'reserved' AND expires_at <= ? "
            "ORDER BY expires_at LIMIT ?",
            (now, limit),
        ).fetchall()
        return [Order(*row) for row in rows]

    def answer_for(self, room: str, buyer: str, key: str) -> tuple[str, Answer] | None:
        """(fingerprint, first answer) stored for this key, if any."""
        row = self.db.execute(
            "SELECT fingerprint, answer FROM idempotency WHERE room = ? AND buyer = ? AND key = ?",
            (room, buyer, key),
        ).fetchone()
        return None if row is None else (row[0], Answer.loads(row[1]))

    @staticmethod
    def _remember(db: sqlite3.Connection, room: str, buyer: str, key: str, fp: str, answer: Answer, now: float) -> None:
        db.execute(
            "INSERT INTO idempotency (room, buyer, key, fingerprint, answer, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (room, buyer, key, fp, answer.dumps(), now),
        )

    def _insert_order(self, db: sqlite3.Connection, order: Order, reason: str) -> None:
        db.execute(
            f"INSERT INTO orders ({ORDER_COLUMNS}) VALUES ({', '.join('?' * 19)})",
            (
                order.order_id, order.room, order.buyer, order.sku, order.title, order.quantity,
                order.unit_price_minor, order.amount_minor, order.currency, order.amount_base_minor,
                order.state, order.source, order.external_id, order.payment_ref, order.idem_key,
                order.created_at, order.expires_at, order.updated_at, order.paid_at,
            ),
        )
        db.execute(
            "INSERT INTO order_events (order_id, state, reason, ts) VALUES (?, ?, ?, ?)",
            (order.order_id, order.state, reason, order.created_at),
        )

    def place_catalog_order(
        self,
        *,
        room: str,
        buyer: str,
        key: str,
        fp: str,
        sku: str,
        quantity: int,
        currency: str,
        rates: Rates,
        now: float,
        ttl: float,
    ) -> tuple[Answer, Order | None, Product | None]:
        """Reserve ``quantity`` units of the room's catalog stock and create the order,
        or refuse. An acceptance, and a refusal that looked at the stock, are stored
        as the key's answer in the same transaction. Returns (answer, the new order
        or None, the product after)."""

        def tx(db: sqlite3.Connection) -> tuple[Answer, Order | None, Product | None]:
            found = self.answer_for(room, buyer, key)
            if found is not None:
                stored_fp, answer = found
                if stored_fp != fp:
                    return idempotency_conflict(sku, key), None, None
                return answer, None, None
            product = self.product(room, sku)
            if product is None:
                # Not remembered: the product may be added, and a retry then succeed.
                return rejected(sku, "not_found", key, f"no product {sku!r} in this room"), None, None
            if product.stock < quantity:
                if product.stock == 0:
                    answer = rejected(sku, "sold_out", key, "sold out", available=0)
                else:
                    answer = rejected(sku, "insufficient_stock", key, f"only {product.stock} left", available=product.stock)
                # Remembered: it looked at the stock, so a retry with this key sees the same answer.
                self._remember(db, room, buyer, key, fp, answer, now)
                return answer, None, product
            taken = db.execute(
                "UPDATE products SET stock = stock - ?, updated_at = ? WHERE room = ? AND sku = ? AND stock >= ?",
                (quantity, now, room, sku, quantity),
            ).rowcount
            assert taken == 1  # the row was read in this same transaction
            unit = rates.convert(product.price_minor, product.currency, currency)
            unit_base = rates.convert(product.price_minor, product.currency, rates.base)
            order = Order(
                order_id=new_order_id(), room=room, buyer=buyer, sku=sku, title=product.title,
                quantity=quantity, unit_price_minor=unit, amount_minor=unit * quantity, currency=currency,
                amount_base_minor=unit_base * quantity, state="reserved", source=CATALOG, external_id="",
                payment_ref="", idem_key=key, created_at=now, expires_at=now + ttl, updated_at=now,
                paid_at=None,
            )
            self._insert_order(db, order, "placed")
            answer = accepted(order, rates)
            self._remember(db, room, buyer, key, fp, answer, now)
            return answer, order, self.product(room, sku)

        return self._tx(tx)

    def record_order(self, order: Order, fp: str, rates: Rates, reason: str) -> tuple[Answer, bool]:
        """Store an order reserved elsewhere (the flashsale plugin) with its answer.
        Returns (the key's answer, whether this call created the order)."""

        def tx(db: sqlite3.Connection) -> tuple[Answer, bool]:
            found = self.answer_for(order.room, order.buyer, order.idem_key)
            if found is not None:
                stored_fp, answer = found
                if stored_fp != fp:
                    return idempotency_conflict(order.sku, order.idem_key), False
                return answer, False
            self._insert_order(db, order, reason)
            answer = accepted(order, rates)
            self._remember(db, order.room, order.buyer, order.idem_key, fp, answer, order.created_at)
            return answer, True

        return self._tx(tx)

    def transition(
        self,
        order_id: str,
        source: str,
        target: str,
        *,
        now: float,
        reason: str = "",
        payment_ref: str | None = None,
    ) -> tuple[Order, Product | None] | None:
        """Move an order from ``source`` to ``target`` if it is still in ``source``.

        Returns (the order after, the product after when stock came back), or
        None when the order is not in ``source`` (another outcome won)."""
        check_transition(source, target)

        def tx(db: sqlite3.Connection) -> tuple[Order, Product | None] | None:
            sets = "state = ?, updated_at = ?"
            args: list[Any] = [target, now]
            if target == "paid":
                sets += ", paid_at = ?"
                args.append(now)
            if payment_ref is not None:
                sets += ", payment_ref = ?"
                args.append(payment_ref)
            cur = db.execute(
                f"UPDATE orders SET {sets} WHERE order_id = ? AND state = ?", (*args, order_id, source)
            )
            if cur.rowcount == 0:
                return None
            db.execute(
                "INSERT INTO order_events (order_id, state, reason, ts) VALUES (?, ?, ?, ?)",
                (order_id, target, reason, now),
            )
            order = self.order(order_id)
            assert order is not None
            product = None
            if target in RELEASES_STOCK and order.source == CATALOG:
                db.execute(
                    "UPDATE products SET stock = stock + ?, updated_at = ? WHERE room = ? AND sku = ?",
                    (order.quantity, now, order.room, order.sku),
                )
                product = self.product(order.room, order.sku)
            return order, product

        return self._tx(tx)

    def note(self, order_id: str, state: str, reason: str, now: float) -> None:
        """Add a line to an order's history without changing its state."""
        self._tx(
            lambda db: db.execute(
                "INSERT INTO order_events (order_id, state, reason, ts) VALUES (?, ?, ?, ?)",
                (order_id, state, reason, now),
            )
        )

    def prune_keys(self, before: float) -> int:
        return self._tx(lambda db: db.execute("DELETE FROM idempotency WHERE created_at < ?", (before,)).rowcount)


def idempotency_conflict(sku: str, key: str) -> Answer:
    return rejected(
        sku, "idempotency_conflict", key, "this key was already used for another sku or quantity; use a new key"
    )


class Store:
    """``Database`` on one worker thread: ``await store.run(lambda db: db.product(room, sku))``.

    ``open()`` may be cancelled by whoever awaits it (a hook's time budget): the
    opening goes on, and every ``run`` waits for it."""

    def __init__(self) -> None:
        self.path: Path | str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-commerce-db")
        self._opening: asyncio.Future[Database] | None = None

    async def open(self, path: Path | str) -> None:
        if self._opening is None:
            self.path = path
            loop = asyncio.get_running_loop()
            self._opening = asyncio.ensure_future(loop.run_in_executor(self._executor, Database, path))
        await asyncio.shield(self._opening)

    async def run(self, fn: Callable[[Database], T]) -> T:
        if self._opening is None:
            raise RuntimeError("the commerce store is not open")
        db = await asyncio.shield(self._opening)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, db)

    async def close(self) -> None:
        opening, self._opening = self._opening, None
        if opening is not None:
            db = await opening
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, db.close)
        self._executor.shutdown(wait=True)
