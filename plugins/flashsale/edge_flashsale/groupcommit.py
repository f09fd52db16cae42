"""Group commit: writes collected on the event loop, committed by one thread in batches.

Every write is a function ``f(conn)`` queued with ``submit``; all writes queued
while the previous transaction was being committed go into the next one (one
BEGIN ... COMMIT, one fsync), and ``submit`` returns that batch's future, which
resolves once the COMMIT returned. Batches commit in submission order, so the
file always holds a prefix of the writes: whatever was acknowledged after its
future resolved is on disk, and nothing that depends on an unacknowledged write
can be on disk without it.

If a transaction fails, it is rolled back; its future and those of every batch
queued behind it fail with ``InventoryError`` (they may depend on it), and
``on_failure`` is told so the owner can reload its state from the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from . import ledger
from .inventory import InventoryError

T = TypeVar("T")
Write = Callable[[sqlite3.Connection], None]


class GroupCommitter:
    def __init__(self, path: str | Path, on_failure: Callable[[BaseException], None] | None = None) -> None:
        self.path = Path(path)
        self._on_failure = on_failure
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="flashsale-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._pending: list[Write] = []
        self._future: asyncio.Future[None] | None = None  # of the pending batch
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

    def submit(self, write: Write) -> "asyncio.Future[None]":
        """Queue a write; the returned future resolves when it is durable."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        self._pending.append(write)
        if len(self._pending) == 1 and self._wake is not None:
            self._wake.set()
        return self._future

    def barrier(self) -> "asyncio.Future[None] | None":
        """The future after which everything queued so far is durable (None: it is)."""
        if self._pending:
            return self._future
        return self._inflight

    def _commit(self, writes: list[Write]) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            for write in writes:
                write(conn)
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
            while self._pending:
                writes, future = self._pending, self._future
                self._pending, self._future = [], None
                assert future is not None
                self._inflight = future
                try:
                    # Not cancellable half-way: the thread finishes the transaction.
                    await asyncio.shield(self.run(self._commit, writes))
                except asyncio.CancelledError:
                    _fail(future, InventoryError("the ledger was closed"))
                    raise
                except BaseException as exc:  # the file refused the batch
                    error = InventoryError(f"ledger write failed: {exc!r}")
                    _fail(future, error)
                    if self._future is not None:  # queued behind it: may depend on it
                        _fail(self._future, error)
                    self._pending, self._future = [], None
                    if self._on_failure is not None:
                        self._on_failure(exc)
                else:
                    self.batches += 1
                    self.writes += len(writes)
                    future.set_result(None)
                finally:
                    self._inflight = None

    async def close(self) -> None:
        """Commit what is queued, stop the flusher, close the file."""
        if self._task is not None:
            while self._pending or self._inflight is not None:
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
