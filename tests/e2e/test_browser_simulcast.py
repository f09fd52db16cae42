"""Headless Chromium publishes three simulcast layers; viewers get per-viewer layers.

The publisher page offers ``sendEncodings`` q/h/f (4:2:1) as a browser does; the
node's answer must make Chromium send all three (without ``a=simulcast:recv``
it would send only one). Two aiortc viewers report different bandwidth
estimates (REMB) and must decode different picture sizes.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest

from ..clients import WhepViewer
from ..nodeproc import NodeProcess
from .chromium import BrowserPages
from .test_browser_whip_whep import CONNECT_TIMEOUT_MS, wait_for

pytestmark = pytest.mark.browser


async def publish_simulcast(node: NodeProcess, chromium: BrowserPages) -> str:
    """Chromium publishes q/h/f to a fresh room; returns the room's name."""
    room = "e2e-sim-" + secrets.token_hex(4)
    await chromium.open(
        "pub", "pub.html", node=node.url, room=room, token=node.token(room, "alice", "host"), simulcast="1"
    )
    await wait_for(
        chromium, "pub", "pub", "window.pub.connectionState === 'connected'",
        CONNECT_TIMEOUT_MS, "publisher did not reach connectionState 'connected'",
    )
    return room


async def test_chromium_simulcast_is_forwarded_per_viewer(node: NodeProcess, chromium: BrowserPages) -> None:
    room = await publish_simulcast(node, chromium)

    def layers() -> list[dict]:
        info = node.room(room) or {"producers": []}
        video = [p for p in info["producers"] if p["kind"] == "video"]
        return video[0]["simulcast"] if video else []

    # The node receives all three layers, each with its own SSRC and rate.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not (len(layers()) == 3 and all(x["active"] and x["bitrate"] > 0 for x in layers())):
        if loop.time() > deadline:
            pytest.fail(f"layers: {layers()}\n{await chromium.report(pub='pub')}")
        await asyncio.sleep(0.25)
    got = layers()
    assert [x["rid"] for x in got] == ["q", "h", "f"]
    # Chromium's VP8 simulcast sends three temporal layers in each encoding (L1T3):
    # what dropping temporal layers as the first step down would work with.
    assert {x["rid"]: x["temporal_layers"] for x in got} == {"q": 3, "h": 3, "f": 3}
    assert len({x["ssrc"] for x in got}) == 3

    rich = WhepViewer(node.url, room, node.token(room, "rich", "viewer"))
    poor = WhepViewer(node.url, room, node.token(room, "poor", "viewer"))
    rich.estimate, poor.estimate = 20_000_000, 150_000
    try:
        for viewer in (rich, poor):
            assert (await viewer.start()).status_code == 201
        await poor.wait_frames("video", 10, timeout=30)
        # The rich viewer climbs to the full picture, the poor one stays on the quarter.
        await rich.wait_size((1280, 720), timeout=40)
        await poor.wait_frames("video", poor.frames["video"] + 30, timeout=30)
        width, height = poor.current_size()  # type: ignore[misc]
        assert (width, height) == (320, 180), poor.size_log
        await rich.wait_frames("video", rich.frames["video"] + 15, timeout=30)
        assert rich.current_size() == (1280, 720)
    finally:
        for viewer in (rich, poor):
            await viewer.stop()
