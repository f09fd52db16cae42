"""Segment rules on synthetic histories, the draw algorithm, the config and the
metric formulas: pure code, explicit timestamps, no node."""

from __future__ import annotations

import csv
import hashlib
import io

import pytest

from edge_segments import draws, metrics
from edge_segments.config import parse_config
from edge_segments.engine import (
    DORMANT, HIGH_VALUE, NEW_BUYER, Engine, Rules, Transition, micros_to_str, parse_amount,
)
from edge_segments.store import Store

T0 = 1_750_000_000.0
MIN = 60.0
DAY = 86400.0
RULES = Rules()


def entered(transitions: list[Transition], segment: str) -> bool:
    return any(t.segment == segment and t.entered for t in transitions)


def watch(engine: Engine, identity: str, start: float, seconds: float, room: str = "r") -> list[Transition]:
    out = engine.watch_started(room, identity, start)
    return out + engine.watch_ended(room, identity, start, start + seconds)


# high-value prospect: watched > 30 min, >= 2 clicks, no order ----------------------------


@pytest.mark.parametrize(
    ("watched", "expected"), [(30 * MIN, False), (30 * MIN + 1, True), (29 * MIN, False), (45 * MIN, True)]
)
def test_high_value_needs_strictly_more_than_30_minutes(watched: float, expected: bool) -> None:
    engine = Engine(RULES)
    engine.seen("r", "v", T0)
    engine.click("r", "v", "X", T0 + 1)
    engine.click("r", "v", "Y", T0 + 2)
    out = watch(engine, "v", T0 + 10, watched)
    assert entered(out, HIGH_VALUE) is expected
    assert (engine.profiles[("r", "v")].segments() == [HIGH_VALUE]) is expected


def test_high_value_needs_two_clicks_and_no_order() -> None:
    engine = Engine(RULES)
    engine.seen("r", "v", T0)
    engine.click("r", "v", "X", T0 + 1)
    assert not entered(watch(engine, "v", T0 + 10, 40 * MIN), HIGH_VALUE)  # one click only
    out = engine.click("r", "v", "X", T0 + 50 * MIN)
    assert out == [Transition("r", "v", HIGH_VALUE, True, 1, T0 + 50 * MIN)]
    first, out = engine.order_paid("r", "v", "X", 10_000_000, T0 + 60 * MIN)
    assert first
    assert [(t.segment, t.entered) for t in out] == [(HIGH_VALUE, False), (NEW_BUYER, True)]
    assert engine.click("r", "v", "Z", T0 + 61 * MIN) == []  # a buyer is no prospect


def test_sessions_add_up_and_overlapping_sessions_count_once() -> None:
    engine = Engine(RULES)
    engine.seen("r", "v", T0)
    engine.click("r", "v", "X", T0)
    engine.click("r", "v", "X", T0)
    watch(engine, "v", T0 + 100, 10 * MIN)
    watch(engine, "v", T0 + 1000, 10 * MIN)
    # two tabs open for the same 10 minutes: 10 minutes watched, not 20
    engine.watch_started("r", "v", T0 + 2000)
    engine.watch_started("r", "v", T0 + 2000 + 1)
    engine.watch_ended("r", "v", T0 + 2000 + 1, T0 + 2000 + 10 * MIN)
    out = engine.watch_ended("r", "v", T0 + 2000, T0 + 2000 + 10 * MIN)
    assert engine.profiles[("r", "v")].watch_seconds == 30 * MIN
    assert not entered(out, HIGH_VALUE)  # exactly 30 minutes
    assert entered(watch(engine, "v", T0 + 5000, 1), HIGH_VALUE)


def test_a_live_viewer_crosses_the_watch_threshold_by_time_alone() -> None:
    engine = Engine(RULES)
    engine.seen("r", "v", T0)
    engine.click("r", "v", "X", T0)
    engine.click("r", "v", "X", T0)
    engine.watch_started("r", "v", T0 + 10)
    assert engine.advance(T0 + 10 + 30 * MIN) == []  # exactly 30 minutes in
    out = engine.advance(T0 + 10 + 30 * MIN + 1)
    assert [(t.segment, t.entered, t.entry) for t in out] == [(HIGH_VALUE, True, 1)]
    assert engine.advance(T0 + 10 + 60 * MIN) == []  # once per entry
    assert engine.watch_ended("r", "v", T0 + 10, T0 + 10 + 60 * MIN) == []


# new buyer: first order within 7 days -------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "expected"),
    [(0.0, True), (6 * DAY, True), (7 * DAY, True), (7 * DAY + 1, False), (8 * DAY, False)],
)
def test_new_buyer_until_the_end_of_day_7(age: float, expected: bool) -> None:
    engine = Engine(RULES)
    first, out = engine.order_paid("r", "b", "X", 1_000_000, T0)
    assert first and entered(out, NEW_BUYER)
    out = engine.advance(T0 + age)
    assert (engine.profiles[("r", "b")].segments() == [NEW_BUYER]) is expected
    assert any(t.segment == NEW_BUYER and not t.entered for t in out) is (not expected)


def test_a_second_order_does_not_restart_the_new_buyer_window() -> None:
    engine = Engine(RULES)
    engine.order_paid("r", "b", "X", 1_000_000, T0)
    first, out = engine.order_paid("r", "b", "Y", 1_000_000, T0 + 5 * DAY)
    assert not first and out == []
    out = engine.advance(T0 + 8 * DAY)
    assert [(t.segment, t.entered) for t in out] == [(NEW_BUYER, False)]
    assert engine.profiles[("r", "b")].nb_entries == 1


# dormant: no watch for 30 days (>= 30 days since the last watch ended) -----------------------


@pytest.mark.parametrize(
    ("idle", "expected"), [(29 * DAY, False), (30 * DAY - 1, False), (30 * DAY, True), (31 * DAY, True)]
)
def test_dormant_after_exactly_30_days_without_watching(idle: float, expected: bool) -> None:
    engine = Engine(RULES)
    engine.seen("r", "d", T0)
    watch(engine, "d", T0 + 10, 5 * MIN)
    end = T0 + 10 + 5 * MIN
    engine.interaction("r", "d", end + 5 * DAY)  # chatting is not watching
    out = engine.advance(end + idle)
    assert entered(out, DORMANT) is expected
    assert (DORMANT in engine.profiles[("r", "d")].segments()) is expected


def test_dormant_counts_from_first_seen_when_never_watched_and_not_while_watching() -> None:
    engine = Engine(RULES)
    engine.seen("r", "d", T0)
    assert engine.advance(T0 + 29 * DAY) == []
    assert entered(engine.advance(T0 + 30 * DAY), DORMANT)
    # a viewer watching for 40 days straight is never dormant
    engine.seen("r", "w", T0 + 30 * DAY)
    engine.watch_started("r", "w", T0 + 30 * DAY)
    assert not any(t.identity == "w" for t in engine.advance(T0 + 70 * DAY))
    assert engine.profiles[("r", "w")].segments() == []


def test_dormant_again_is_a_new_entry() -> None:
    engine = Engine(RULES)
    engine.seen("r", "d", T0)
    watch(engine, "d", T0, 60)
    out = engine.advance(T0 + 60 + 30 * DAY)
    assert [(t.segment, t.entered, t.entry) for t in out] == [(DORMANT, True, 1)]
    out = engine.watch_started("r", "d", T0 + 40 * DAY)  # came back
    assert [(t.segment, t.entered, t.entry) for t in out] == [(DORMANT, False, 1)]
    engine.watch_ended("r", "d", T0 + 40 * DAY, T0 + 40 * DAY + 60)
    out = engine.advance(T0 + 40 * DAY + 60 + 30 * DAY)
    assert [(t.segment, t.entered, t.entry) for t in out] == [(DORMANT, True, 2)]


def test_configured_thresholds() -> None:
    rules = parse_config({
        "high_value": {"min_watch_minutes": 5, "min_clicks": 1},
        "new_buyer": {"days": 1}, "dormant": {"days": 2}, "targeted_min_clicks": 2,
    }).rules
    engine = Engine(rules)
    engine.seen("r", "v", T0)
    engine.click("r", "v", "X", T0)
    assert not engine.targeted("r", "X")
    engine.click("r", "v", "X", T0)
    assert engine.targeted("r", "X") == {"v"}
    assert entered(watch(engine, "v", T0, 5 * MIN + 1), HIGH_VALUE)
    engine.order_paid("r", "v", "X", 0, T0 + 400)
    assert engine.targeted("r", "X") == set()  # bought it: no targeted coupon
    assert any(t.segment == NEW_BUYER and not t.entered for t in engine.advance(T0 + 400 + DAY + 1))
    assert entered(engine.advance(T0 + 5 * MIN + 1 + 2 * DAY), DORMANT)


def test_refund_takes_the_order_back_but_not_the_first_order_time() -> None:
    engine = Engine(RULES)
    engine.click("r", "v", "X", T0)
    engine.click("r", "v", "X", T0)
    engine.click("r", "v", "X", T0)
    engine.order_paid("r", "v", "X", 2_500_000, T0 + 1)
    assert engine.targeted("r", "X") == set()
    engine.order_refunded("r", "v", "X", 2_500_000, T0 + 2)
    p = engine.profiles[("r", "v")]
    assert (p.orders, p.spend_micros, p.first_order_at) == (0, 0, T0 + 1)
    assert engine.targeted("r", "X") == {"v"}


def test_evicted_profiles_leave_the_heap_and_the_index() -> None:
    stored = {}
    engine = Engine(RULES, loader=lambda room, identity: stored.get((room, identity)))
    for _ in range(3):
        engine.click("r", "v", "X", T0)
    p = engine.profiles[("r", "v")]
    engine.evict(("r", "v"))
    assert engine.targeted("r", "X") == set() and engine.advance(T0 + 31 * DAY) == []
    stored[("r", "v")] = p
    assert engine.get("r", "v") is p and engine.targeted("r", "X") == {"v"}
    assert entered(engine.advance(T0 + 31 * DAY), DORMANT)


def test_events_stamped_in_the_past_do_not_reopen_a_closed_window() -> None:
    engine = Engine(RULES)
    engine.order_paid("r", "b", "X", 0, T0)
    assert engine.advance(T0 + 8 * DAY)
    assert engine.interaction("r", "b", T0 + 6 * DAY) == []  # late, older stamp


# amounts --------------------------------------------------------------------------------------


def test_amounts() -> None:
    assert parse_amount("12.345") == 12_345_000
    assert parse_amount(3) == 3_000_000
    for bad in ("abc", "NaN", "Infinity", None, True, [], "1e20"):
        assert parse_amount(bad) is None
    assert micros_to_str(40_000_000) == "40.00"
    assert micros_to_str(1_234_567) == "1.234567"
    assert micros_to_str(5_500_000) == "5.50"


# draws ----------------------------------------------------------------------------------------


def test_draw_is_a_documented_function_of_seed_and_sorted_identities() -> None:
    seed = draws.new_seed()
    commitment = draws.commitment(seed)
    assert commitment == hashlib.sha256(bytes.fromhex(seed)).hexdigest()
    people = ["zoe", "amy", "bob", "amy", "émile"]
    winners = draws.winners(seed, people, 2)
    # the algorithm as docs/segments.md states it
    remaining, expected = sorted(set(people)), []
    for r in range(2):
        digest = hashlib.sha256((f"{seed}:{r}:" + "\n".join(remaining)).encode("utf-8")).hexdigest()
        expected.append(remaining.pop(int(digest, 16) % len(remaining)))
    assert winners == expected and len(set(winners)) == 2
    assert draws.winners(seed, list(reversed(people)), 2) == winners  # order of the input does not matter
    assert draws.verify(seed, commitment, people, winners)
    assert not draws.verify(draws.new_seed(), commitment, people, winners)
    assert not draws.verify(seed, commitment, people, list(reversed(winners)))
    assert draws.winners(seed, ["solo"], 5) == ["solo"]
    # every participant can win: the index is spread over the sorted list
    hits = {draws.winners(draws.new_seed(), ["a", "b", "c"])[0] for _ in range(200)}
    assert hits == {"a", "b", "c"}


# config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"nope": 1}, "unknown keys nope"),
        ({"high_value": {"min_watch_minutes": -1}}, "high_value.min_watch_minutes"),
        ({"high_value": {"min_clicks": 1.5}}, "high_value.min_clicks"),
        ({"new_buyer": {"days": "7"}}, "new_buyer.days"),
        ({"dormant": {"weeks": 4}}, "dormant: unknown keys weeks"),
        ({"dormant": {"actions": ["missing"]}}, "no action 'missing'"),
        ({"coupons": {"welcome": {"percent_off": 0}}}, "coupons.welcome.percent_off"),
        ({"coupons": {"birthday": {}}}, "coupons: unknown keys birthday"),
        ({"actions": {"x": {"type": "sms"}}}, "actions.x.type"),
        ({"actions": {"x": {"type": "coupon"}}}, "needs percent_off"),
        ({"actions": {"Bad-Name": {}}}, "action names"),
        ({"actions": {"x": {"kind": "Not A Type"}}}, "actions.x.kind"),
        ({"actions": 3}, "actions must be a table"),
        ({"notifiers": "inroom"}, "notifiers must be a list"),
        ({"code_prefix": "seg"}, "code_prefix"),
        ({"poll_live_results": 1}, "poll_live_results"),
    ],
)
def test_bad_config_is_refused_naming_the_key(section: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_config(section)


def test_config_defaults_and_custom_actions() -> None:
    config = parse_config({})
    assert config.rules == Rules()
    assert config.segment_actions["high_value"] == ("members_live_invite", "time_limited_discount")
    assert config.notifiers == ("inroom",)
    config = parse_config({
        "notifiers": ["inroom", "sms"],
        "actions": {"vip_call": {"text": "We will call you", "kind": "crm.call"},
                    "time_limited_discount": {"percent_off": 25, "valid_hours": 6}},
        "high_value": {"actions": ["vip_call", "time_limited_discount"]},
        "coupons": {"welcome": {"enabled": False}},
    })
    assert config.actions["vip_call"].kind == "crm.call" and config.actions["vip_call"].type == "notify"
    assert config.actions["time_limited_discount"].percent_off == 25
    assert config.coupons["welcome"].enabled is False
    assert config.notifiers == ("inroom", "sms")


# metric formulas ----------------------------------------------------------------------------------


def test_metric_formulas(tmp_path) -> None:
    store = Store(tmp_path / "s.db")
    now = T0 + 100 * DAY
    engine = Engine(RULES)
    for identity, seen in (("a", now), ("b", now - 29 * DAY), ("c", now - 31 * DAY), ("d", now - 1)):
        engine.seen("room", identity, seen)
    engine.seen("other", "a", now)
    store.flush(engine.profiles.values(), [])
    orders = [("o1", "a", 10_000_000), ("o2", "a", 5_500_000), ("o3", "b", 20_000_000), ("o4", "c", 4_500_000),
              ("o5", "d", 99_000_000)]
    for order_id, buyer, micros in orders:
        assert store.add_order("room", order_id, buyer, "X", micros, now - DAY)
    assert not store.add_order("room", "o1", "a", "X", 10_000_000, now)  # the same order again
    assert store.refund_order("room", "o5", now) == ("d", "X", 99_000_000)
    assert store.refund_order("room", "o5", now) is None
    store.add_order("other", "o9", "a", "X", 1_000_000, now)

    m = metrics.compute(store, "room", now, 30.0)
    assert (m["known_viewers"], m["active_viewers"], m["member_monthly_activity"]) == (4, 3, 0.75)
    assert (m["buyers"], m["repeat_buyers"], m["orders"]) == (3, 1, 4)
    assert m["repurchase_rate"] == round(1 / 3, 6)
    assert m["purchase_frequency"] == round(4 / 3, 6)
    assert m["revenue_base"] == "40.00" and m["clv_mean_base"] == "13.33"

    empty = metrics.compute(store, "nobody", now, 30.0)
    assert empty["repurchase_rate"] is None and empty["clv_mean_base"] is None
    assert empty["member_monthly_activity"] is None and empty["revenue_base"] == "0.00"

    rows = list(csv.reader(io.StringIO(metrics.to_csv(m))))
    assert rows[0] == ["metric", "value"]
    table = dict(rows[1:])
    assert [r[0] for r in rows[1:]] == list(metrics.FIELDS)
    assert table["repurchase_rate"] == str(round(1 / 3, 6)) and table["clv_mean_base"] == "13.33"
    assert dict(list(csv.reader(io.StringIO(metrics.to_csv(empty))))[1:])["repurchase_rate"] == ""
    store.close()
