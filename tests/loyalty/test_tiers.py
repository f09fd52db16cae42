"""Tiers: thresholds and their boundaries, privileges, and the downgrade policies."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from edge_loyalty.config import PRIVILEGES, parse_config
from edge_loyalty.store import Store
from edge_loyalty.tiers import TierInfo, TierPolicy


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def policy(**config: Any) -> TierPolicy:
    c = parse_config(config)
    return TierPolicy(c.tiers, c.downgrade, c.downgrade_period, c.downgrade_grace_periods)


@pytest.mark.parametrize(
    ("growth", "name", "level"),
    [
        (0, "bronze", 1), (99, "bronze", 1), (100, "silver", 2), (499, "silver", 2), (500, "gold", 3),
        (1999, "gold", 3), (2000, "platinum", 4), (4999, "platinum", 4), (5000, "diamond", 5),
        (10**12, "diamond", 5), (-5, "bronze", 1),
    ],
)
def test_default_thresholds_and_boundaries(growth: int, name: str, level: int) -> None:
    p = policy()
    info = p.info(p.qualifying(growth))
    assert (info.name, info.level) == (name, level)


def test_privileges_grow_with_the_tier() -> None:
    p = policy()
    assert p.info(1) == TierInfo("bronze", 1, frozenset())
    assert p.info(2).privileges == {"member_price"}
    assert p.info(4).privileges == {"member_price", "early_access", "priority_shipping"}
    assert p.info(5).privileges == PRIVILEGES
    assert p.next_tier(2, 150) == {"name": "gold", "level": 3, "growth": 500, "growth_needed": 350}
    assert p.next_tier(5, 9999) is None


def test_configured_tiers() -> None:
    tiers = [
        {"name": "fan", "growth": 0},
        {"name": "super fan", "growth": 10, "privileges": ["early_access"]},
        {"name": "vip", "growth": 50, "privileges": ["priority_service", "priority_shipping"]},
    ]
    p = policy(tiers=tiers)
    assert [p.info(p.qualifying(g)).name for g in (0, 9, 10, 49, 50)] == ["fan", "fan", "super fan", "super fan", "vip"]
    assert p.info(3).privileges == {"priority_service", "priority_shipping"}


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([{"name": "a", "growth": 5}, {"name": "b", "growth": 10}], "must be 0"),
        ([{"name": "a", "growth": 0}, {"name": "b", "growth": 0}], "must increase"),
        ([{"name": "a", "growth": 0}, {"name": "b", "growth": 10, "privileges": ["free_lunch"]}], "free_lunch"),
        ([{"name": "a", "growth": 0}], "2 to 10"),
        ([{"name": "a", "growth": 0}, {"name": "a", "growth": 10}], "distinct"),
        ([{"name": "a", "growth": 0}, {"name": "", "growth": 10}], "name"),
        ([{"name": "a", "growth": 0}, {"name": "b", "growth": 10, "colour": "red"}], "colour"),
    ],
)
def test_bad_tier_config(tiers: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_config({"tiers": tiers})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"downgrade": "sometimes"}, "downgrade"),
        ({"downgrade_period": "week"}, "downgrade_period"),
        ({"watch_block_seconds": 0}, "watch_block_seconds"),
        ({"watch_points": True}, "watch_points"),
        ({"purchase_growth_per_unit": "lots"}, "purchase_growth_per_unit"),
        ({"default_timezone": "Mars/Olympus"}, "default_timezone"),
        ({"earning_roles": ["pirate"]}, "earning_roles"),
        ({"interaction_types": ["Chat Send"]}, "interaction_types"),
        ({"points_expiry": 12}, "unknown keys"),
    ],
)
def test_bad_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_config(config)


def test_period_downgrade_after_one_period_of_grace() -> None:
    p = policy(downgrade="period", downgrade_period="month", downgrade_grace_periods=1)
    fell = ts("2025-03-20T12:00:00")
    level, below = p.after_growth(3, None, 50, fell)  # gold, growth fell to 50 (a refund)
    assert (level, below) == (3, fell)
    assert p.held(level, below, 50, ts("2025-03-31T23:59:59"), "UTC") == (3, fell)
    assert p.held(level, below, 50, ts("2025-04-15T00:00:00"), "UTC") == (3, fell)  # the grace month
    assert p.held(level, below, 50, ts("2025-04-30T23:59:59"), "UTC") == (3, fell)
    assert p.held(level, below, 50, ts("2025-05-01T00:00:00"), "UTC") == (1, None)  # bronze
    assert p.held(level, below, 150, ts("2025-05-01T00:00:00"), "UTC") == (2, None)  # what growth holds now
    # the boundary is the member's: May begins 9 hours earlier in Tokyo
    assert p.held(level, below, 50, ts("2025-04-30T15:00:00"), "Asia/Tokyo") == (1, None)
    assert p.held(level, below, 50, ts("2025-04-30T15:00:00"), "America/Mexico_City") == (3, fell)
    # growing back to the threshold clears the mark
    assert p.after_growth(3, fell, 500, ts("2025-04-02T00:00:00")) == (3, None)


def test_grace_zero_quarter_and_year_periods() -> None:
    fell = ts("2025-02-10T00:00:00")
    q = policy(downgrade_period="quarter", downgrade_grace_periods=0)
    assert q.held(3, fell, 0, ts("2025-03-31T23:00:00"), "UTC") == (3, fell)
    assert q.held(3, fell, 0, ts("2025-04-01T00:00:00"), "UTC") == (1, None)
    y = policy(downgrade_period="year", downgrade_grace_periods=1)
    assert y.held(3, fell, 0, ts("2026-12-31T23:00:00"), "UTC") == (3, fell)
    assert y.held(3, fell, 0, ts("2027-01-01T00:00:00"), "UTC") == (1, None)


def test_never_and_immediate() -> None:
    never = policy(downgrade="never")
    assert never.after_growth(4, None, 0, 0.0) == (4, None)
    assert never.held(4, None, 0, ts("2030-01-01T00:00:00"), "UTC") == (4, None)
    assert never.after_growth(4, None, 6000, 0.0) == (5, None)  # upgrades still happen
    immediate = policy(downgrade="immediate")
    assert immediate.after_growth(4, None, 120, 0.0) == (2, None)


def test_store_persists_the_downgrade_when_due(tmp_path: Any) -> None:
    store = Store(tmp_path / "l.sqlite3", parse_config({}), durable=False)
    paid = ts("2025-03-10T10:00:00")
    store.purchase("ann", "o1", 0, 600, paid)
    assert store.member("ann").tier_level == 3  # type: ignore[union-attr]
    store.reverse_order("o1", ts("2025-03-20T10:00:00"))  # refunded: growth 0
    m = store.member("ann")
    assert (m.growth, m.tier_level, m.below_since) == (0, 3, ts("2025-03-20T10:00:00"))  # type: ignore[union-attr]
    assert store.sweep(ts("2025-04-20T00:00:00")).info["downgrades"] == 0
    assert store.sweep(ts("2025-05-01T00:00:01")).info["downgrades"] == 1
    m = store.member("ann")
    assert (m.tier_level, m.below_since) == (1, None)  # type: ignore[union-attr]
    changes = store.db.execute("SELECT from_level, to_level, reason FROM tier_changes WHERE identity = 'ann'").fetchall()
    assert changes == [(1, 3, "purchase"), (3, 1, "downgrade")]
    store.close()
