"""The after-sales plugin's pure parts: FAQ matching, the first-response median and
alert, the config, and degrading when the loyalty or recordings service is absent or fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from edge_aftersales.config import parse_config
from edge_aftersales.faq import Faq, FaqError, best_match, check_entry, score, tokens
from edge_aftersales.service import Aftersales
from edge_aftersales.tracking import FirstResponseTracker, Metrics


def approx(value: float) -> Any:
    return pytest.approx(value, abs=1e-3)  # scores are rounded to 4 places


def faq(faq_id: int, question: str, keywords: tuple[str, ...] = (), sku: str | None = None,
        clip: float | None = None) -> Faq:
    return Faq(faq_id, "shop", question, "answer", keywords, sku, clip, 0.0, 0.0)


# FAQ matching ------------------------------------------------------------------------------


def test_tokens_fold_case_plurals_and_stop_words_and_pair_cjk() -> None:
    assert tokens("How do I WASH the Sweaters?") == {"wash", "sweater"}
    assert tokens("boxes, dresses, batteries, sizes, glass") == {"box", "dress", "battery", "size", "glass"}
    assert tokens("尺码偏小吗") == {"尺码", "码偏", "偏小", "小吗"}
    assert tokens("the of and") == frozenset()


def test_score_keyword_overlap_and_sku() -> None:
    wash = faq(1, "How do I wash the sweater?", ("wash", "laundry"))
    assert score(wash, tokens("can I wash it?"), None) == approx(0.6 + 0.4 * 2 * 1 / 3)
    assert score(wash, tokens("how should I wash the sweater"), None) == 1.0
    # no keyword: the question's words only
    assert score(wash, tokens("the sweater please"), None) == approx(0.4 * 2 * 1 / 3)
    jacket = faq(2, "Does the jacket run small?", ("fits small",), sku="JKT-1")
    assert score(jacket, tokens("it fits small"), "JKT-1") == approx(min(1.0, 0.6 + 0.4 * 2 * 1 / 5 + 0.1))
    assert score(jacket, tokens("small"), None) < 0.6  # a multi-word keyword needs all its words
    assert score(jacket, tokens("fits small"), "HAT-1") == -1.0


def test_best_match_threshold_and_ties() -> None:
    entries = [faq(1, "When will it ship?", ("ship",)), faq(2, "When will it ship?", ("ship",), sku="A"),
               faq(3, "Do you ship abroad?", ("abroad",), sku="A")]
    assert best_match(entries, "ship", None, 0.3).faq.faq_id == 1  # equal scores: the oldest
    assert best_match(entries, "ship", "A", 0.3).faq.faq_id == 2  # equal scores: the SKU's own entry
    assert best_match(entries, "ship abroad", "A", 0.3).faq.faq_id == 3
    assert best_match(entries, "is it blue", None, 0.3) is None
    near = [faq(3, "Is the sweater warm?")]
    assert best_match(near, "sweater warm", None, 0.3).score == 0.4  # all words, no keyword
    assert best_match(near, "sweater", None, 0.3) is None  # D = 2/3: 0.27 < 0.3
    assert best_match(near, "???", None, 0.3) is None


def test_check_entry() -> None:
    entry = check_entry({"question": " Q? ", "answer": "A", "keywords": ["x", "x", "y"]}, 100)
    assert entry == {"question": "Q?", "answer": "A", "keywords": ("x", "y"), "sku": None, "clip_at_seconds": None}
    assert check_entry({"clip_at_seconds": 3}, 100, partial=True) == {"clip_at_seconds": 3.0}
    with pytest.raises(FaqError) as err:
        check_entry({"question": "Q", "answer": "A" * 101}, 100)
    assert err.value.field == "answer"
    with pytest.raises(FaqError):
        check_entry({"question": "Q", "answer": "A", "clip_at_seconds": True}, 100)


# first-response median and alert -------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.lines.append(("error", event, kw))


def tracker(**config: Any) -> tuple[FirstResponseTracker, Metrics, Log, list[tuple[str, dict[str, Any]]]]:
    metrics = Metrics(CollectorRegistry())
    log = Log()
    events: list[tuple[str, dict[str, Any]]] = []
    t = FirstResponseTracker(parse_config(config), metrics, log, lambda n, d: events.append((n, d)))
    return t, metrics, log, events


def test_median_counts_answered_and_overdue_tickets_only() -> None:
    t, metrics, log, events = tracker(first_response_target_seconds=30, alert_min_tickets=3, median_window=4)
    t.opened("a", 0.0)
    t.answered("a", "normal", 10.0, 10.0)
    t.opened("b", 5.0)
    t.opened("c", 6.0)
    t.evaluate(20.0)  # b and c are younger than the target: undecided
    assert (t.decided, t.median) == (1, 10.0)
    t.evaluate(100.0)  # now both wait longer than the target: 95 and 94 s so far
    assert (t.decided, t.median) == (3, 94.0)
    assert t.alerting and metrics.alert._value.get() == 1
    assert events[0][0] == "aftersales.slow_first_response" and events[0][1]["median_seconds"] == 94.0
    assert log.lines[0][:2] == ("warning", "aftersales_slow_first_response")
    t.evaluate(101.0)
    assert len(events) == 1  # raised once, not every second
    # the window slides: fast answers bring it down
    t.answered("b", "normal", 1.0, 102.0)
    t.answered("c", "normal", 2.0, 102.0)
    assert t.median == 2.0 and not t.alerting and metrics.alert._value.get() == 0
    assert [e[0] for e in events] == ["aftersales.slow_first_response", "aftersales.first_response_recovered"]
    for i in range(4):
        t.opened(f"n{i}", 200.0)
    assert "a" not in t.window and len(t.window) == 4


def test_alert_waits_for_enough_decided_tickets() -> None:
    t, metrics, _, events = tracker(first_response_target_seconds=1, alert_min_tickets=2)
    t.opened("a", 0.0)
    t.answered("a", "priority", 50.0, 50.0)
    assert t.median == 50.0 and not t.alerting and events == []
    t.opened("b", 50.0)
    t.evaluate(60.0)
    assert t.alerting and metrics.median._value.get() == 30.0  # median of 50 and 10


def test_config_validation() -> None:
    assert parse_config({}).first_response_target_seconds == 30.0
    assert parse_config({"reasons": ["question", "broken"]}).reasons == ("question", "broken")
    for bad, key in [
        ({"first_response_target_seconds": 0}, "first_response_target_seconds"),
        ({"median_window": 0}, "median_window"),
        ({"median_window": 3, "alert_min_tickets": 4}, "alert_min_tickets"),
        ({"faq_threshold": 1.5}, "faq_threshold"),
        ({"reasons": ["broken"]}, "question"),
        ({"reasons": ["Bad Reason", "question"]}, "reasons"),
        ({"colour": 1}, "colour"),
    ]:
        with pytest.raises(ValueError, match=key):
            parse_config(bad)


# other plugins' services: absent or failing --------------------------------------------------------


class StubEdge:
    def __init__(self, services: dict[str, Any]) -> None:
        self.services = services
        self.log = Log()

    def service(self, name: str) -> Any:
        return self.services.get(name)

    def logger(self, name: str) -> Log:
        return self.log


class Broken:
    def tier(self, identity: str) -> Any:
        raise RuntimeError("loyalty is down")

    def markers(self, room: str) -> Any:
        raise RuntimeError("disk gone")

    def replay_url(self, room: str, at: float) -> str:
        raise RuntimeError("disk gone")


class Slow:
    async def tier(self, identity: str) -> Any:
        await asyncio.sleep(5)

    async def markers(self, room: str) -> list[Any]:
        await asyncio.sleep(5)
        return []

    async def replay_url(self, room: str, at: float) -> str:
        await asyncio.sleep(5)
        return ""


class AsyncRecordings:
    async def markers(self, room: str) -> list[dict[str, Any]]:
        return [{"sku": "A", "offset": 12.5, "at": 1.7e9}, {"sku": "A", "offset": 3.0}, {"sku": "B", "offset": 99}]

    async def replay_url(self, room: str, at: float) -> str:
        return f"/replay/{room}?t={at:g}"


def service(services: dict[str, Any]) -> Aftersales:
    return Aftersales(StubEdge(services), parse_config({}), Metrics(CollectorRegistry()))  # type: ignore[arg-type]


async def test_without_loyalty_or_recordings_everything_degrades_to_the_plain_path() -> None:
    svc = service({})
    assert await svc.tier("someone") == (False, None)
    assert await svc.clip("shop", faq(1, "q", sku="A", clip=10.0)) is None
    for other in (Broken(), Slow()):
        svc = service({"loyalty": other, "recordings": other})
        assert await svc.tier("someone") == (False, None)
        assert await svc.clip("shop", faq(1, "q", sku="A")) is None
        assert await svc.clip("shop", faq(1, "q", clip=5.0)) is None
    assert {line[1] for line in svc.edge.log.lines} == {"aftersales_loyalty_failed", "aftersales_clip_failed"}


async def test_clip_from_async_recordings_service_uses_the_latest_marker_of_the_sku() -> None:
    svc = service({"recordings": AsyncRecordings()})
    assert await svc.clip("shop", faq(1, "q", sku="A")) == {"url": "/replay/shop?t=12.5", "at_seconds": 12.5}
    assert await svc.clip("shop", faq(1, "q", sku="A", clip=7)) == {"url": "/replay/shop?t=7", "at_seconds": 7.0}
    assert await svc.clip("shop", faq(1, "q", sku="C")) is None  # no marker for that SKU
    assert await svc.clip("shop", faq(1, "q")) is None  # neither a clip time nor a SKU
