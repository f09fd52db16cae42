"""The SQLite ledger: schema, connection settings, and reading it back.

Both backends keep their durable record here: the embedded backend writes it on
every attempt (group commit), the Redis backend reconciles Redis' order log into
it. WAL with ``synchronous=FULL``: a transaction is on disk (fsync of the WAL)
when COMMIT returns. Only one thread touches a connection.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterable

from .inventory import PAID, RESERVED, Counters, Order, Sale

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS sales (
    sale_id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    stock INTEGER NOT NULL CHECK (stock > 0),
    per_user_limit INTEGER NOT NULL CHECK (per_user_limit > 0),
    starts_at REAL NOT NULL,
    ends_at REAL NOT NULL,
    hold_seconds REAL NOT NULL,
    created_at REAL NOT NULL,
    price_minor INTEGER,
    currency TEXT
);
CREATE INDEX IF NOT EXISTS sales_room_sku ON sales (room, sku);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    sale_id TEXT NOT NULL,
    user TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL CHECK (status IN ('reserved', 'paid', 'expired', 'cancelled')),
    idem_key TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    body TEXT,  -- the attempt's idempotency body (embedded backend)
    remaining_after INTEGER  -- stock left right after it, as answered (embedded backend)
);
CREATE INDEX IF NOT EXISTS orders_sale_status ON orders (sale_id, status);
-- Refusals remembered under their key (an accepted attempt's record is its order row).
CREATE TABLE IF NOT EXISTS idempotency (
    user TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    remaining INTEGER,
    quantity INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (user, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""

SALE_COLUMNS = (
    "sale_id, room, sku, title, stock, per_user_limit, starts_at, ends_at, hold_seconds, created_at, "
    "price_minor, currency"
)
ORDER_COLUMNS = "order_id, sale_id, user, quantity, status, idem_key, created_at, expires_at"

INSERT_SALE = f"INSERT INTO sales ({SALE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# OR IGNORE: the Redis reconciler may apply the same log entry twice after a crash.
INSERT_ORDER = (
    f"INSERT OR IGNORE INTO orders ({ORDER_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Only a reserved order moves, and only once: replaying a transition is a no-op.
UPDATE_STATUS = "UPDATE orders SET status = ?, updated_at = ? WHERE order_id = ? AND status = 'reserved'"

# The group committer's batch statements: one JSON array of rows per statement, so
# a whole batch is one bind and one step, done in C without the GIL (the event
# loop keeps running while the writer thread inserts). ``->>`` needs SQLite 3.38.
INSERT_ORDERS_JSON = (
    f"INSERT INTO orders ({ORDER_COLUMNS}, updated_at, body, remaining_after) "
    "SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, "
    "value->>6, value->>8, value->>9 FROM json_each(?)"
)
UPSERT_IDEMPOTENCY_JSON = (
    "INSERT OR REPLACE INTO idempotency (user, key, body, sale_id, reason, remaining, quantity, created_at) "
    "SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7 "
    "FROM json_each(?)"
)
UPDATE_STATUS_JSON = (
    "UPDATE orders SET status = j.value->>0, updated_at = j.value->>1 "
    "FROM json_each(?) AS j WHERE orders.order_id = j.value->>2 AND orders.status = 'reserved'"
)
MIN_SQLITE = (3, 38, 0)


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, fsync on commit."""
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise RuntimeError(f"SQLite {sqlite3.sqlite_version} is too old; the ledger needs 3.38 or later")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path} has schema version {version}; this plugin knows {SCHEMA_VERSION}")
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return conn


def sale_row(sale: Sale) -> tuple[Any, ...]:
    return (sale.sale_id, sale.room, sale.sku, sale.title, sale.stock, sale.per_user_limit,
            sale.starts_at, sale.ends_at, sale.hold_seconds, sale.created_at, sale.price_minor, sale.currency)


def load_sales(conn: sqlite3.Connection) -> list[Sale]:
    rows = conn.execute(f"SELECT {SALE_COLUMNS} FROM sales ORDER BY created_at").fetchall()
    return [Sale(*row) for row in rows]


def order_from_row(row: tuple[Any, ...], sales: dict[str, Sale]) -> Order:
    order_id, sale_id, user, quantity, status, key, created_at, expires_at = row
    sale = sales.get(sale_id)
    return Order(order_id, sale_id, sale.room if sale else "", sale.sku if sale else "", user,
                 quantity, status, created_at, expires_at, key)


def load_orders(
    conn: sqlite3.Connection, sales: dict[str, Sale], sale_id: str | None = None,
    statuses: Iterable[str] | None = None,
) -> list[Order]:
    sql = f"SELECT {ORDER_COLUMNS} FROM orders"
    where, args = [], []
    if sale_id is not None:
        where.append("sale_id = ?")
        args.append(sale_id)
    if statuses is not None:
        marks = list(statuses)
        where.append(f"status IN ({', '.join('?' for _ in marks)})")
        args.extend(marks)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at, order_id"
    return [order_from_row(row, sales) for row in conn.execute(sql, args)]


def load_order(conn: sqlite3.Connection, sales: dict[str, Sale], order_id: str) -> Order | None:
    row = conn.execute(f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    return None if row is None else order_from_row(row, sales)


def counters(conn: sqlite3.Connection, sales: dict[str, Sale]) -> dict[str, Counters]:
    """Every sale's counters, derived from its orders (the ledger is the truth)."""
    agg: dict[str, dict[str, tuple[int, int]]] = {}
    for sale_id, status, quantity, count in conn.execute(
        "SELECT sale_id, status, SUM(quantity), COUNT(*) FROM orders GROUP BY sale_id, status"
    ):
        agg.setdefault(sale_id, {})[status] = (int(quantity), int(count))
    out = {}
    for sale_id, sale in sales.items():
        by = agg.get(sale_id, {})
        sold = by.get(PAID, (0, 0))[0]
        reserved = by.get(RESERVED, (0, 0))[0]
        out[sale_id] = Counters(
            stock=sale.stock, sold=sold, reserved=reserved, remaining=sale.stock - sold - reserved,
            orders=sum(c for _, c in by.values()), expired=by.get("expired", (0, 0))[1],
            cancelled=by.get("cancelled", (0, 0))[1],
        )
    return out


def held_by_user(conn: sqlite3.Connection, sale_id: str) -> dict[str, int]:
    """Quantity each user holds (reserved or paid) in a sale: what the per-user limit counts."""
    return {
        user: int(q)
        for user, q in conn.execute(
            "SELECT user, SUM(quantity) FROM orders WHERE sale_id = ? AND status IN ('reserved', 'paid') "
            "GROUP BY user",
            (sale_id,),
        )
    }


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))
