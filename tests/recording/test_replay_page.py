"""/replay/{room} in headless Debian Chromium: the recording plays, a marker click seeks.

Same fixtures and rules as tests/e2e/test_pages.py: the page is the node's own
(edge/web/templates/replay.html + static/replay.js) under its CSP, so every
wait_for_function predicate is a function, and the page exposes its state on
``window.edgeState``.
"""

from __future__ import annotations

import pytest

from ..e2e.chromium import BrowserPages
from ..e2e.test_pages import csp_violations, report, wait_until
from .conftest import RecordedLive

pytestmark = pytest.mark.browser

VIDEO = "document.querySelector('#replay-video')"


async def test_replay_page_plays_and_a_marker_seeks_there(
    recorded_live: RecordedLive, chromium: BrowserPages
) -> None:
    node, room = recorded_live.node, recorded_live.room
    context = await chromium.browser.new_context(viewport={"width": 1280, "height": 800})
    tab = await context.new_page()
    tab.on("console", lambda m: chromium.logs.append(f"[replay] {m.type}: {m.text}"))
    tab.on("pageerror", lambda e: chromium.logs.append(f"[replay] pageerror: {e}"))
    chromium.pages["replay"] = tab
    response = await tab.goto(f"{node.url}/replay/{room}")
    assert response is not None and response.status == 200
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "default-src 'none'" in csp, csp

    await wait_until(
        chromium, "replay",
        "() => window.edgeState.phase === 'ready' && window.edgeState.markers.length === 1",
        "the replay page did not load the recording's markers",
    )
    # the video plays: frames of the published size, time advancing
    await wait_until(
        chromium, "replay", f"() => {VIDEO}.videoWidth > 0 && {VIDEO}.currentTime > 0.3",
        "the recording does not play", timeout_ms=15_000,
    )
    size = await tab.evaluate(f"() => [{VIDEO}.videoWidth, {VIDEO}.videoHeight, {VIDEO}.duration]")
    assert size[:2] == [320, 240], size
    assert abs(size[2] - 3.5) < 0.6, size
    before = await tab.evaluate(f"() => {VIDEO}.currentTime")
    await wait_until(
        chromium, "replay", f"(t) => {VIDEO}.currentTime > t + 0.2 || {VIDEO}.ended",
        "currentTime does not advance", timeout_ms=5_000, arg=before,
    )

    # the marker: in the list and on the timeline; a click seeks there
    state = await tab.evaluate("() => window.edgeState")
    [marker] = state["markers"]
    assert marker["sku"] == "SKU-RED-MUG" and marker["title"] == "Red mug", marker
    assert await tab.locator("#timeline .timeline-marker").count() == 1
    await tab.evaluate(f"() => {{ {VIDEO}.pause(); {VIDEO}.currentTime = 0.1; }}")
    await wait_until(chromium, "replay", "() => window.edgeState.seekedTo !== null && window.edgeState.seekedTo < 0.5",
                     "rewinding did not complete")
    await tab.click("#marker-list button.marker")
    await wait_until(
        chromium, "replay",
        "(m) => window.edgeState.seekedTo !== null && Math.abs(window.edgeState.seekedTo - m) < 0.1",
        "clicking the marker did not seek to its offset", arg=marker["offset"],
    )
    seeked = await tab.evaluate("() => window.edgeState.seekedTo")
    assert abs(seeked - marker["offset"]) < 0.1, (seeked, marker)

    # the product and the "ask service" link
    assert await tab.is_visible("#product-panel")
    assert (await tab.text_content("#product-title")) == "Red mug"
    ask = tab.locator("#ask-service")
    assert (await ask.text_content()) == "Ask service about this product"
    assert await ask.get_attribute("href") == f"/watch/{room}?service=SKU-RED-MUG"
    assert not csp_violations(chromium), await report(chromium)
    await context.close()
