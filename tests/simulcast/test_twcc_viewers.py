"""Transport-wide congestion control towards viewers, through a real node.

A viewer that offers transport-cc (browsers do; the aiortc test viewer does
with ``twcc=True``) gets every packet stamped with a transport-wide sequence,
reports each packet's arrival as a browser's receiver does (TWCC feedback), and
the node's own delay- and loss-based estimate (edge/media/bwe.py) replaces REMB
for choosing its simulcast layer. Both data planes (the ``sim_node`` fixture).
"""

from __future__ import annotations

from ..clients import EXT_TRANSPORT_CC, WhepViewer
from ..netimpair import UdpLoss
from ..nodeproc import NodeProcess, free_udp_port
from .test_simulcast_forwarding import F, Q, _layers, _publish, _until


def _quality(node: NodeProcess, room: str, who: str) -> dict[str, object]:
    info = node.room(room) or {"viewers": []}
    return next((v["quality"] for v in info["viewers"] if v["participant"] == who), {})


async def test_a_viewer_that_offers_transport_cc_is_estimated_by_the_node(sim_node: NodeProcess) -> None:
    node = sim_node
    room = "twcc-clean"
    pub = await _publish(node, room)
    viewer = WhepViewer(node.url, room, node.token(room, "v", "viewer"), twcc=True)
    plain = WhepViewer(node.url, room, node.token(room, "plain", "viewer"))
    try:
        await _until(lambda: all(x["bitrate"] for x in _layers(node, room)), timeout=20)
        assert (await viewer.start()).status_code == 201
        assert (await plain.start()).status_code == 201
        # Answered on both m-lines: the extension with the offer's id, and the feedback.
        for kind in ("audio", "video"):
            section = viewer.answer_sdp[viewer.answer_sdp.index(f"m={kind}") :]
            section = section.split("\r\nm=", 1)[0]
            assert f"a=extmap:5 {EXT_TRANSPORT_CC}" in section
            assert " transport-cc" in section
        assert EXT_TRANSPORT_CC not in plain.answer_sdp  # not offered, not answered

        await viewer.wait_frames("video", 30)
        await viewer.wait_frames("audio", 30)
        await _until(lambda: viewer.twcc_feedbacks >= 20)
        # One sequence for the whole transport: audio and video packets share it,
        # each packet takes the next one (loopback loses nothing, or very little).
        stamped = sorted(viewer.twcc_arrivals)
        span = stamped[-1] - stamped[0] + 1
        assert len(stamped) >= 0.99 * span, (len(stamped), span)
        assert len(viewer.raw_packets["audio"]) + len(viewer.raw_packets["video"]) >= len(stamped) * 0.9

        # The node estimates this viewer itself; the other one by its REMB.
        await _until(lambda: _quality(node, room, "v").get("estimate_source") == "twcc", timeout=10)
        assert int(_quality(node, room, "v")["estimated_bitrate"]) > 0  # type: ignore[call-overload]
        await _until(lambda: _quality(node, room, "plain").get("estimate_source") == "remb", timeout=10)
        metrics = node.metrics()
        assert metrics['edge_twcc_reported_packets_total{outcome="received"}'] >= len(stamped) * 0.5
        # On a clean link the TWCC estimate carries the viewer up to the top layer.
        await viewer.wait_size(F, timeout=40)
        assert not [p for p in viewer.received_payloads["video"] if not p]
    finally:
        for v in (viewer, plain):
            await v.stop()
        await pub.stop()


async def test_the_estimate_tells_random_loss_from_an_outage(sim_node: NodeProcess) -> None:
    """Packets towards the viewer are dropped at random (nftables; nothing queues on
    loopback). At 20 % the feedback reports the loss but the estimate holds: random
    loss is what repairs are for, not congestion. At 60 % (as good as an outage) the
    loss-based estimate is cut, and the viewer ends on the lowest layer."""
    node = sim_node
    room = "twcc-loss"
    pub = await _publish(node, room)
    port = free_udp_port()
    viewer = WhepViewer(node.url, room, node.token(room, "v", "viewer"), twcc=True, local_port=port)

    def estimate() -> int:
        return int(_quality(node, room, "v").get("estimated_bitrate") or 0)  # type: ignore[call-overload]

    def lost() -> float:
        return node.metrics().get('edge_twcc_reported_packets_total{outcome="lost"}', 0.0)

    try:
        await _until(lambda: all(x["bitrate"] for x in _layers(node, room)), timeout=20)
        assert (await viewer.start()).status_code == 201
        await viewer.wait_frames("video", 30)
        await _until(lambda: _quality(node, room, "v").get("estimate_source") == "twcc", timeout=10)
        await _until(lambda: estimate() > 250_000, timeout=20)
        before, lost_before = estimate(), lost()
        with UdpLoss(dport=port, percent=20):
            await _until(lambda: lost() > lost_before + 50, timeout=20)
            await viewer.wait_frames("video", viewer.frames["video"] + 60, timeout=30)  # ~2 s more
            assert estimate() >= 0.6 * before, (estimate(), before)
        with UdpLoss(dport=port, percent=60) as loss:
            await _until(lambda: estimate() < before / 2, timeout=20)
            assert loss.dropped() > 0
            await viewer.wait_size(Q, timeout=20)
    finally:
        await viewer.stop()
        await pub.stop()
