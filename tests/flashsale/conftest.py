"""Fixtures of the flash-sale suite: a real redis-server, and both inventory backends.

Every invariant test runs once per backend (``backend`` is parametrized): the
embedded SQLite file in the test's own directory, and Redis (a key prefix of
the test's own on one session-wide redis-server) with its SQLite ledger.
"""

from __future__ import annotations

import itertools
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from edge_flashsale.inventory import Inventory
from edge_flashsale.redis_backend import RedisInventory
from edge_flashsale.service import FlashSales
from edge_flashsale.sqlite_backend import SqliteInventory

from .redisproc import MISSING, RedisServer, redis_binary

BACKENDS = ("sqlite", "redis")
_prefixes = itertools.count(1)


class Clock:
    """The services' clock, moved by the tests (expiry, windows) instead of sleeping."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def require_redis() -> None:
    if redis_binary() is None:
        pytest.fail(MISSING, pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    require_redis()
    server = RedisServer(Path(tempfile.mkdtemp(prefix="edge-fs-redis-"))).start()
    yield server
    server.stop()


class Backend:
    """One backend's storage for a test; ``inventory()`` opens it (again)."""

    def __init__(self, kind: str, directory: Path, redis: RedisServer | None) -> None:
        self.kind = kind
        self.dir = directory
        self.redis = redis
        self.db_path = directory / ("flashsale.db" if kind == "sqlite" else "ledger.db")
        self.prefix = f"t{next(_prefixes)}x{int(time.time() * 1000) % 10**8}"

    def inventory(self) -> Inventory:
        if self.kind == "sqlite":
            return SqliteInventory(self.db_path)
        assert self.redis is not None
        return RedisInventory(self.redis.url, self.db_path, prefix=self.prefix, reconcile_interval=0.2)

    async def service(self, clock: Clock, hold_seconds: float = 300.0) -> FlashSales:
        service = FlashSales(self.inventory(), clock=clock, hold_seconds=hold_seconds)
        await service.start()
        return service

    def stored_orders(self) -> dict[str, tuple[str, int, str]]:
        """order_id -> (user, quantity, status), read from the SQLite file directly
        (for Redis: the ledger, so reconcile first: ``await service.inventory.sync()``)."""
        conn = sqlite3.connect(self.db_path)
        try:
            return {oid: (user, q, status) for oid, user, q, status in
                    conn.execute("SELECT order_id, user, quantity, status FROM orders")}
        finally:
            conn.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    redis = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return Backend(request.param, tmp_path, redis)


@pytest.fixture
def clock() -> Clock:
    return Clock()
