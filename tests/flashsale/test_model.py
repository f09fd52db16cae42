"""Property: any sequence of attempts, payments, cancellations, sweeps and clock moves
gives, on either backend, exactly what a plain reference model of the rules gives.

Hypothesis draws the sequences. The reference model below is the rules of
docs/flashsale.md written as simply as possible; the SQLite backend decides in
Python, the Redis backend in Lua, and both must agree with it step by step
(outcomes, reasons, stock, order states), so the two are held to one contract.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_flashsale.inventory import (
    CANCELLED,
    ENDED,
    EXPIRED,
    INSUFFICIENT_STOCK,
    INVALID_QUANTITY,
    KEY_REUSED,
    LIMIT_REACHED,
    NOT_STARTED,
    OVER_LIMIT,
    PAID,
    RESERVED,
    SOLD_OUT,
)

from .conftest import Backend, Clock
from .redisproc import RedisServer

STOCK, LIMIT, HOLD = 6, 3, 10.0
OPENS, CLOSES = 1.0, 60.0  # seconds after t0
USERS = ("ann", "bob", "cy")


@dataclass
class Model:
    t0: float
    now: float
    remaining: int = STOCK
    held: dict[str, int] = field(default_factory=dict)
    orders: dict[int, list] = field(default_factory=dict)  # n -> [user, qty, status, expires]
    keys: dict[tuple[str, str], tuple[tuple[str, int], tuple]] = field(default_factory=dict)

    def reserve(self, user: str, qty: int, key: str) -> tuple:
        if qty < 1:
            return ("no", INVALID_QUANTITY)
        body = (user, qty)
        if (user, key) in self.keys:
            stored_body, answer = self.keys[(user, key)]
            return answer if stored_body == body else ("no", KEY_REUSED)
        if self.now < self.t0 + OPENS:
            return ("no", NOT_STARTED)
        if self.now >= self.t0 + CLOSES:
            return ("no", ENDED)
        if qty > LIMIT:
            return ("no", OVER_LIMIT)
        held = self.held.get(user, 0)
        if held + qty > LIMIT:
            answer: tuple = ("no", LIMIT_REACHED, self.remaining)
        elif self.remaining <= 0:
            answer = ("no", SOLD_OUT, self.remaining)
        elif self.remaining < qty:
            answer = ("no", INSUFFICIENT_STOCK, self.remaining)
        else:
            self.remaining -= qty
            self.held[user] = held + qty
            n = len(self.orders)
            self.orders[n] = [user, qty, RESERVED, self.now + HOLD]
            answer = ("ok", n, self.remaining)
        self.keys[(user, key)] = (body, answer)
        return answer

    def _release(self, n: int, target: str) -> None:
        order = self.orders[n]
        order[2] = target
        if target != PAID:
            self.remaining += order[1]
            self.held[order[0]] -= order[1]

    def settle(self, n: int, action: str) -> str:
        order = self.orders[n]
        if order[2] == RESERVED:
            if self.now >= order[3]:
                self._release(n, EXPIRED)
            else:
                self._release(n, PAID if action == "pay" else CANCELLED)
        return order[2]

    def sweep(self) -> set[int]:
        due = {n for n, o in self.orders.items() if o[2] == RESERVED and o[3] <= self.now}
        for n in due:
            self._release(n, EXPIRED)
        return due


steps = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.sampled_from(USERS), st.integers(0, 4), st.sampled_from("abcdef")),
        st.tuples(st.just("pay"), st.integers(0, 15)),
        st.tuples(st.just("cancel"), st.integers(0, 15)),
        st.tuples(st.just("sweep")),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 5.0, 10.0, 30.0])),
    ),
    min_size=1,
    max_size=40,
)


async def run(backend: Backend, program: list[tuple]) -> None:
    clock = Clock(float(int(Clock().now)))  # whole seconds: every step below lands exactly
    model = Model(t0=clock.now, now=clock.now)
    service = await backend.service(clock, hold_seconds=HOLD)
    sale = await service.create_sale("room", "sku", stock=STOCK, per_user_limit=LIMIT,
                                      starts_at=clock.now + OPENS, ends_at=clock.now + CLOSES)
    ids: dict[int, str] = {}  # model order number -> the backend's order id
    for step in program:
        kind = step[0]
        if kind == "reserve":
            _, user, qty, key = step
            want = model.reserve(user, qty, key)
            got = await service.reserve("room", "sku", user, qty, key)
            if want[0] == "ok":
                assert got.accepted and got.remaining == want[2], (step, got, want)
                ids.setdefault(want[1], got.order_id)
                assert got.order_id == ids[want[1]], (step, got)
                model.orders[want[1]][3] = got.expires_at  # the exact hold the backend set
            else:
                assert not got.accepted and got.reason == want[1], (step, got, want)
                if len(want) > 2:
                    assert got.remaining == want[2], (step, got, want)
        elif kind in ("pay", "cancel"):
            if not ids:
                continue
            n = sorted(ids)[step[1] % len(ids)]
            want = model.settle(n, kind)
            if kind == "pay":
                got_state = await service.confirm_payment(ids[n])
                assert got_state == (PAID if want == PAID else EXPIRED), (step, got_state, want)
            else:
                assert await service.cancel(ids[n]) == want, step
        elif kind == "sweep":
            want_due = model.sweep()
            got_due = {o.order_id for o in await service.expire_due(clock.now)}
            assert got_due == {ids[n] for n in want_due}, step
        else:
            model.now = clock.advance(step[1])
        counters = await service.counters(sale.sale_id)
        assert counters.remaining == model.remaining, (step, counters, model)
        assert counters.sold + counters.reserved + counters.remaining == STOCK
    states = {o.order_id: o.status for o in await service.orders(sale.sale_id)}
    assert states == {ids[n]: o[2] for n, o in model.orders.items()}
    await service.inventory.sync()
    assert {k: v[2] for k, v in backend.stored_orders().items()} == states
    await service.close()


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# The edges random programs rarely hit exactly, always tried first.
EDGES = [
    # paying, cancelling, sweeping at the very millisecond the hold runs out: expired
    [("advance", 1.0), ("reserve", "ann", 1, "a"), ("advance", 10.0), ("pay", 0), ("pay", 0)],
    [("advance", 1.0), ("reserve", "ann", 2, "a"), ("advance", 10.0), ("cancel", 0), ("sweep",)],
    [("advance", 1.0), ("reserve", "ann", 3, "a"), ("advance", 5.0), ("reserve", "bob", 3, "b"),
     ("advance", 5.0), ("sweep",), ("pay", 1), ("reserve", "cy", 3, "c")],
    # a stored refusal replays after the stock came back; a retry after the end replays the order
    [("advance", 1.0), ("reserve", "ann", 3, "a"), ("reserve", "bob", 3, "b"), ("reserve", "cy", 1, "c"),
     ("cancel", 0), ("reserve", "cy", 1, "c"), ("reserve", "cy", 2, "c"), ("advance", 30.0),
     ("advance", 30.0), ("reserve", "ann", 3, "a"), ("reserve", "ann", 1, "d")],
    # before the start, at the start, the limit across orders, insufficient stock
    [("reserve", "ann", 1, "a"), ("advance", 0.5), ("advance", 0.5), ("reserve", "ann", 1, "a"),
     ("reserve", "ann", 2, "b"), ("reserve", "ann", 1, "c"), ("reserve", "bob", 3, "d"),
     ("reserve", "cy", 3, "e"), ("reserve", "cy", 0, "f"), ("reserve", "cy", 4, "f")],
]


def edges(test):  # type: ignore[no-untyped-def]
    for program in EDGES:
        test = example(program=program)(test)
    return test


@PROPERTY
@given(program=steps)
@edges
def test_sqlite_backend_follows_the_rules(program: list[tuple]) -> None:
    directory = Path(tempfile.mkdtemp(prefix="edge-fs-model-"))
    try:
        asyncio.run(run(Backend("sqlite", directory, None), program))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@PROPERTY
@given(program=steps)
@edges
def test_redis_backend_follows_the_rules(redis_server: RedisServer, program: list[tuple]) -> None:
    directory = Path(tempfile.mkdtemp(prefix="edge-fs-model-"))
    try:
        asyncio.run(run(Backend("redis", directory, redis_server), program))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
