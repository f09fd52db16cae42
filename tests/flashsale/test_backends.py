"""What each backend does on its own: group commit and a failed write (SQLite);
a Redis restart, a Redis that lost its data, and reconciliation into the ledger (Redis).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from edge_flashsale import ledger
from edge_flashsale.inventory import SOLD_OUT, UNAVAILABLE
from edge_flashsale.redis_backend import RedisInventory
from edge_flashsale.service import FlashSales
from edge_flashsale.sqlite_backend import SqliteInventory

from .conftest import Backend, Clock, require_redis
from .redisproc import RedisServer
from .test_invariants import ROOM, live_sale, released_together

# SQLite ------------------------------------------------------------------------------------


async def test_concurrent_attempts_share_commits(tmp_path: Path, clock: Clock) -> None:
    inventory = SqliteInventory(tmp_path / "fs.db")
    service = FlashSales(inventory, clock=clock)
    await service.start()
    await live_sale(service, clock, stock=3000)
    before = inventory.commit_stats
    outcomes = await released_together(
        [lambda i=i: service.reserve(ROOM, "sku-1", f"b{i}", 1, f"k{i}") for i in range(3000)]
    )
    assert all(o.accepted for o in outcomes)
    transactions, writes = (a - b for a, b in zip(inventory.commit_stats, before))
    assert writes == 3000 and transactions < 300  # group commit: many orders per fsync
    conn = sqlite3.connect(tmp_path / "fs.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    await service.close()


async def test_a_failed_commit_answers_unavailable_and_recovers(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = SqliteInventory(tmp_path / "fs.db")
    service = FlashSales(inventory, clock=clock)
    await service.start()
    sale = await live_sale(service, clock, stock=10, limit=10)
    assert (await service.reserve(ROOM, "sku-1", "ann", 2, "ok-1")).accepted
    monkeypatch.setattr(ledger, "INSERT_ORDERS_JSON", "INSERT INTO no_such_table SELECT value FROM json_each(?)")
    failed = await asyncio.gather(*(service.reserve(ROOM, "sku-1", f"b{i}", 1, f"f{i}") for i in range(5)))
    assert {o.reason for o in failed} == {UNAVAILABLE}
    monkeypatch.undo()
    for _ in range(100):  # the image is rebuilt from the file in the background
        if not inventory._broken:
            break
        await asyncio.sleep(0.01)
    counters = await service.counters(sale.sale_id)
    assert (counters.reserved, counters.remaining, counters.orders) == (2, 8, 1)  # nothing of the failed batch
    retry = await service.reserve(ROOM, "sku-1", "b0", 1, "f0")  # the same key works now
    assert retry.accepted and retry.remaining == 7
    await service.close()


# Redis -------------------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path):  # type: ignore[no-untyped-def]
    require_redis()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


async def test_redis_restart_keeps_every_acknowledged_order(own_redis: RedisServer, tmp_path: Path,
                                                             clock: Clock) -> None:
    backend = Backend("redis", tmp_path, own_redis)
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=500)
    first = await released_together(
        [lambda i=i: service.reserve(ROOM, "sku-1", f"b{i}", 1, f"k{i}") for i in range(300)]
    )
    acked = {o.order_id for o in first if o.accepted}
    assert len(acked) == 300
    own_redis.kill()  # no shutdown save: only the AOF (fsync always) has the orders
    down = await service.reserve(ROOM, "sku-1", "late", 1, "down")
    assert down.reason == UNAVAILABLE
    own_redis.start()
    # the script cache is gone with the restart: reserve reloads it
    second = await released_together(
        [lambda i=i: service.reserve(ROOM, "sku-1", f"c{i}", 1, f"m{i}") for i in range(300)]
    )
    assert sum(o.accepted for o in second) == 200
    assert {o.reason for o in second if not o.accepted} == {SOLD_OUT}
    acked |= {o.order_id for o in second if o.accepted}
    # the attempt that met a dead Redis is retried with its key and gets sold out, not a ghost order
    assert (await service.reserve(ROOM, "sku-1", "late", 1, "down")).reason == SOLD_OUT
    assert {o.order_id for o in await service.orders(sale.sale_id)} == acked
    await service.inventory.sync()
    assert set(backend.stored_orders()) == acked
    await service.close()


async def test_a_redis_that_lost_its_data_is_rebuilt_from_the_ledger(own_redis: RedisServer, tmp_path: Path,
                                                                       clock: Clock) -> None:
    import redis.asyncio as aioredis

    backend = Backend("redis", tmp_path, own_redis)
    service = await backend.service(clock, hold_seconds=60)
    sale = await live_sale(service, clock, stock=50, limit=2, hold=60)
    outcomes = await released_together(
        [lambda i=i: service.reserve(ROOM, "sku-1", f"b{i % 30}", 1, f"k{i}") for i in range(80)]
    )
    acked = [o for o in outcomes if o.accepted]
    assert len(acked) == 50
    assert await service.confirm_payment(acked[0].order_id) == "paid"
    assert await service.cancel(acked[1].order_id) == "cancelled"
    await service.close()  # reconciles into the ledger
    client = aioredis.Redis.from_url(own_redis.url)
    await client.flushall()  # Redis lost everything (no AOF, a new instance, an operator's mistake)
    await client.aclose()
    service = await backend.service(clock, hold_seconds=60)
    assert isinstance(service.inventory, RedisInventory) and service.inventory.restored == [sale.sale_id]
    counters = await service.counters(sale.sale_id)
    assert (counters.sold, counters.reserved, counters.remaining, counters.orders) == (1, 48, 1, 50)
    stored = {o.order_id: o.status for o in await service.orders(sale.sale_id)}
    assert set(stored) == {o.order_id for o in acked}
    # the per-user limit and the holds came back too
    user_of_first = next(f"b{i % 30}" for i, o in enumerate(outcomes) if o.order_id == acked[2].order_id)
    assert (await service.reserve(ROOM, "sku-1", user_of_first, 2, "again")).reason in ("limit_reached", SOLD_OUT)
    expired = await service.expire_due(clock.now + 61)
    assert len(expired) == 48
    assert (await service.counters(sale.sale_id)).remaining == 49
    await service.close()


async def test_the_order_log_is_reconciled_into_the_ledger_while_selling(own_redis: RedisServer, tmp_path: Path,
                                                                          clock: Clock) -> None:
    backend = Backend("redis", tmp_path, own_redis)
    service = await backend.service(clock)  # reconcile_interval 0.2 s
    await live_sale(service, clock, stock=100)
    outcomes = await released_together(
        [lambda i=i: service.reserve(ROOM, "sku-1", f"b{i}", 1, f"k{i}") for i in range(150)]
    )
    acked = {o.order_id for o in outcomes if o.accepted}
    for _ in range(100):
        if set(backend.stored_orders()) == acked:
            break
        await asyncio.sleep(0.05)
    assert set(backend.stored_orders()) == acked  # without asking: the periodic reconciliation
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(own_redis.url)
    assert await client.xlen(f"{backend.prefix}:log") <= 1  # copied entries are trimmed
    await client.aclose()
    await service.close()
