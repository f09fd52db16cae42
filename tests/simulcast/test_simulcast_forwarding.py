"""Simulcast through a real node: three VP8 layers in, one layer per viewer out.

The publisher (tests/simulcast_client.py) sends each layer at its own size, so
the size of the frames a viewer *decodes* says which layer it is given. The
viewers report their bandwidth estimate with REMB (a test-set value, so the
expected layer is known), and the node must move them between layers at
keyframes without a broken picture.
"""

from __future__ import annotations

import asyncio

import pytest

from ..clients import WhepViewer
from ..nodeproc import NodeProcess
from ..simulcast_client import LAYERS, SimulcastPublisher

Q, H, F = ((w, h) for w, h, _ in LAYERS.values())


async def _publish(node: NodeProcess, room: str, **kwargs: object) -> SimulcastPublisher:
    pub = SimulcastPublisher(node.url, room, node.token(room, "seller", "host"), **kwargs)  # type: ignore[arg-type]
    r = await pub.start()
    assert r.status_code == 201, r.text
    return pub


async def _until(predicate: object, timeout: float = 15.0, what: object = None) -> None:
    """Wait for ``predicate``; on a timeout, say what ``what()`` shows then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached" + ("" if what is None else f": {what()}")  # type: ignore[operator]
        await asyncio.sleep(0.2)


async def test_answer_accepts_the_offered_layers(sim_node: NodeProcess) -> None:
    node = sim_node
    room = "sim-answer"
    pub = await _publish(node, room)
    try:
        answer = pub.answer_sdp
        video = answer[answer.index("m=video") :]
        assert "a=simulcast:recv q;h;f" in video
        for rid in ("q", "h", "f"):
            assert f"a=rid:{rid} recv" in video
        assert "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" in video
        assert "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id" in video
        # The node learns each layer's SSRC from the rid extension.
        await _until(lambda: all(x["ssrc"] for x in _layers(node, room)))
        layers = _layers(node, room)
        assert [x["rid"] for x in layers] == ["q", "h", "f"]
        assert {x["ssrc"] for x in layers} == {pub.layers[r].ssrc for r in "qhf"}
    finally:
        await pub.stop()


def _layers(node: NodeProcess, room: str) -> list[dict[str, object]]:
    info = node.room(room) or {"producers": []}
    video = [p for p in info["producers"] if p["kind"] == "video"]
    return video[0]["simulcast"] if video else []  # type: ignore[no-any-return]


async def test_viewers_get_the_layer_their_estimate_allows(sim_node: NodeProcess) -> None:
    node = sim_node
    room = "sim-estimate"
    pub = await _publish(node, room)
    rich = WhepViewer(node.url, room, node.token(room, "rich", "viewer"))
    poor = WhepViewer(node.url, room, node.token(room, "poor", "viewer"))
    rich.estimate, poor.estimate = 5_000_000, 100_000
    try:
        await _until(lambda: all(x["bitrate"] for x in _layers(node, room)), timeout=20)
        for viewer in (rich, poor):
            assert (await viewer.start()).status_code == 201
        # Both start low (nothing known yet) and the rich one climbs to the top.
        await poor.wait_size(Q)
        await rich.wait_size(F, timeout=25)
        await poor.wait_frames("video", poor.frames["video"] + 30)
        assert poor.current_size() == Q, poor.size_log
        assert rich.current_size() == F
        # Both keep decoding across the switches, with the audio going on.
        before = rich.frames["video"]
        await rich.wait_frames("video", before + 15)
        await rich.wait_frames("audio", 50)
        assert not [r for r in rich.received_payloads["video"] if not r]

        # The rich viewer's estimate falls and stays low: down to what fits (at a
        # keyframe of the lower layer). How fast is measured in bench/qoe, not here.
        rich.estimate = 150_000
        await rich.wait_size(Q, timeout=20)
        metrics = node.metrics()
        assert metrics["edge_layer_switches_total{direction=\"up\"}"] >= 1
        assert metrics["edge_layer_switches_total{direction=\"down\"}"] >= 1

        def quality() -> dict[str, dict[str, object]]:
            info = node.room(room) or {"viewers": []}
            return {v["participant"]: v["quality"] for v in info["viewers"]}

        # The assessment runs once a second: wait for the one with the new estimate.
        await _until(lambda: quality()["rich"].get("layer_switches", 0) >= 2, timeout=5)
        quality = quality()  # type: ignore[assignment]
        assert quality["rich"]["layers"] == 3 and quality["rich"]["estimated_bitrate"] == 150_000  # type: ignore[index]
        assert quality["poor"]["layer"] == "q" and quality["poor"]["level"] == "fair"  # type: ignore[index]
    finally:
        for viewer in (rich, poor):
            await viewer.stop()
        await pub.stop()


async def test_a_paused_layer_moves_its_viewers_down(sim_node: NodeProcess) -> None:
    """A browser stops its top layer when its uplink is short: viewers fall back."""
    node = sim_node
    room = "sim-paused"
    pub = await _publish(node, room)
    viewer = WhepViewer(node.url, room, node.token(room, "v", "viewer"))
    viewer.estimate = 10_000_000
    try:
        await _until(lambda: all(x["bitrate"] for x in _layers(node, room)), timeout=20)
        assert (await viewer.start()).status_code == 201
        await viewer.wait_size(F, timeout=25)
        pub.layers["f"].paused = True
        await viewer.wait_size(H, timeout=10)
        pub.layers["f"].paused = False
        await viewer.wait_size(F, timeout=25)
    finally:
        await viewer.stop()
        await pub.stop()


async def test_rtx_of_a_layer_is_unwrapped_by_repaired_rid(sim_node: NodeProcess) -> None:
    """Upstream loss on a layer: the node NACKs, the publisher answers with RTX
    tagged repaired-rid, and the node takes it as that layer's packets."""
    node = sim_node
    from ..netimpair import UdpLoss

    room = "sim-rtx"
    pub = await _publish(node, room)
    try:
        await _until(lambda: all(x["ssrc"] for x in _layers(node, room)))
        with UdpLoss(dport=pub.remote_port(), percent=10):
            await _until(lambda: sum(x.nacked for x in pub.layers.values()) > 20, timeout=20)
            # Some retransmissions are lost too (10 %): those are asked for again.
            await _until(lambda: node.metrics().get("edge_nack_retries_total", 0) > 0, timeout=30)
        metrics = node.metrics()
        # Every RTX packet was taken as its layer's: none dropped as unknown or malformed.
        assert metrics.get('edge_dropped_packets_total{reason="unknown_ssrc"}', 0) == 0
        assert metrics.get('edge_dropped_packets_total{reason="malformed_rtx"}', 0) == 0
        assert metrics["edge_nack_sent_total"] > 20
        # The repairs count as received: what is still missing is far less than what was lost.
        layers = _layers(node, room)
        lost_now = sum(int(x["packets_lost"]) for x in layers)  # type: ignore[call-overload]
        assert lost_now < sum(x.nacked for x in pub.layers.values())
    finally:
        await pub.stop()
