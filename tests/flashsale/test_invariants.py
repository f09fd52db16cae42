"""The flash-sale invariants, against both backends (``backend`` is parametrized).

Service-level: ``FlashSales`` over a real SQLite file, or a real redis-server
with its SQLite ledger. What the tests compare against is read independently:
the SQLite file through a fresh ``sqlite3`` connection.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from edge_flashsale.inventory import (
    CANCELLED,
    ENDED,
    EXPIRED,
    INSUFFICIENT_STOCK,
    INVALID_KEY,
    INVALID_QUANTITY,
    KEY_REUSED,
    LIMIT_REACHED,
    NOT_STARTED,
    OVER_LIMIT,
    PAID,
    SOLD_OUT,
    UNKNOWN_SKU,
    Outcome,
    ReserveRequest,
    UnknownOrder,
)
from edge_flashsale.service import FlashSales, SaleConflict

from .conftest import Backend, Clock

ROOM = "shop"


async def live_sale(service: FlashSales, clock: Clock, *, stock: int, limit: int = 1, sku: str = "sku-1",
                    hold: float = 300.0, room: str = ROOM):
    return await service.create_sale(room, sku, stock=stock, per_user_limit=limit, starts_at=clock.now - 1,
                                     ends_at=clock.now + 3600, hold_seconds=hold)


async def released_together(attempts: list) -> list[Outcome]:
    """Start every attempt, hold them at a gate, then open it at once."""
    gate = asyncio.Event()

    async def one(attempt):  # type: ignore[no-untyped-def]
        await gate.wait()
        return await attempt()

    tasks = [asyncio.ensure_future(one(a)) for a in attempts]
    await asyncio.sleep(0)  # every task is now waiting at the gate
    gate.set()
    return list(await asyncio.gather(*tasks))


def check_counters(counters, stock: int) -> None:  # type: ignore[no-untyped-def]
    assert counters.remaining >= 0 and counters.reserved >= 0 and counters.sold >= 0
    assert counters.sold + counters.reserved + counters.remaining == stock


# (1) a burst of buyers ------------------------------------------------------------


async def test_10000_buyers_released_together_get_exactly_the_stock(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=100)
    seen: list[int] = []

    async def watch() -> None:  # the stock as a viewer would poll it, during the burst
        while True:
            seen.append((await service.remaining([sale.sale_id]))[sale.sale_id])
            await asyncio.sleep(0.005)

    watcher = asyncio.ensure_future(watch())
    outcomes = await released_together(
        [lambda i=i: service.reserve(ROOM, "sku-1", f"buyer{i}", 1, f"k{i}") for i in range(10_000)]
    )
    watcher.cancel()
    accepted = [o for o in outcomes if o.accepted]
    assert len(accepted) == 100
    assert {o.reason for o in outcomes if not o.accepted} == {SOLD_OUT}
    assert all(o.remaining is not None and o.remaining >= 0 for o in outcomes)
    assert sorted(o.remaining for o in accepted) == list(range(100))  # each unit handed out once
    assert seen and min(seen) >= 0
    counters = await service.counters(sale.sale_id)
    check_counters(counters, 100)
    assert (counters.reserved, counters.remaining, counters.orders) == (100, 0, 100)
    # (4) the acknowledged buyers are exactly the stored orders
    await service.inventory.sync()
    stored = backend.stored_orders()
    assert set(stored) == {o.order_id for o in accepted}
    assert {u for u, _, _ in stored.values()} == {f"buyer{i}" for i, o in enumerate(outcomes) if o.accepted}
    assert {o.order_id for o in await service.orders(sale.sale_id)} == set(stored)
    await service.close()


async def test_mixed_quantities_never_oversell(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=97, limit=5)
    rng = random.Random(7)
    wanted = [rng.randint(1, 5) for _ in range(2000)]
    outcomes = await released_together(
        [lambda i=i, q=q: service.reserve(ROOM, "sku-1", f"b{i}", q, f"k{i}") for i, q in enumerate(wanted)]
    )
    sold = sum(o.quantity for o in outcomes if o.accepted)
    assert sold == 97  # 1-unit buyers keep coming until the last unit is gone
    assert {o.reason for o in outcomes if not o.accepted} <= {SOLD_OUT, INSUFFICIENT_STOCK}
    check_counters(await service.counters(sale.sale_id), 97)
    await service.inventory.sync()
    assert sum(q for _, q, _ in backend.stored_orders().values()) == 97
    await service.close()


# (2) one user, many parallel attempts ------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 3])
async def test_one_user_firing_50_parallel_attempts_stays_within_the_limit(
    backend: Backend, clock: Clock, limit: int
) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=1000, limit=limit)
    outcomes = await released_together(
        [lambda i=i: service.reserve(ROOM, "sku-1", "greedy", 1, f"tap-{i}") for i in range(50)]
    )
    assert sum(o.accepted for o in outcomes) == limit
    assert {o.reason for o in outcomes if not o.accepted} == {LIMIT_REACHED}
    counters = await service.counters(sale.sale_id)
    assert counters.reserved == limit and counters.remaining == 1000 - limit
    # a bigger single request is over the limit outright
    big = await service.reserve(ROOM, "sku-1", "other", limit + 1, "big")
    assert big.reason == OVER_LIMIT
    await service.close()


async def test_stock_comes_back_and_so_does_the_users_allowance(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    await live_sale(service, clock, stock=1, limit=1, hold=30)
    first = await service.reserve(ROOM, "sku-1", "ann", 1, "a1")
    assert first.accepted and first.remaining == 0
    assert (await service.reserve(ROOM, "sku-1", "bob", 1, "b1")).reason == SOLD_OUT
    assert (await service.reserve(ROOM, "sku-1", "ann", 1, "a2")).reason == LIMIT_REACHED
    assert await service.cancel(first.order_id) == CANCELLED
    again = await service.reserve(ROOM, "sku-1", "ann", 1, "a3")
    assert again.accepted and again.remaining == 0
    await service.close()


# (3) idempotency ------------------------------------------------------------------------


async def test_identical_retry_gets_the_identical_answer_and_no_second_decrement(
    backend: Backend, clock: Clock
) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=10, limit=2)
    first = await service.reserve(ROOM, "sku-1", "ann", 2, "tap-1")
    assert first.accepted and first.remaining == 8
    await service.reserve(ROOM, "sku-1", "bob", 1, "tap-2")  # the stock moves on
    clock.advance(5)
    retry = await service.reserve(ROOM, "sku-1", "ann", 2, "tap-1")
    assert retry == first  # the same order, expiry and remaining, byte for byte
    assert (await service.counters(sale.sale_id)).reserved == 3
    # a stored refusal is replayed too, even once stock came back
    refused = await service.reserve(ROOM, "sku-1", "cy", 2, "tap-3")
    assert refused.accepted
    over = await service.reserve(ROOM, "sku-1", "cy", 1, "tap-4")
    assert over.reason == LIMIT_REACHED
    assert await service.cancel(refused.order_id) == CANCELLED
    assert await service.reserve(ROOM, "sku-1", "cy", 1, "tap-4") == over
    # the record survives a restart
    await service.close()
    service = await backend.service(clock)
    assert await service.reserve(ROOM, "sku-1", "ann", 2, "tap-1") == first
    assert (await service.counters(sale.sale_id)).reserved == 3
    await service.close()


async def test_same_key_with_a_different_body_is_an_error(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=10, limit=3)
    await live_sale(service, clock, stock=10, limit=3, sku="sku-2")
    first = await service.reserve(ROOM, "sku-1", "ann", 1, "tap-1")
    assert first.accepted
    for room, sku, quantity in ((ROOM, "sku-1", 2), (ROOM, "sku-2", 1)):
        other = await service.reserve(room, sku, "ann", quantity, "tap-1")
        assert not other.accepted and other.reason == KEY_REUSED
    # keys belong to their user: someone else's identical key is a new attempt
    assert (await service.reserve(ROOM, "sku-1", "bob", 1, "tap-1")).accepted
    assert (await service.counters(sale.sale_id)).reserved == 2
    await service.close()


async def test_concurrent_duplicates_are_processed_once(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=10, limit=5)
    outcomes = await released_together(
        [lambda: service.reserve(ROOM, "sku-1", "ann", 2, "double-tap") for _ in range(40)]
    )
    assert outcomes[0].accepted
    assert all(o == outcomes[0] for o in outcomes)
    counters = await service.counters(sale.sale_id)
    assert (counters.reserved, counters.orders, counters.remaining) == (2, 1, 8)
    await service.inventory.sync()
    assert list(backend.stored_orders()) == [outcomes[0].order_id]
    await service.close()


# (5) holds: expiry racing payment ----------------------------------------------------------


async def test_expired_reservation_returns_its_stock_exactly_once(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=5, limit=1, hold=60)
    orders = [await service.reserve(ROOM, "sku-1", f"b{i}", 1, f"k{i}") for i in range(5)]
    assert (await service.counters(sale.sale_id)).remaining == 0
    due = max(o.expires_at for o in orders)
    assert abs(due - (clock.now + 60)) < 0.002
    assert await service.expire_due(due - 1) == []
    expired = await service.expire_due(due)
    assert sorted(o.order_id for o in expired) == sorted(o.order_id for o in orders)
    for _ in range(3):  # sweeping again, paying or cancelling late returns nothing more
        assert await service.expire_due(clock.now + 120) == []
    clock.advance(61)
    assert await service.confirm_payment(orders[0].order_id) == EXPIRED
    assert await service.cancel(orders[1].order_id) == EXPIRED
    counters = await service.counters(sale.sale_id)
    assert (counters.remaining, counters.reserved, counters.expired) == (5, 0, 5)
    await service.inventory.sync()
    assert {s for _, _, s in backend.stored_orders().values()} == {EXPIRED}
    await service.close()


async def test_expiry_racing_payment_has_exactly_one_outcome(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=200, limit=1, hold=60)
    start = clock.now
    orders = []
    for i in range(120):
        orders.append(await service.reserve(ROOM, "sku-1", f"b{i}", 1, f"k{i}"))
        clock.advance(0.01)  # holds run out 10 ms apart
    clock.now = orders[60].expires_at  # the middle order's hold runs out right now
    paid_calls = [lambda o=o: service.confirm_payment(o.order_id) for o in orders]
    cancel_calls = [lambda o=o: service.cancel(o.order_id) for o in orders[::3]]
    sweeps = [lambda: service.expire_due(clock.now) for _ in range(5)]
    results = await released_together([*paid_calls, *cancel_calls, *sweeps])
    paid = results[: len(orders)]
    assert set(paid) <= {PAID, EXPIRED}
    stored = {o.order_id: o.status for o in await service.orders(sale.sale_id)}
    for order, said in zip(orders, paid):
        final = stored[order.order_id]
        assert final in (PAID, EXPIRED, CANCELLED)
        assert (said == PAID) == (final == PAID)  # the payer heard the one outcome there is
        if order.expires_at <= clock.now:
            assert final == EXPIRED
    counters = await service.counters(sale.sale_id)
    returned = sum(1 for s in stored.values() if s in (EXPIRED, CANCELLED))
    assert counters.remaining == 200 - 120 + returned  # each returned exactly once
    assert counters.sold == sum(1 for s in stored.values() if s == PAID)
    check_counters(counters, 200)
    assert start < clock.now
    await service.close()


async def test_payment_is_idempotent_and_final(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=3, hold=60)
    order = await service.reserve(ROOM, "sku-1", "ann", 1, "k")
    results = await asyncio.gather(*(service.confirm_payment(order.order_id) for _ in range(10)))
    assert results == [PAID] * 10
    assert await service.cancel(order.order_id) == PAID
    assert await service.expire_due(clock.now + 3600) == []
    counters = await service.counters(sale.sale_id)
    assert (counters.sold, counters.reserved, counters.remaining) == (1, 0, 2)
    with pytest.raises(UnknownOrder):
        await service.confirm_payment(sale.sale_id + ".nope")
    with pytest.raises(UnknownOrder):
        await service.confirm_payment("nothing-like-an-order")
    await service.close()


# (7) bad input and missing sales: rejected without side effects ---------------------------------


async def test_bad_input_is_rejected_with_a_reason_and_changes_nothing(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=10, limit=2)
    later = await service.create_sale(ROOM, "sku-later", stock=5, starts_at=clock.now + 60, ends_at=clock.now + 120)
    over = await service.create_sale(ROOM, "sku-over", stock=5, starts_at=clock.now - 120, ends_at=clock.now + 1)
    clock.advance(2)  # sku-over has ended now
    cases = [
        (("nope", "u", 1, "k1"), UNKNOWN_SKU),
        (("sku-1", "u", 0, "k2"), INVALID_QUANTITY),
        (("sku-1", "u", -3, "k3"), INVALID_QUANTITY),
        (("sku-1", "u", True, "k4"), INVALID_QUANTITY),
        (("sku-1", "u", 1.5, "k5"), INVALID_QUANTITY),
        (("sku-1", "u", "1", "k6"), INVALID_QUANTITY),
        (("sku-1", "u", 3, "k7"), OVER_LIMIT),
        (("sku-1", "u", 1, ""), INVALID_KEY),
        (("sku-1", "u", 1, "has space"), INVALID_KEY),
        (("sku-1", "u", 1, "x" * 129), INVALID_KEY),
        (("sku-1", "u", 1, None), INVALID_KEY),
        (("sku-1", "u", 1, "ünïcode"), INVALID_KEY),
        (("sku-later", "u", 1, "k8"), NOT_STARTED),
        (("sku-over", "u", 1, "k9"), ENDED),
    ]
    for args, reason in cases:
        outcome = await service.reserve(ROOM, *args)
        assert not outcome.accepted and outcome.reason == reason, (args, outcome)
        assert outcome.order_id is None
    # the same SKU in another room is another (missing) sale
    assert (await service.reserve("other-room", "sku-1", "u", 1, "k10")).reason == UNKNOWN_SKU
    for s in (sale, later, over):
        c = await service.counters(s.sale_id)
        assert (c.remaining, c.reserved, c.orders) == (s.stock, 0, 0)
    await service.inventory.sync()
    assert backend.stored_orders() == {}
    # nothing was remembered under those keys: once the input is right, they work
    assert (await service.reserve(ROOM, "sku-1", "u", 1, "k7")).accepted
    clock.advance(60)
    assert (await service.reserve(ROOM, "sku-later", "u", 1, "k8")).accepted
    await service.close()


async def test_sales_are_validated_and_may_not_overlap(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    await live_sale(service, clock, stock=10)
    with pytest.raises(SaleConflict):
        await service.create_sale(ROOM, "sku-1", stock=5, starts_at=clock.now + 10, ends_at=clock.now + 20)
    bad = [
        dict(stock=0), dict(stock=-1), dict(stock=True), dict(per_user_limit=0), dict(per_user_limit=11),
        dict(hold_seconds=0), dict(ends_at=clock.now - 1), dict(starts_at=clock.now + 10, ends_at=clock.now + 5),
        dict(title=""), dict(price_minor=100), dict(price_minor=-1, currency="USD"), dict(currency="usd", price_minor=1),
    ]
    for override in bad:
        args = dict(stock=10, starts_at=clock.now, ends_at=clock.now + 60, per_user_limit=1)
        args.update(override)
        with pytest.raises(ValueError):
            await service.create_sale(ROOM, "sku-2", **args)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await service.create_sale(ROOM, "bad sku", stock=1, starts_at=clock.now, ends_at=clock.now + 5)
    assert [s.sku for s in service.sales(ROOM)] == ["sku-1"]
    # a later sale of the same SKU is fine once the first is over
    nxt = await service.create_sale(ROOM, "sku-1", stock=5, starts_at=clock.now + 3600, ends_at=clock.now + 7200,
                                    price_minor=999, currency="EUR")
    assert service.current_sale(ROOM, "sku-1").sale_id != nxt.sale_id
    clock.advance(3600)
    assert service.active_sale(ROOM, "sku-1") == nxt
    await service.close()
    service = await backend.service(clock)  # the catalogue is durable
    assert service.sale(nxt.sale_id) == nxt
    await service.close()


async def test_a_missing_sale_record_in_the_store_is_rejected(backend: Backend, clock: Clock) -> None:
    """(7) The store must refuse a sale it has no stock record for, not decrement nothing."""
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=5)
    ghost = replace(sale, sale_id="sghost")
    outcome = await service.inventory.reserve(ghost, ReserveRequest(ROOM, "sku-1", "u", 1, "k"), "sghost.1", clock.now)
    assert not outcome.accepted and outcome.reason == UNKNOWN_SKU
    assert (await service.counters(sale.sale_id)).remaining == 5
    await service.inventory.sync()
    assert backend.stored_orders() == {}
    await service.close()


# restart ------------------------------------------------------------------------------------


async def test_a_reopened_store_has_every_acknowledged_order_and_goes_on(backend: Backend, clock: Clock) -> None:
    service = await backend.service(clock)
    sale = await live_sale(service, clock, stock=50, limit=2)
    outcomes = await released_together(
        [lambda i=i: service.reserve(ROOM, "sku-1", f"b{i % 40}", 1, f"k{i}") for i in range(120)]
    )
    accepted = {o.order_id for o in outcomes if o.accepted}
    assert len(accepted) == 50
    await service.confirm_payment(sorted(accepted)[0])
    await service.close()
    service = await backend.service(clock)
    assert {o.order_id for o in await service.orders(sale.sale_id)} == accepted
    counters = await service.counters(sale.sale_id)
    assert (counters.sold, counters.reserved, counters.remaining) == (1, 49, 0)
    assert (await service.reserve(ROOM, "sku-1", "late", 1, "late")).reason == SOLD_OUT
    await service.cancel(sorted(accepted)[1])
    assert (await service.reserve(ROOM, "sku-1", "late", 1, "late2")).accepted
    await service.close()
