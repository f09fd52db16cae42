"""The flash-sale plugin end to end: a real `edge serve` and real WebSocket buyers, per backend.

A node per backend serves the tests of this module (each in a room of its own);
the crash tests start, SIGKILL and restart nodes (and redis-server) of their own.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from .conftest import BACKENDS, require_redis
from .nodes import API, Client, FlashNode, close_all, join_many, write_config
from .redisproc import RedisServer

HZ = 10


@pytest.fixture(scope="module", params=BACKENDS)
def node(request: pytest.FixtureRequest) -> Iterator[FlashNode]:
    directory = Path(tempfile.mkdtemp(prefix="edge-fs-e2e-"))
    redis = None
    if request.param == "redis":
        require_redis()
        redis = RedisServer(directory / "redis").start()
    flash = FlashNode(write_config(directory, request.param, redis, stock_update_hz=HZ)).start()
    yield flash
    flash.stop()
    if redis is not None:
        redis.stop()


def live(node: FlashNode, room: str, sku: str, stock: int, **extra: object) -> dict:
    return node.create_sale(room, sku=sku, stock=stock, starts_in=0, duration=600, **extra)


# reserve -> accepted -----------------------------------------------------------------------


async def test_reserve_is_accepted_then_paid(node: FlashNode) -> None:
    room = "fs-accept"
    sale = live(node, room, "lipstick-01", 5, per_user_limit=2, title="Lipstick", price_minor=999, currency="USD")
    assert sale["state"] == "live" and sale["remaining"] == 5 and sale["price_minor"] == 999
    buyer = await Client.join(node, room, "fan1")
    info = (await buyer.wait_for("sale.info"))[1]["data"]
    assert info["sale_id"] == sale["sale_id"] and info["stock"] == 5
    before = time.time()
    reply = await buyer.reserve("lipstick-01", "tap-1", 2)
    assert reply["type"] == "order.accepted", reply
    data = reply["data"]
    assert data["sku"] == "lipstick-01" and data["quantity"] == 2 and data["remaining"] == 3
    assert data["key"] == "tap-1" and data["sale_id"] == sale["sale_id"]
    assert abs(data["expires_at"] / 1000 - (before + 300)) < 5  # the default 5-minute hold
    again = await buyer.reserve("lipstick-01", "tap-1", 2)  # a retry: the same answer
    assert again["data"] == {**data, "reply_to": again["data"]["reply_to"]}
    counters = node.sale(room, sale["sale_id"])
    assert (counters["reserved"], counters["sold"], counters["remaining"], counters["orders"]) == (2, 0, 3, 1)
    orders = node.orders(room, sale["sale_id"])
    assert [(o["order_id"], o["user"], o["status"]) for o in orders] == [(data["order_id"], "fan1", "reserved")]
    paid = await buyer.send("sale.pay", {"order_id": data["order_id"]})
    assert paid["type"] == "order.status" and paid["data"]["status"] == "paid"
    # someone else's order is not yours to pay or cancel
    other = await Client.join(node, room, "fan2")
    refused = await other.send("sale.cancel", {"order_id": data["order_id"]})
    assert refused["type"] == "error" and refused["data"]["code"] == "not_found"
    counters = node.sale(room, sale["sale_id"])
    assert (counters["reserved"], counters["sold"], counters["remaining"]) == (0, 2, 3)
    await close_all([buyer, other])


async def test_cancel_gives_the_stock_back(node: FlashNode) -> None:
    room = "fs-cancel"
    sale = live(node, room, "mug", 1)
    buyer = await Client.join(node, room, "fan")
    order = (await buyer.reserve("mug", "k1"))["data"]
    cancelled = await buyer.send("sale.cancel", {"order_id": order["order_id"]})
    assert cancelled["data"]["status"] == "cancelled"
    assert node.sale(room, sale["sale_id"])["remaining"] == 1
    assert (await buyer.reserve("mug", "k2"))["type"] == "order.accepted"
    await buyer.close()


# bad input ----------------------------------------------------------------------------------


async def test_bad_input_gets_a_reason_and_changes_no_stock(node: FlashNode) -> None:
    room = "fs-bad"
    sale = live(node, room, "sku-a", 10, per_user_limit=2)
    node.create_sale(room, sku="sku-later", stock=3, starts_in=3600, duration=60)
    node.create_sale(room, sku="sku-gone", stock=3, starts_in=-10, duration=10.5)
    buyer = await Client.join(node, room, "fan")
    await asyncio.sleep(0.6)  # sku-gone ends
    rejected = [
        ({"sku": "nope", "quantity": 1, "key": "k1"}, "unknown_sku"),
        ({"sku": "sku-a", "quantity": 0, "key": "k2"}, "invalid_quantity"),
        ({"sku": "sku-a", "quantity": -1, "key": "k3"}, "invalid_quantity"),
        ({"sku": "sku-a", "quantity": 3, "key": "k4"}, "over_limit"),
        ({"sku": "sku-a", "quantity": 1, "key": "not ok"}, "invalid_key"),
        ({"sku": "sku-a", "quantity": 1, "key": ""}, "invalid_key"),
        ({"sku": "sku-later", "quantity": 1, "key": "k5"}, "not_started"),
        ({"sku": "sku-gone", "quantity": 1, "key": "k6"}, "ended"),
    ]
    for data, reason in rejected:
        reply = await buyer.send("sale.reserve", data)
        assert reply["type"] == "order.rejected", (data, reply)
        assert reply["data"]["reason"] == reason and reply["data"]["key"] == data["key"]
        assert reply["data"]["sku"] == data["sku"] and reply["data"]["message"]
    # the envelope's shape is checked by the node before the plugin: an `error`
    for data, code in (({"sku": "sku-a", "quantity": "1", "key": "k7"}, "invalid_data"),
                       ({"sku": "sku-a", "quantity": 1.0, "key": "k7"}, "invalid_data"),
                       ({"sku": "sku-a", "quantity": True, "key": "k7"}, "invalid_data"),
                       ({"sku": "sku-a", "quantity": 1}, "invalid_data"),
                       ({"sku": "sku-a", "key": "k7", "extra": 1}, "invalid_data")):
        reply = await buyer.send("sale.reserve", data)
        assert reply["type"] == "error" and reply["data"]["code"] == code, reply
    host = await Client.join(node, room, "seller", "host")
    refused = await host.send("sale.reserve", {"sku": "sku-a", "key": "k8"})
    assert refused["type"] == "error" and refused["data"]["code"] == "forbidden"
    counters = node.sale(room, sale["sale_id"])
    assert (counters["remaining"], counters["reserved"], counters["orders"]) == (10, 0, 0)
    # a key used once, reused for another body
    assert (await buyer.reserve("sku-a", "k9", 1))["type"] == "order.accepted"
    reused = await buyer.reserve("sku-a", "k9", 2)
    assert reused["type"] == "order.rejected" and reused["data"]["reason"] == "key_reused"
    assert node.sale(room, sale["sale_id"])["reserved"] == 1
    metrics = node.proc.metrics()  # each attempt counted by its result
    for result in ("accepted", "unknown_sku", "invalid_quantity", "over_limit", "key_reused"):
        assert metrics.get(f'edge_flashsale_attempts_total{{result="{result}"}}', 0) >= 1, result
    await close_all([buyer, host])


async def test_rest_checks_roles_and_input(node: FlashNode) -> None:
    room, url = "fs-rest", node.proc.url + API
    viewer = {"Authorization": "Bearer " + node.proc.token(room, "v", "viewer")}
    elsewhere = {"Authorization": "Bearer " + node.proc.token("other", "seller", "host")}
    body = {"sku": "s1", "stock": 5, "duration": 60}
    assert httpx.post(f"{url}/rooms/{room}/sales", json=body).status_code == 401
    assert httpx.post(f"{url}/rooms/{room}/sales", json=body, headers=viewer).status_code == 403
    assert httpx.post(f"{url}/rooms/{room}/sales", json=body, headers=elsewhere).status_code == 403
    for bad in ({"sku": "s1"}, {"sku": "s1", "stock": 0, "duration": 60}, {"sku": "s1", "stock": 5},
                {**body, "starts_at": "tomorrow"}, {**body, "color": "red"}, {**body, "per_user_limit": 9}):
        r = httpx.post(f"{url}/rooms/{room}/sales", json=bad, headers=node.host(room))
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", (bad, r.text)
    created = httpx.post(f"{url}/rooms/{room}/sales", json=body, headers=node.host(room))
    assert created.status_code == 201
    assert created.headers["location"].endswith(created.json()["sale_id"])
    conflict = httpx.post(f"{url}/rooms/{room}/sales", json=body, headers=node.host(room))
    assert conflict.status_code == 409 and conflict.json()["type"] == "urn:edge:problem:sale_conflict"
    listed = httpx.get(f"{url}/rooms/{room}/sales", headers=viewer).json()["sales"]
    assert [s["sku"] for s in listed] == ["s1"] and listed[0]["remaining"] == 5
    sale_id = listed[0]["sale_id"]
    assert httpx.get(f"{url}/rooms/{room}/sales/{sale_id}", headers=viewer).json()["orders"] == 0
    assert httpx.get(f"{url}/rooms/{room}/sales/{sale_id}/orders", headers=viewer).status_code == 403
    assert httpx.get(f"{url}/rooms/other/sales/{sale_id}", headers=elsewhere).status_code == 404
    iso = httpx.post(f"{url}/rooms/{room}/sales", headers=node.host(room), json={
        "sku": "s2", "stock": 1, "starts_at": "2030-01-01T10:00:00Z", "ends_at": "2030-01-01T10:05:00Z"})
    assert iso.status_code == 201 and iso.json()["starts_at"] == 1893492000000


# stock display: coalesced updates, sold out at once ----------------------------------------------


async def test_stock_updates_are_coalesced_and_sold_out_is_immediate(node: FlashNode) -> None:
    room, stock, crowd = "fs-burst", 200, 500
    watcher = await Client.join(node, room, "watcher")
    buyers = await join_many(node, room, [f"b{i}" for i in range(crowd)])
    sale = live(node, room, "hot-item", stock)
    await watcher.wait_for("sale.started")
    pending = [await b.send_nowait("sale.reserve", {"sku": "hot-item", "quantity": 1, "key": "tap"})
               for b in buyers]
    replies = await asyncio.wait_for(asyncio.gather(*pending), 60)
    accepted = [r for r in replies if r["type"] == "order.accepted"]
    assert len(accepted) == stock
    assert {r["data"]["reason"] for r in replies if r["type"] != "order.accepted"} == {"sold_out"}
    assert sorted(r["data"]["remaining"] for r in accepted) == list(range(stock))
    last_accept = max(t for b in buyers for t, e in b.of("order.accepted"))
    sold_out_at, sold_out = await watcher.wait_for("sold_out")
    assert sold_out["data"] == {"sale_id": sale["sale_id"], "sku": "hot-item", "remaining": 0}
    assert sold_out_at - last_accept < 0.5  # at once, not at the next coalescing tick
    await watcher.wait_for("stock.updated", lambda e: e["data"]["remaining"] == 0)
    await asyncio.sleep(0.5)
    updates = watcher.of("stock.updated")
    values = [e["data"]["remaining"] for _, e in updates]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values) and values[-1] == 0
    times = [t for t, _ in updates]
    for i, t in enumerate(times):  # no more than ~HZ in any one second
        assert sum(1 for u in times[i:] if u - t < 1.0) <= HZ + 1, values
    assert len(updates) < stock / 4  # coalesced: far fewer broadcasts than orders
    assert len(watcher.of("sold_out")) == 1
    # the stored orders are exactly the acknowledged ones
    stored = {o["order_id"]: o["user"] for o in node.orders(room, sale["sale_id"])}
    assert stored == {r["data"]["order_id"]: b.identity for b, r in zip(buyers, replies)
                      if r["type"] == "order.accepted"}
    await close_all([watcher, *buyers])


# countdown ------------------------------------------------------------------------------------------


async def test_countdown_then_start(node: FlashNode) -> None:
    room = "fs-countdown"
    watcher = await Client.join(node, room, "watcher")
    sale = node.create_sale(room, sku="drop", stock=3, starts_in=3.5, duration=60)
    early = await watcher.reserve("drop", "early")
    assert early["data"]["reason"] == "not_started"
    started_at, started = await watcher.wait_for("sale.started", timeout=10)
    assert started["data"]["sale_id"] == sale["sale_id"] and started["data"]["remaining"] == 3
    assert started["ts"] >= sale["starts_at"]
    counts = watcher.of("sale.countdown")
    assert [e["data"]["starts_in"] for _, e in counts] == [4, 3, 2, 1]
    assert all(e["data"]["sale_id"] == sale["sale_id"] and e["data"]["starts_at"] == sale["starts_at"]
               for _, e in counts)
    gaps = [b[0] - a[0] for a, b in zip(counts[1:], counts[2:])] + [started_at - counts[-1][0]]
    assert all(0.6 < g < 1.5 for g in gaps), gaps  # once a second
    buyer = await Client.join(node, room, "buyer")
    assert (await buyer.reserve("drop", "now"))["type"] == "order.accepted"
    await close_all([watcher, buyer])


# holds and the plugin time budget ------------------------------------------------------------------


async def test_an_expired_hold_tells_the_buyer_and_gives_the_stock_back(node: FlashNode) -> None:
    room = "fs-expiry"
    sale = live(node, room, "scarf", 2, hold_seconds=1)
    watcher = await Client.join(node, room, "watcher")
    buyer = await Client.join(node, room, "fan")
    reply = await buyer.reserve("scarf", "scarf-k1")
    assert reply["type"] == "order.accepted", reply
    order = reply["data"]
    assert order["remaining"] == 1
    _, expired = await buyer.wait_for("order.status", lambda e: e["data"]["order_id"] == order["order_id"],
                                      timeout=10)
    assert expired["data"]["status"] == "expired"
    await watcher.wait_for("stock.updated", lambda e: e["data"]["remaining"] == 2, timeout=10)
    paid = await buyer.send("sale.pay", {"order_id": order["order_id"]})
    assert paid["data"]["status"] == "expired"  # too late: the stock went back, and only once
    counters = node.sale(room, sale["sale_id"])
    assert (counters["remaining"], counters["reserved"], counters["expired"]) == (2, 0, 1)
    await close_all([watcher, buyer])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_answers_arrive_even_when_the_hook_runs_over_its_budget(backend: str, tmp_path: Path) -> None:
    """With a 1 ms plugin budget every reserve hook is cancelled; the answer still comes."""
    redis = None
    if backend == "redis":
        require_redis()
        redis = RedisServer(tmp_path / "redis").start()
    flash = FlashNode(write_config(tmp_path, backend, redis, plugins={"timeout_ms": 1})).start()
    try:
        room = "fs-budget"
        sale = live(flash, room, "gloves", 30)
        buyers = await join_many(flash, room, [f"b{i}" for i in range(40)])
        replies = await asyncio.gather(*(b.reserve("gloves", "tap") for b in buyers))
        assert sum(r["type"] == "order.accepted" for r in replies) == 30
        assert {r["data"]["reason"] for r in replies if r["type"] == "order.rejected"} == {"sold_out"}
        assert {o["order_id"] for o in flash.orders(room, sale["sale_id"])} == {
            r["data"]["order_id"] for r in replies if r["type"] == "order.accepted"}
        winner, won = next((b, r) for b, r in zip(buyers, replies) if r["type"] == "order.accepted")
        paid = await winner.send("sale.pay", {"order_id": won["data"]["order_id"]})
        assert paid["type"] == "order.status" and paid["data"]["status"] == "paid"
        timeouts = flash.proc.metrics().get(
            'edge_plugin_timeouts_total{hook="edge_message_received",plugin="flashsale"}', 0)
        assert timeouts > 0  # the late-answer path was taken
        await close_all(buyers)
    finally:
        flash.stop()
        if redis is not None:
            redis.stop()


# crash: SIGKILL mid-sale, restart, every acknowledged order is there -----------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sigkill_mid_sale_loses_no_acknowledged_order(backend: str, tmp_path: Path) -> None:
    room, stock, crowd = "fs-crash", 300, 400
    redis = None
    if backend == "redis":
        require_redis()
        redis = RedisServer(tmp_path / "redis").start()
    config = write_config(tmp_path, backend, redis)
    first = FlashNode(config).start()
    try:
        sale = live(first, room, "crash-item", stock)
        buyers = await join_many(first, room, [f"b{i}" for i in range(crowd)])
        acked: dict[str, str] = {}  # identity -> order id the node acknowledged
        enough = asyncio.Event()

        async def buy(client: Client, delay: float) -> None:
            await asyncio.sleep(delay)  # taps spread over a second: the kill lands mid-sale
            try:
                reply = await client.reserve("crash-item", f"tap-{client.identity}")
            except (ConnectionError, AssertionError, asyncio.TimeoutError):
                return
            if reply["type"] == "order.accepted":
                acked[client.identity] = reply["data"]["order_id"]
                if len(acked) >= 60:
                    enough.set()

        rng = random.Random(11)
        tasks = [asyncio.ensure_future(buy(b, rng.uniform(0, 1.0))) for b in buyers]
        await asyncio.wait_for(enough.wait(), 60)
        first.stop(signal.SIGKILL)  # mid-sale: answers are still on their way
        await asyncio.gather(*tasks)
        await close_all(buyers)
        assert 60 <= len(acked) < stock
        if redis is not None:
            redis.kill()
            redis.start()  # replays its AOF
        second = FlashNode(config).start()
        try:
            stored = {o["order_id"]: o for o in second.orders(room, sale["sale_id"])}
            assert set(acked.values()) <= set(stored)  # every acknowledged order survived
            for identity, order_id in acked.items():
                assert stored[order_id]["user"] == identity
            counters = second.sale(room, sale["sale_id"])
            assert counters["sold"] + counters["reserved"] + counters["remaining"] == stock
            assert counters["orders"] == len(stored) and counters["reserved"] == len(stored)
            ledger = sqlite3.connect(tmp_path / "flashsale.db")
            try:
                in_file = {row[0] for row in ledger.execute(
                    "SELECT order_id FROM orders WHERE sale_id = ?", (sale["sale_id"],))}
            finally:
                ledger.close()
            if backend == "redis":  # reconciled into the SQLite ledger on start
                assert set(acked.values()) <= in_file
            else:
                assert in_file == set(stored)
            # every buyer retries with the same key: the acknowledged get their order back,
            # the rest get what is left, and exactly the stock is sold in the end
            again = await join_many(second, room, [f"b{i}" for i in range(crowd)])
            replies = await asyncio.gather(*(c.reserve("crash-item", f"tap-{c.identity}") for c in again))
            for client, reply in zip(again, replies):
                if client.identity in acked:
                    assert reply["type"] == "order.accepted"
                    assert reply["data"]["order_id"] == acked[client.identity]
            winners = {r["data"]["order_id"] for r in replies if r["type"] == "order.accepted"}
            assert len(winners) == stock
            assert {r["data"]["reason"] for r in replies if r["type"] != "order.accepted"} <= {"sold_out"}
            final = second.sale(room, sale["sale_id"])
            assert (final["remaining"], final["reserved"], final["orders"]) == (0, stock, stock)
            assert set(o["order_id"] for o in second.orders(room, sale["sale_id"])) == winners
            await close_all(again)
        finally:
            second.stop()
    finally:
        first.stop()
        if redis is not None:
            redis.stop()
