"""The plugin's hooks driven directly on a fake facade with a test clock: segment
actions once per entry through the notifier, time-driven segments for profiles
out of memory, the outbox, restarts, notifier adapters and bad events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from .fake_edge import DAY, Clock, Harness

MIN = 60.0


class Loyalty:
    """What the loyalty plugin offers (docs/events.md), enough for the enrichment."""

    class Tier:
        name = "silver"

    def tier(self, identity: str) -> Any:
        return self.Tier()

    def balance(self, identity: str) -> tuple[int, int]:
        return 1200, 50


class Recordings:
    """The node's recordings service (docs/recording.md)."""

    def markers(self, room: str) -> list[dict[str, Any]]:
        return [{"recording": "r1", "offset": 61.0, "at": 0.0, "sku": "X", "title": "Silk scarf",
                 "url": f"/replay/{room}?t=61"}]

    def replay_url(self, room: str, at_seconds: float) -> str:
        return f"/replay/{room}?t={at_seconds:g}"


def kinds(h: Harness, identity: str) -> list[str]:
    return [t for _, i, t, _ in h.edge.sent if i == identity]


def coupon_reasons(h: Harness, identity: str) -> list[str]:
    return [d["reason"] for d in h.edge.to(identity, "coupon.granted")]


async def test_each_segment_action_fires_once_per_entry_through_the_notifier(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.edge.provide("loyalty", Loyalty())
    h.edge.provide("recordings", Recordings())
    h.join("shop", "v")
    await h.settle()
    assert coupon_reasons(h, "v") == ["welcome"]

    # high-value prospect: > 30 min watched, 2 clicks, no order
    h.event("commerce.product_click", room="shop", sku="X", viewer="v")
    h.event("commerce.product_click", room="shop", sku="Y", viewer="v")
    h.watch("shop", "v", 30 * MIN)
    await h.settle()
    assert "segments.members_live_invite" not in kinds(h, "v")  # exactly 30 minutes: not yet
    h.watch("shop", "v", 1)
    h.event("commerce.product_click", room="shop", sku="X", viewer="v")
    h.watch("shop", "v", 5 * MIN)
    await h.settle()
    invite = h.edge.to("v", "segments.members_live_invite")
    assert len(invite) == 1 and invite[0]["segment"] == "high_value"
    discount = [d for d in h.edge.to("v", "coupon.granted") if d["reason"] == "high_value"]
    assert len(discount) == 1 and discount[0]["percent_off"] == 15
    assert discount[0]["expires_at"] == pytest.approx(h.clock() - 5 * MIN + 24 * 3600, abs=1)

    # first order: leaves high-value, enters new buyer (with the SKU and loyalty details)
    h.event("commerce.order_paid", room="shop", order_id="o1", buyer="v", sku="X", amount_base="19.90")
    await h.settle()
    bundle = h.edge.to("v", "segments.bundle_recommendation")
    assert len(bundle) == 1 and bundle[0]["sku"] == "X"
    onboarding = h.edge.to("v", "segments.membership_onboarding")
    assert onboarding[0]["tier"] == "silver" and onboarding[0]["points"] == 1200
    entered = [(d["segment"], d["entry"]) for n, d in h.edge.events if n == "segments.entered"]
    assert entered == [("high_value", 1), ("new_buyer", 1)]
    assert [d["segment"] for n, d in h.edge.events if n == "segments.left"] == ["high_value"]

    # the viewer leaves; 7 days after the first order it is still a new buyer, a day later not
    h.leave("shop", "v")
    h.clock.advance(7 * DAY - 10 * MIN)
    h.tick()
    assert h.plugin.profile("shop", "v").segments() == ["new_buyer"]
    h.clock.advance(DAY)
    h.tick()
    assert h.plugin.profile("shop", "v").segments() == []

    # 30 days after the last watch: dormant; it is not connected, so the in-room
    # notifications wait in the outbox until it connects again
    h.clock.advance(30 * DAY)
    h.tick()
    await h.settle()
    assert h.plugin.profile("shop", "v").segments() == ["dormant"]
    before = len(h.edge.sent)
    h.join("shop", "v")
    await h.settle()
    delivered = [t for _, _, t, _ in h.edge.sent[before:]]
    assert delivered == ["segments.highlight_replay", "segments.points_reminder"]
    assert h.edge.to("v", "segments.points_reminder")[0]["points"] == 1200
    replay = h.edge.to("v", "segments.highlight_replay")[0]
    assert replay["replay_url"] == "/replay/shop?t=0"
    assert replay["highlights"] == [{"title": "Silk scarf", "sku": "X", "url": "/replay/shop?t=61"}]

    # back to watching, then dormant again: a second entry, the actions again
    h.watch("shop", "v", MIN)
    h.clock.advance(30 * DAY)
    h.tick()
    await h.settle()
    assert len(h.edge.to("v", "segments.highlight_replay")) == 2
    actions = h.plugin.store.actions("shop", "v")
    assert [(s, e, a) for s, e, a, _ in actions] == [
        ("high_value", 1, "members_live_invite"), ("high_value", 1, "time_limited_discount"),
        ("new_buyer", 1, "bundle_recommendation"), ("new_buyer", 1, "membership_onboarding"),
        ("dormant", 1, "highlight_replay"), ("dormant", 1, "points_reminder"),
        ("dormant", 2, "highlight_replay"), ("dormant", 2, "points_reminder"),
    ]
    await h.stop()


async def test_time_driven_segments_reach_profiles_out_of_memory(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"idle_seconds": 60, "sweep_seconds": 1})
    for i in range(30):
        h.join("shop", f"v{i}", connect=False)
        h.leave("shop", f"v{i}")
    h.event("commerce.order_paid", room="shop", order_id="o", buyer="v0", sku="X", amount_base="1")
    h.clock.advance(120)
    h.tick()
    assert h.plugin.engine.profiles == {}  # idle, absent: evicted (they are in SQLite)
    h.clock.advance(8 * DAY)
    h.tick()
    assert [d["identity"] for n, d in h.edge.events if n == "segments.left"] == ["v0"]
    h.clock.advance(22 * DAY)
    h.tick()
    dormant = sorted(d["identity"] for n, d in h.edge.events if n == "segments.entered" and d["segment"] == "dormant")
    assert dormant == sorted(f"v{i}" for i in range(30))
    await h.settle()
    assert h.plugin.store.member_count("shop", "dormant") == 30
    await h.stop()


async def test_history_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    h = Harness(tmp_path, clock=clock)
    h.join("shop", "v")
    for _ in range(3):
        h.event("commerce.product_click", room="shop", sku="X", viewer="v")
    h.event("commerce.order_paid", room="shop", order_id="o1", buyer="v", sku="Y", amount_base="10")
    await h.stop()

    h2 = Harness(tmp_path, clock=clock)
    h2.join("shop", "v")
    await h2.settle()
    assert h2.edge.to("v", "coupon.granted") == []  # seen before: no welcome coupon again
    p = h2.plugin.profile("shop", "v")
    assert (p.clicks, p.orders, p.skus) == (3, 1, {"X": [3, 0], "Y": [0, 1]})
    h2.event("commerce.order_paid", room="shop", order_id="o1", buyer="v", sku="Y", amount_base="10")
    assert h2.plugin.profile("shop", "v").orders == 1  # the same order id: counted once
    assert h2.plugin.engine.targeted("shop", "X") == {"v"}
    h2.event("commerce.product_pinned", room="shop", sku="X")
    await h2.settle()
    assert [d["sku"] for d in h2.edge.to("v", "coupon.granted")] == ["X"]
    assert h2.edge.to("v", "segments.bundle_recommendation") == []  # not fired twice
    h2.plugin.flush()  # the event log is written in batches (each tick)
    kinds_logged = [row[3] for row in h2.plugin.store.events("shop")]
    assert kinds_logged == ["join", "click", "click", "click", "order", "join"]
    await h2.stop()


async def test_targeted_coupons_go_to_present_clickers_only(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"coupons": {"welcome": {"enabled": False}}})
    for identity in ("here", "gone", "few"):
        h.join("shop", identity)
    for identity, clicks in (("here", 3), ("gone", 4), ("few", 2)):
        for _ in range(clicks):
            h.event("commerce.product_click", room="shop", sku="X", viewer=identity)
    h.leave("shop", "gone")
    h.event("commerce.product_pinned", room="shop", sku="X")
    h.event("commerce.product_pinned", room="shop", sku="X")
    await h.settle()
    assert [(i, d["reason"], d["sku"]) for _, i, t, d in h.edge.sent if t == "coupon.granted"] == [
        ("here", "targeted", "X")
    ]
    coupon = h.plugin.store.coupons("shop", "here")[0]
    assert coupon.code.startswith("SEG-") and len(coupon.code) == 14
    service = h.edge.service("segments")
    assert service.coupon(coupon.code)["subject"] == "X"
    assert service.redeem_coupon(coupon.code, "here", "o9") is True
    assert service.redeem_coupon(coupon.code, "here", "o10") is False  # once
    await h.stop()


class Push:
    def __init__(self, result: Any = True, delay: float = 0.0, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []
        self.result, self.delay, self.fail = result, delay, fail

    async def notify(self, room: str, identity: str, kind: str, data: dict[str, Any]) -> Any:
        self.calls.append((room, identity, kind, data))
        if self.fail:
            raise RuntimeError("gateway down")
        await asyncio.sleep(self.delay)
        return self.result


def samples(h: Harness, name: str) -> dict[tuple[str, ...], float]:
    out = {}
    for metric in h.edge.metrics_registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                out[tuple(sample.labels.values())] = sample.value
    return out


async def test_notifier_adapters_augment_replace_and_fail_alone(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"notifiers": ["broken", "absent", "slow", "inroom", "sms"], "notify_timeout_ms": 50})
    broken, slow, sms = Push(fail=True), Push(delay=5.0), Push(result=False)
    for name, adapter in (("broken", broken), ("slow", slow), ("sms", sms)):
        h.edge.provide(name, adapter)
    h.join("shop", "v")
    await h.settle()
    assert coupon_reasons(h, "v") == ["welcome"]  # in-room still delivered
    assert [c[2] for c in broken.calls + slow.calls + sms.calls] == ["coupon.granted"] * 3
    counts = samples(h, "segments_notifications_total")
    assert counts[("broken", "failed")] == 1 and counts[("absent", "missing")] == 1
    assert counts[("slow", "timeout")] == 1 and counts[("sms", "undelivered")] == 1
    assert counts[("inroom", "ok")] == 1
    event = [d for n, d in h.edge.events if n == "segments.notification"][0]
    assert event["delivered"] == {"broken": False, "absent": False, "slow": False, "inroom": True, "sms": False}

    # another plugin notifies through the service; a bad kind is refused
    notifier = h.edge.service("notifier")
    assert await notifier.notify("shop", "v", "flashsale.reminder", {"sku": "X"}) is True
    assert h.edge.to("v", "flashsale.reminder") == [{"sku": "X"}]
    with pytest.raises(ValueError):
        await notifier.notify("shop", "v", "Not A Kind", {})
    await h.stop()


async def test_replacing_inroom_sends_nothing_in_room(tmp_path: Path) -> None:
    h = Harness(tmp_path, {"notifiers": ["sms"]})
    sms = Push()
    h.edge.provide("sms", sms)
    h.join("shop", "v")
    await h.settle()
    assert h.edge.sent == [] and [c[2] for c in sms.calls] == ["coupon.granted"]
    await h.stop()


async def test_bad_commerce_events_are_ignored_and_counted(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.event("commerce.product_click", room="shop", sku="X")  # no viewer
    h.event("commerce.product_click", room="shop", sku="", viewer="v")
    h.event("commerce.product_click", sku="X", viewer="v")  # no room
    h.event("commerce.order_paid", room="shop", order_id="o", buyer="v", sku="X", amount_base="ten")
    h.event("commerce.order_paid", room="shop", buyer="v", sku="X", amount_base="10")
    h.event("commerce.product_pinned", room="shop", sku=7)
    h.event("commerce.product_click", room="shop", sku="X", viewer="v", at="yesterday")  # clock used
    h.event("commerce.unknown", room="shop")
    h.plugin.edge_event(h.edge, "other.thing", {"room": 1}, "other")
    bad = samples(h, "segments_bad_events_total")
    assert sum(bad.values()) == 6
    p = h.plugin.profile("shop", "v")
    assert p.clicks == 1 and p.last_seen == h.clock() and p.orders == 0
    await h.stop()
