"""Weak-network profiles end to end, measured by the viewer (headless Chromium).

Node, simulcast publisher and Chromium each in their own network namespace;
the profile (tests/impair) on the viewer's link. The figures come from the
browser's own getStats(): decoded frames and sizes, freeze counters.

These tests assert the adaptation the node does today. The issue's full pass
criteria (stall rate < 2 % on 3G, freeze time < 2 % at 10 % loss, ...) are
all evaluated by `bench/qoe.py` into bench/RESULTS.md, where the ones not met
yet are marked FAIL; see docs/weak-networks.md "Not built yet".
"""

from __future__ import annotations

import pytest

from .browser import BrowserQoe, run
from .criteria import SCENARIOS, keeps_decoding, low_or_mid_within, recovers_after, steps_up_within

pytestmark = pytest.mark.browser


async def scenario(name: str) -> BrowserQoe:
    s = SCENARIOS[name]
    return await run(s.profile, s.seconds, clear_at=s.clear_at)


def holds(result: BrowserQoe, check: object) -> None:
    ok, measured = check(result)  # type: ignore[operator]
    assert ok, f"{measured}; layers {result.layers()}; {result.summary()}"


async def test_3g_viewer_gets_a_low_or_mid_layer_and_keeps_playing() -> None:
    result = await scenario("3G")
    holds(result, low_or_mid_within(5))
    holds(result, keeps_decoding(8))
    # The top layer (1 Mbit/s) never stays: a 1 Mbit/s link cannot carry it with audio.
    assert result.layer_at(result.seconds) in {"q", "h"}, result.layers()


async def test_lossy_viewer_keeps_decoding_and_its_nacks_are_served() -> None:
    result = await scenario("lossy")
    holds(result, keeps_decoding(10))
    assert result.last["nackCount"] > 0
    # Every packet the browser NACKed was repaired in time to count as received.
    assert result.last["packetsLost"] <= result.last["nackCount"]
    assert result.metrics["edge_nack_served_total"] > 0


async def test_very_lossy_then_clean_video_recovers_within_2_s() -> None:
    result = await scenario("very lossy")
    holds(result, recovers_after(8, 2))


async def test_bandwidth_drop_steps_down_and_back_up() -> None:
    result = await scenario("bandwidth drop")
    # Before the drop the viewer climbed above the lowest layer...
    top_before = result.layer_at(10)
    assert top_before in {"h", "f"}, result.layers()
    # ...during the 500 kbit/s phase it was moved to a layer that fits...
    assert result.first_time({"q"} if top_before == "h" else {"q", "h"}, after=10) is not None
    low = [rid for t, rid in result.layers() if 10 < t <= 20]
    assert low and low[-1] in {"q", "h"}, result.layers()
    # ...and within 15 s of the link coming back it climbs again.
    holds(result, steps_up_within(20, 15))


async def test_jitter_viewer_keeps_decoding() -> None:
    result = await scenario("jitter")
    holds(result, keeps_decoding(10))
