"""The embedded backend: decisions in memory on the event loop, durability by group commit.

Every attempt is decided synchronously on the event loop (one thread, so the
check-and-decrement is atomic without locks) against an in-memory image of the
ledger, and its write is queued to the group committer. The answer is returned
only after the batch holding that write is committed (WAL, ``synchronous=FULL``).

Crash safety follows from the committer's ordering: the file always holds a
prefix of the decisions, every acknowledged decision is in it, and on start the
image is rebuilt from the file. Decisions that were made but not yet durable
when the node died were never acknowledged; they vanish together with their
effects on the stock.

If a commit fails, the waiting attempts are answered ``unavailable`` and the
image is rebuilt from the file before anything else is decided.
"""

from __future__ import annotations

import asyncio
import heapq
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import ledger
from .groupcommit import GroupCommitter
from .inventory import (
    CANCELLED,
    EXPIRED,
    KEY_REUSED,
    PAID,
    RESERVED,
    STORED_REJECTIONS,
    UNKNOWN_SKU,
    Counters,
    InventoryError,
    Order,
    Outcome,
    ReserveRequest,
    Sale,
    UnknownOrder,
    decide,
)


@dataclass(slots=True)
class _Stock:
    sale: Sale
    remaining: int
    reserved: int = 0
    sold: int = 0
    orders: int = 0
    expired: int = 0
    cancelled: int = 0
    held: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Order:
    order_id: str
    sale_id: str
    user: str
    quantity: int
    status: str
    created_at: float
    expires_at: float
    key: str


@dataclass(slots=True)
class _Idem:
    body: str
    outcome: Outcome
    created_at: float
    durable: "asyncio.Future[None] | None"


REBUILDING = "the ledger image is being rebuilt after a failed write"


class SqliteInventory:
    name = "sqlite"

    def __init__(self, path: str | Path, *, idempotency_ttl: float = 86400.0) -> None:
        self.path = Path(path)
        self.idempotency_ttl = idempotency_ttl
        self._journal = GroupCommitter(self.path, on_failure=self._failed)
        self._sales: dict[str, Sale] = {}
        self._stock: dict[str, _Stock] = {}
        self._orders: dict[str, _Order] = {}  # reserved ones, and those touched since start
        self._expiry: list[tuple[float, str]] = []  # (expires_at, order_id) heap
        self._idem: dict[tuple[str, str], _Idem] = {}
        self._broken = False
        self._reload: asyncio.Task[None] | None = None

    # lifecycle --------------------------------------------------------------------

    async def open(self, now: float) -> list[Sale]:
        await self._journal.start()
        await self._load()
        return list(self._sales.values())

    async def close(self) -> None:
        await self._journal.close()

    async def _load(self) -> None:
        cutoff = time.time() - self.idempotency_ttl
        image = await self._journal.read(lambda conn: _read_image(conn, cutoff))
        self._sales = {s.sale_id: s for s in image["sales"]}
        self._stock = {}
        for sale in image["sales"]:
            c = image["counters"][sale.sale_id]
            self._stock[sale.sale_id] = _Stock(
                sale, c.remaining, c.reserved, c.sold, c.orders, c.expired, c.cancelled,
                image["held"].get(sale.sale_id, {}),
            )
        self._orders = {}
        self._expiry = []
        for row in image["reserved"]:
            order = _Order(*row)
            self._orders[order.order_id] = order
            self._expiry.append((order.expires_at, order.order_id))
        heapq.heapify(self._expiry)
        self._idem = {}
        for user, key, body, sale_id, reason, remaining, quantity, created_at in image["refusals"]:
            sale = self._sales.get(sale_id)
            outcome = Outcome(False, reason, None, None, remaining, sale_id, sale.sku if sale else None, quantity)
            self._idem[(user, key)] = _Idem(body, outcome, created_at, None)
        for order_id, sale_id, user, key, body, quantity, expires_at, remaining, created_at in image["accepted"]:
            sale = self._sales.get(sale_id)
            outcome = Outcome(True, None, order_id, expires_at, remaining, sale_id, sale.sku if sale else None,
                              quantity)
            self._idem[(user, key)] = _Idem(body, outcome, created_at, None)

    def _failed(self, exc: BaseException) -> None:
        # Decisions queued behind the failed batch were answered "unavailable";
        # the image may hold them: rebuild it from the file before deciding more.
        self._broken = True
        if self._reload is None or self._reload.done():
            self._reload = asyncio.ensure_future(self._recover())

    async def _recover(self) -> None:
        while True:
            try:
                barrier = self._journal.barrier()
                if barrier is not None:
                    await asyncio.wait([barrier])
                await self._load()
            except Exception:
                await asyncio.sleep(1.0)
                continue
            self._broken = False
            return

    # writes -------------------------------------------------------------------------

    async def create_sale(self, sale: Sale) -> None:
        row = ledger.sale_row(sale)
        await self._journal.submit(lambda conn: conn.execute(ledger.INSERT_SALE, row))
        self._sales[sale.sale_id] = sale
        self._stock[sale.sale_id] = _Stock(sale, sale.stock)

    async def reserve(self, sale: Sale, request: ReserveRequest, order_id: str, now: float) -> Outcome:
        ident = (request.user, request.key)
        known = self._idem.get(ident)
        if known is not None:
            if known.body != request.body:
                return Outcome.reject(KEY_REUSED, sale=sale, quantity=request.quantity)
            if known.durable is not None and not known.durable.done():
                await known.durable  # a concurrent duplicate: one answer (Durable: not cancellable)
            elif known.durable is not None and known.durable.exception() is not None:
                raise InventoryError("the first attempt with this key failed")
            return known.outcome
        if self._broken:
            raise InventoryError(REBUILDING)
        stock = self._stock.get(sale.sale_id)
        if stock is None:
            return Outcome.reject(UNKNOWN_SKU, sku=request.sku, quantity=request.quantity)
        quantity = request.quantity
        held = stock.held.get(request.user, 0)
        reason = decide(sale, quantity, held, stock.remaining, now)
        if reason is not None and reason not in STORED_REJECTIONS:
            return Outcome.reject(reason, remaining=stock.remaining, sale=sale, quantity=quantity)
        body = request.body
        if reason is not None:
            outcome = Outcome.reject(reason, remaining=stock.remaining, sale=sale, quantity=quantity)
            durable = self._journal.add_idem(
                (request.user, request.key, body, sale.sale_id, reason, stock.remaining, quantity, now)
            )
        else:
            stock.remaining -= quantity
            stock.reserved += quantity
            stock.orders += 1
            stock.held[request.user] = held + quantity
            expires_at = round(now + sale.hold_seconds, 3)
            order = _Order(order_id, sale.sale_id, request.user, quantity, RESERVED, now, expires_at, request.key)
            self._orders[order_id] = order
            heapq.heappush(self._expiry, (expires_at, order_id))
            outcome = Outcome(True, None, order_id, expires_at, stock.remaining, sale.sale_id, sale.sku, quantity)
            durable = self._journal.add_order(
                (order_id, sale.sale_id, request.user, quantity, RESERVED, request.key, now, expires_at, body,
                 stock.remaining)
            )
        self._idem[ident] = entry = _Idem(body, outcome, now, durable)
        try:
            await durable  # shared by the batch; a Durable is not cancelled by one waiter
        finally:
            if durable.done() and durable.exception() is None:
                entry.durable = None
        return outcome

    async def transition(self, order_id: str, action: str, now: float) -> str:
        order = self._orders.get(order_id)
        if order is None:
            stored = await self.order(order_id)
            if stored is None:
                raise UnknownOrder(order_id)
            if stored.status == RESERVED:  # only when the image is being rebuilt
                raise InventoryError(REBUILDING)
            return stored.status
        if order.status != RESERVED:
            # Answer only what is durable: the move may still be in a pending batch.
            await self._durable()
            return order.status
        if self._broken:
            raise InventoryError(REBUILDING)
        if now >= order.expires_at:
            target = EXPIRED
        else:
            target = PAID if action == "pay" else CANCELLED
        self._move(order, target, now)
        await self._durable()
        return target

    def _move(self, order: _Order, target: str, now: float) -> None:
        stock = self._stock[order.sale_id]
        order.status = target
        stock.reserved -= order.quantity
        if target == PAID:
            stock.sold += order.quantity
        else:
            stock.remaining += order.quantity  # the one place stock comes back
            left = stock.held.get(order.user, 0) - order.quantity
            if left > 0:
                stock.held[order.user] = left
            else:
                stock.held.pop(order.user, None)
            if target == EXPIRED:
                stock.expired += 1
            else:
                stock.cancelled += 1
        self._journal.add_move(target, now, order.order_id)

    async def _durable(self) -> None:
        barrier = self._journal.barrier()
        if barrier is not None:
            await barrier

    async def expire_due(self, sales: Iterable[Sale], now: float) -> list[Order]:
        if self._broken:
            return []
        expired: list[_Order] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, order_id = heapq.heappop(heap)
            order = self._orders.get(order_id)
            if order is not None and order.status == RESERVED:
                self._move(order, EXPIRED, now)
                expired.append(order)
        if expired:
            await self._durable()
        return [self._view(o) for o in expired]

    async def prune(self, before: float) -> None:
        stale = [k for k, v in self._idem.items() if v.created_at < before and v.durable is None]
        for k in stale:
            del self._idem[k]
        self._journal.submit(
            lambda conn: conn.execute("DELETE FROM idempotency WHERE created_at < ?", (before,))
        )
        # Settled orders of this run need not stay in memory (the ledger has them).
        for order_id in [k for k, o in self._orders.items() if o.status != RESERVED]:
            del self._orders[order_id]
        await self._durable()

    # reads --------------------------------------------------------------------------

    def _view(self, order: _Order) -> Order:
        sale = self._sales[order.sale_id]
        return Order(order.order_id, order.sale_id, sale.room, sale.sku, order.user, order.quantity,
                     order.status, order.created_at, order.expires_at, order.key)

    async def remaining(self, sale_ids: list[str]) -> dict[str, int]:
        return {sid: self._stock[sid].remaining for sid in sale_ids if sid in self._stock}

    async def counters(self, sale: Sale) -> Counters:
        s = self._stock[sale.sale_id]
        return Counters(sale.stock, s.sold, s.reserved, s.remaining, s.orders, s.expired, s.cancelled)

    async def orders(self, sale: Sale) -> list[Order]:
        await self._durable()
        sales = dict(self._sales)
        return await self._journal.read(lambda conn: ledger.load_orders(conn, sales, sale.sale_id))

    async def order(self, order_id: str) -> Order | None:
        order = self._orders.get(order_id)
        if order is not None:
            return self._view(order)
        sales = dict(self._sales)
        return await self._journal.read(lambda conn: ledger.load_order(conn, sales, order_id))

    async def sync(self) -> None:
        await self._durable()

    # for tests and metrics ---------------------------------------------------------------

    @property
    def commit_stats(self) -> tuple[int, int]:
        """(transactions, writes) committed since start."""
        return self._journal.batches, self._journal.writes


def _read_image(conn: sqlite3.Connection, cutoff: float) -> dict[str, Any]:
    """Everything the in-memory image needs, read in one transaction; idempotency
    records (refusals, and accepted orders' rows) created after ``cutoff``."""
    conn.execute("BEGIN")
    try:
        sales = ledger.load_sales(conn)
        by_id = {s.sale_id: s for s in sales}
        return {
            "sales": sales,
            "counters": ledger.counters(conn, by_id),
            "held": {s.sale_id: ledger.held_by_user(conn, s.sale_id) for s in sales},
            "reserved": conn.execute(
                "SELECT order_id, sale_id, user, quantity, status, created_at, expires_at, idem_key "
                "FROM orders WHERE status = 'reserved'"
            ).fetchall(),
            "refusals": conn.execute(
                "SELECT user, key, body, sale_id, reason, remaining, quantity, created_at FROM idempotency "
                "WHERE created_at >= ?", (cutoff,)
            ).fetchall(),
            "accepted": conn.execute(
                "SELECT order_id, sale_id, user, idem_key, body, quantity, expires_at, remaining_after, created_at "
                "FROM orders WHERE body IS NOT NULL AND created_at >= ?", (cutoff,)
            ).fetchall(),
        }
    finally:
        conn.execute("COMMIT")
