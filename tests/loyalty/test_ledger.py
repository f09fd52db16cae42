"""Ledger invariants, for any sequence of earn / redeem / reverse / adjust / expire operations.

The store runs on an in-memory SQLite database (same SQL, same triggers) so
hypothesis can try many sequences quickly; durability is the bench's subject.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_loyalty.clock import add_months
from edge_loyalty.config import parse_config
from edge_loyalty.store import Store

from .helpers import T0

DAY = 86400.0
MEMBERS = ["ann", "bo"]
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def new_store(**config: Any) -> Store:
    return Store(":memory:", parse_config(config), durable=False)


# operations: (name, args); time moves only through "wait"
earn = st.tuples(
    st.just("earn"), st.sampled_from(MEMBERS), st.integers(0, 3), st.integers(1, 200), st.integers(0, 50)
)  # member, event number (small pool: replays happen), points, growth
redeem = st.tuples(st.just("redeem"), st.sampled_from(MEMBERS), st.integers(0, 2), st.integers(1, 150))
reverse = st.tuples(st.just("reverse"), st.sampled_from(["earn", "redeem", "adjust"]), st.sampled_from(MEMBERS), st.integers(0, 3))
adjust = st.tuples(
    st.just("adjust"), st.sampled_from(MEMBERS), st.integers(0, 3), st.sampled_from(["points", "growth"]),
    st.integers(-100, 100).filter(bool),
)
wait = st.tuples(st.just("wait"), st.integers(1, 400))
sweep = st.tuples(st.just("sweep"))
OPS = st.lists(st.one_of(earn, earn, redeem, reverse, adjust, wait, sweep), min_size=12, max_size=40)


def apply(store: Store, op: tuple[Any, ...], now: float) -> Any:
    kind = op[0]
    if kind == "earn":
        _, member, n, points, growth = op
        return store.earn(member, "watch", now, points=points, growth=growth, event_id=f"e:{member}:{n}", cap=0)
    if kind == "redeem":
        _, member, n, points = op
        return store.redeem(member, points, f"o:{member}:{n}", now)
    if kind == "reverse":
        _, what, member, n = op
        event = {"earn": f"e:{member}:{n}", "redeem": f"redeem:o:{member}:{n}", "adjust": f"adjust:{member}:{n}"}[what]
        return store.reverse(event, now, reason="test")
    if kind == "adjust":
        _, member, n, account, amount = op
        return store.adjust(member, account, amount, "test", "ops", now, key=f"{member}:{n}")
    if kind == "sweep":
        return store.sweep(now)
    raise AssertionError(op)


def run(store: Store, ops: list[tuple[Any, ...]]) -> list[tuple[tuple[Any, ...], float]]:
    """Apply ``ops``; return each op that took effect, with the time it ran at."""
    now, done = T0, []
    for op in ops:
        if op[0] == "wait":
            now += op[1] * DAY
            continue
        outcome = apply(store, op, now)
        if outcome.status not in ("insufficient", "not_found", "conflict", "nothing"):
            done.append((op, now))  # what took effect (or was already there)
        check_invariants(store)
    return done


def snapshot(store: Store) -> tuple[Any, ...]:
    rows = store.db.execute("SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM ledger").fetchone()
    members = store.db.execute("SELECT identity, points, growth, tier_level FROM members ORDER BY identity").fetchall()
    return rows, tuple(members)


def check_invariants(store: Store) -> None:
    db = store.db
    for (identity,) in db.execute("SELECT identity FROM members").fetchall():
        cached, summed = store.verify(identity)
        assert cached == summed, f"{identity}: cached balance {cached} != ledger sum {summed}"
    # every lot: expired + reversed never more than it earned, and only after its time
    lots = db.execute(
        "SELECT event_id, amount, at, expires_at FROM ledger WHERE account = 'points' AND amount > 0"
        " AND kind IN ('earn', 'adjust')"
    ).fetchall()
    for event_id, amount, at, expires_at in lots:
        assert expires_at == add_months(at, 12)
        expired = db.execute(
            "SELECT COALESCE(-SUM(amount), 0), MIN(at) FROM ledger WHERE kind = 'expire' AND ref = ?", (event_id,)
        ).fetchone()
        reversed_ = db.execute(
            "SELECT COALESCE(-SUM(amount), 0) FROM ledger WHERE kind = 'reversal' AND ref = ? AND account = 'points'",
            (event_id,),
        ).fetchone()[0]
        assert 0 <= expired[0] + reversed_ <= amount
        if expired[0]:
            assert expired[1] >= expires_at >= at + 365 * DAY
    # expiry entries only ever reference lots
    orphans = db.execute(
        "SELECT COUNT(*) FROM ledger e WHERE kind = 'expire' AND NOT EXISTS"
        " (SELECT 1 FROM ledger l WHERE l.event_id = e.ref AND l.account = 'points' AND l.amount > 0)"
    ).fetchone()[0]
    assert orphans == 0


@SETTINGS
@given(OPS)
def test_balance_is_the_sum_of_entries_and_replay_changes_nothing(ops: list[tuple[Any, ...]]) -> None:
    store = new_store()
    done = run(store, ops)
    before = snapshot(store)
    for op, at in done:  # the same events again, each at its original time
        apply(store, op, at)
    assert snapshot(store) == before
    check_invariants(store)


@SETTINGS
@given(OPS, st.sampled_from(MEMBERS), st.integers(1, 300))
def test_expiry_never_takes_more_than_was_earned_nor_makes_a_balance_negative(
    ops: list[tuple[Any, ...]], member: str, later_days: int
) -> None:
    store = new_store()
    done = run(store, ops)
    now = (done[-1][1] if done else T0) + later_days * DAY
    store.sweep(now - 1)  # settle what was due before
    before = store.member(member)
    out = store.sweep(now)
    after = store.member(member)
    expired = -sum(e["amount"] for e in out.entries if e["identity"] == member and e["kind"] == "expire")
    if before is not None and after is not None:
        assert before.points - after.points == expired
        if before.points >= 0:
            assert after.points >= 0
        earned = store.db.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE identity = ? AND account = 'points'"
            " AND amount > 0 AND kind IN ('earn', 'adjust')",
            (member,),
        ).fetchone()[0]
        total_expired = store.db.execute(
            "SELECT COALESCE(-SUM(amount), 0) FROM ledger WHERE identity = ? AND kind = 'expire'", (member,)
        ).fetchone()[0]
        assert total_expired <= earned
    check_invariants(store)


@SETTINGS
@given(OPS, st.sampled_from(MEMBERS), st.sampled_from(["earn", "redeem", "adjust"]), st.integers(1, 100))
def test_a_reversal_restores_the_balance_exactly(
    ops: list[tuple[Any, ...]], member: str, what: str, amount: int
) -> None:
    store = new_store()
    done = run(store, ops)
    now = (done[-1][1] if done else T0) + 1
    store.sweep(now)  # nothing is due any more at `now`
    store.adjust(member, "points", 5000, "float", "ops", now, key="float")  # enough to redeem
    before = store.verify(member)[1]
    if what == "earn":
        out = store.earn(member, "watch", now, points=amount, growth=amount, event_id="x", cap=0)
        event = "x"
    elif what == "redeem":
        out = store.redeem(member, amount, "ox", now)
        event = "redeem:ox"
    else:
        out = store.adjust(member, "points", -amount, "fix", "ops", now, key="x")
        event = "adjust:x"
    assert out.status in ("credited", "redeemed", "adjusted"), out.status
    assert store.verify(member)[1] != before
    assert store.reverse(event, now, reason="undo").status == "reversed"
    assert store.verify(member)[1] == before
    assert store.reverse(event, now, reason="undo").status == "duplicate"
    assert store.verify(member)[1] == before
    check_invariants(store)


def test_points_expire_after_twelve_months_fifo() -> None:
    store = new_store()
    store.earn("ann", "watch", T0, points=100, growth=0, event_id="jan", cap=0)
    store.earn("ann", "watch", T0 + 60 * DAY, points=100, growth=0, event_id="may", cap=0)
    assert store.redeem("ann", 150, "o1", T0 + 90 * DAY).status == "redeemed"  # all of jan, half of may
    assert store.sweep(add_months(T0, 12) - 1).info["expired"] == 0  # not yet
    assert store.sweep(add_months(T0, 12)).info["expired"] == 0  # jan was spent
    out = store.sweep(add_months(T0 + 60 * DAY, 12))
    assert out.info["expired"] == 50 and store.member("ann").points == 0  # type: ignore[union-attr]
    assert out.entries[0]["ref"] == "may" and out.entries[0]["event_id"] == "expire:may:1"
    assert store.sweep(add_months(T0 + 60 * DAY, 12) + DAY).info["expired"] == 0  # idempotent
    # a refund of the redemption after both lots expired gives back points that expire at once
    out = store.reverse_redemption("o1", add_months(T0 + 60 * DAY, 12) + 2 * DAY)
    assert [e["kind"] for e in out.entries] == ["reversal", "expire", "expire"]
    assert store.member("ann").points == 0  # type: ignore[union-attr]
    assert store.verify("ann")[0] == store.verify("ann")[1]


def test_expiry_can_be_switched_off() -> None:
    store = new_store(points_expiry_months=0)
    store.earn("ann", "watch", T0, points=10, growth=0, event_id="a", cap=0)
    assert store.sweep(T0 + 3650 * DAY).info["expired"] == 0
    assert store.member("ann").points == 10  # type: ignore[union-attr]


def test_the_ledger_refuses_update_and_delete() -> None:
    store = new_store()
    store.earn("ann", "watch", T0, points=10, growth=0, event_id="a", cap=0)
    for sql in ("UPDATE ledger SET amount = 1000", "DELETE FROM ledger", "UPDATE ledger SET event_id = 'b'"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.db.execute(sql)
    with pytest.raises(sqlite3.IntegrityError):  # one row per (event, account)
        store.db.execute(
            "INSERT INTO ledger (event_id, account, identity, kind, rule, amount, at, day)"
            " VALUES ('a', 'points', 'ann', 'earn', 'watch', 5, 0, '2025-01-01')"
        )
    assert store.verify("ann") == ((10, 0), (10, 0))


def test_caps_and_idempotent_rules() -> None:
    store = new_store(share_daily_cap=2, checkin_points=2, checkin_growth=1)
    assert [store.earn("ann", "share", T0 + i).status for i in range(4)] == ["credited", "credited", "capped", "capped"]
    assert store.earn("ann", "share", T0 + DAY).status == "credited"  # a new day
    assert store.checkin("ann", T0).status == "credited"
    assert store.checkin("ann", T0 + 3600).status == "already"
    assert store.checkin("ann", T0 + DAY).status == "credited"
    assert store.member("ann").points == 3 + 4  # type: ignore[union-attr]
    assert store.purchase("ann", "o9", 0, 40, T0).status == "credited"
    assert store.purchase("ann", "o9", 0, 40, T0 + 5).status == "duplicate"
    assert store.member("ann").growth == 3 + 2 + 40  # type: ignore[union-attr]
