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
        try:
            await poor.wait_frames("video", 10, timeout=30)
        except TimeoutError as e:
            info = node.room(room) or {}
            pytest.fail(f"{e}: raw video packets {len(poor.raw_packets['video'])}\n{info.get('consumers')}\n{info.get('viewers')}\n{layers()}")
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


async def test_chromium_temporal_layers_are_dropped_for_a_short_budget(
    node: NodeProcess, chromium: BrowserPages
) -> None:
    """Chromium's own L1T3: a viewer whose budget fits TL0+TL1 of the lowest layer
    but not all of it gets fewer frames at once, as one clean stream it decodes."""
    from ..simulcast.test_temporal_layers import _fps, _one_stream, _video

    room = await publish_simulcast(node, chromium)

    def q_layer() -> dict:
        info = node.room(room) or {"producers": []}
        video = [p for p in info["producers"] if p["kind"] == "video"]
        return video[0]["simulcast"][0] if video and video[0]["simulcast"] else {}

    def quality() -> dict:
        info = node.room(room) or {"viewers": []}
        return next((v["quality"] for v in info["viewers"] if v["participant"] == "thin"), {})

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not (q_layer().get("temporal_layers") == 3 and all(q_layer().get("temporal_bitrates") or [0])):
        if loop.time() > deadline:
            pytest.fail(f"layer q: {q_layer()}\n{await chromium.report(pub='pub')}")
        await asyncio.sleep(0.25)
    # Only q is sent from now on, so that the viewer's layer stays q whatever its
    # estimate says (the spatial policy is tested above; this is the temporal one).
    await chromium.pages["pub"].evaluate(
        """async () => {
            const sender = window.pc.getSenders().find((s) => s.track && s.track.kind === "video");
            const params = sender.getParameters();
            params.encodings.forEach((e) => { e.active = e.rid === "q"; });
            await sender.setParameters(params);
        }"""
    )

    def others_quiet() -> bool:
        info = node.room(room) or {"producers": []}
        video = [p for p in info["producers"] if p["kind"] == "video"]
        return bool(video) and not any(x["active"] for x in video[0]["simulcast"][1:])

    while not others_quiet():
        if loop.time() > deadline + 15:
            pytest.fail("h and f did not pause")
        await asyncio.sleep(0.25)
    viewer = WhepViewer(node.url, room, node.token(room, "thin", "viewer"))
    viewer.estimate = 20_000_000
    try:
        assert (await viewer.start()).status_code == 201
        await viewer.wait_frames("video", 30, timeout=30)
        assert quality().get("layer") == "q", quality()  # it starts on the lowest layer
        before = _video(viewer, len(viewer.raw_packets["video"]) - 60)
        # A new viewer's first estimates are not the link changing (temporal.SETTLE).
        deadline = loop.time() + 20
        while quality().get("watched_seconds", 0) < 7:
            assert loop.time() < deadline, quality()
            await asyncio.sleep(0.2)
        # A budget for q's TL0+TL1 but not TL2, kept there while the rates move
        # (they are smoothed over seconds): its audio comes first.
        def audio_rate() -> int:
            info = node.room(room) or {"consumers": []}
            return sum(c["bitrate"] for c in info["consumers"] if c["viewer"] == "thin" and c["kind"] == "audio")

        async def steer() -> None:
            while True:
                rates = q_layer()["temporal_bitrates"]
                viewer.estimate = audio_rate() + (rates[1] + rates[2]) // 2
                await asyncio.sleep(0.3)

        steering = asyncio.ensure_future(steer())
        try:
            deadline = loop.time() + 20
            while not (quality().get("layer") == "q" and (quality().get("temporal_layer") or 0) < 2):
                assert loop.time() < deadline, (quality(), q_layer())
                await asyncio.sleep(0.2)
            start, decoded = len(viewer.raw_packets["video"]), viewer.frames["video"]
            await viewer.wait_frames("video", decoded + 20, timeout=30)
        finally:
            steering.cancel()
        got = _video(viewer, start + 10)
        assert max(p[3] for p in got) <= 1, ([p[3] for p in got], q_layer(), quality())
        _one_stream(got)
        assert _fps(got) < 0.7 * _fps(before), (_fps(got), _fps(before))
    finally:
        await viewer.stop()
