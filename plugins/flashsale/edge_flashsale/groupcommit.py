"""Group commit: writes collected on the event loop, committed by one thread in batches.

Every write queued while the previous transaction was being committed goes into
the next one (one BEGIN ... COMMIT, one fsync of the WAL); each ``add_*`` /
``submit`` returns that batch's future, which resolves once the COMMIT returned.
Batches commit in submission order, so the file always holds a prefix of the
writes: whatever was acknowledged after its future resolved is on disk, and
nothing that depends on an unacknowledged write can be on disk without it.

The hot rows (orders, idempotency records, order moves) are not written one
statement each: a batch's rows go in as one JSON array per statement
(``ledger.*_JSON``), so the writer thread makes a handful of calls per batch and
SQLite does the per-row work in C, without holding the GIL the event loop needs.
Within a batch: ``submit``-ted writes first, then orders, idempotency records,
then moves (a move always follows its order's insert, here or in an earlier batch).

If a transaction fails, it is rolled back; its future and the one of the batch
queued behind it fail with ``InventoryError`` (they may depend on it), and
``on_failure`` is told so the owner can reload its state from the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

import orjson

from . import ledger
from .inventory import InventoryError

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], None]


class Durable(asyncio.Future):  # type: ignore[type-arg]
    """A batch's future: resolves when the batch is committed. Many attempts wait on one,
    so a waiter that is cancelled (its hook ran over the time budget) must not cancel it
    for the others: ``cancel`` refuses, and the cancelled waiter gets its CancelledError
    when the batch is done (asyncio then raises it at the waiter's ``await``)."""

    def cancel(self, msg: object = None) -> bool:
        return False


class _Batch:
    __slots__ = ("writes", "orders", "idems", "moves", "future")

    def __init__(self, future: "asyncio.Future[None]") -> None:
        self.writes: list[Write] = []
        self.orders: list[tuple[Any, ...]] = []
        self.idems: list[tuple[Any, ...]] = []
        self.moves: list[tuple[Any, ...]] = []
        self.future = future

    def size(self) -> int:
        return len(self.writes) + len(self.orders) + len(self.idems) + len(self.moves)


class GroupCommitter:
    def __init__(self, path: str | Path, on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.path = Path(path)
        self._on_failure = on_failure
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="flashsale-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._pending: _Batch | None = None
        self._inflight: asyncio.Future[None] | None = None  # of the batch being committed
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.writes = 0

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._conn = await self.run(ledger.connect, self.path)
        self._task = asyncio.ensure_future(self._flusher())

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the writer thread (reads see every committed batch)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None
        return await self.run(fn, self._conn)

    # queueing ------------------------------------------------------------------------

    def _batch(self) -> _Batch:
        batch = self._pending
        if batch is None:
            batch = self._pending = _Batch(Durable(loop=asyncio.get_running_loop()))
            if self._wake is not None:
                self._wake.set()
        return batch

    def submit(self, write: Write) -> "asyncio.Future[None]":
        """Queue ``write(conn)``; the returned future resolves when it is durable."""
        batch = self._batch()
        batch.writes.append(write)
        return batch.future

    def add_order(self, order_row: tuple[Any, ...]) -> "asyncio.Future[None]":
        """An accepted order: ``ledger.ORDER_COLUMNS`` + body, remaining_after (its idempotency record)."""
        batch = self._batch()
        batch.orders.append(order_row)
        return batch.future

    def add_idem(self, idem_row: tuple[Any, ...]) -> "asyncio.Future[None]":
        """(user, key, body, sale_id, reason, remaining, quantity, created_at) of a remembered refusal."""
        batch = self._batch()
        batch.idems.append(idem_row)
        return batch.future

    def add_move(self, status: str, at: float, order_id: str) -> "asyncio.Future[None]":
        batch = self._batch()
        batch.moves.append((status, at, order_id))
        return batch.future

    def barrier(self) -> "asyncio.Future[None] | None":
        """The future after which everything queued so far is durable (None: it is)."""
        if self._pending is not None:
            return self._pending.future
        return self._inflight

    # committing ----------------------------------------------------------------------

    def _commit(self, writes: list[Write], rows: list[tuple[str, bytes]]) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in writes:
                write(conn)
            for statement, payload in rows:
                conn.execute(statement, (payload,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def _flusher(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending is not None:
                batch, self._pending = self._pending, None
                self._inflight = batch.future
                rows = [(sql, orjson.dumps(data)) for sql, data in (
                    (ledger.INSERT_ORDERS_JSON, batch.orders),
                    (ledger.UPSERT_IDEMPOTENCY_JSON, batch.idems),
                    (ledger.UPDATE_STATUS_JSON, batch.moves),
                ) if data]
                try:
                    # Not cancellable half-way: the thread finishes the transaction.
                    await asyncio.shield(self.run(self._commit, batch.writes, rows))
                except asyncio.CancelledError:
                    _fail(batch.future, InventoryError("the ledger was closed"))
                    raise
                except BaseException as exc:  # the file refused the batch
                    error = InventoryError(f"ledger write failed: {exc!r}")
                    _fail(batch.future, error)
                    if self._pending is not None:  # queued behind it: may depend on it
                        _fail(self._pending.future, error)
                        self._pending = None
                    if self._on_failure is not None:
                        self._on_failure(exc)
                else:
                    self.batches += 1
                    self.writes += batch.size()
                    batch.future.set_result(None)
                finally:
                    self._inflight = None

    async def close(self) -> None:
        """Commit what is queued, stop the flusher, close the file."""
        if self._task is not None:
            while self._pending is not None or self._inflight is not None:
                barrier = self.barrier()
                if barrier is not None:
                    await asyncio.wait([barrier])
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self.run(_checkpoint_and_close, conn)
        self._executor.shutdown(wait=True)


def _fail(future: "asyncio.Future[None]", error: BaseException) -> None:
    future.set_exception(error)
    future.exception()  # marked as retrieved: every waiter may have gone


def _checkpoint_and_close(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
