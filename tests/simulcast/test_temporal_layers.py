"""VP8 temporal-layer dropping, end to end on both planes (edge/media/temporal.py).

The publisher encodes like Chromium's VP8 simulcast: three temporal layers per
encoding (TemporalVp8Encoder: real libvpx layering, TID/Y/TL0PICIDX in every
descriptor). Two aiortc viewers report their estimate by REMB: one rich, one
whose estimate sits between the layer's rate without TL2 and its full rate.
The poor one must get fewer frames at once, as one clean stream (no sequence
or PictureID gaps, nothing to NACK, every frame decoded), and the full rate
back when its estimate recovers.
"""

from __future__ import annotations

import struct

from ..clients import WhepViewer
from ..nodeproc import NodeProcess
from .test_simulcast_forwarding import _layers, _publish, _until


def _video(viewer: WhepViewer, since: int) -> list[tuple[int, int, int, int]]:
    """(seq, timestamp, PictureID, TID) of the video packets received from index ``since`` on."""
    out = []
    for data in viewer.raw_packets["video"][since:]:
        seq, ts = struct.unpack_from("!HI", data, 2)
        offset = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10:
            offset += 4 + 4 * struct.unpack_from("!H", data, offset + 2)[0]
        d = data[offset:]
        assert d[0] & 0x80 and d[1] & 0xE0 == 0xE0, "the descriptor the publisher wrote"
        out.append((seq, ts, struct.unpack_from("!H", d, 2)[0] & 0x7FFF, d[5] >> 6))
    return out


def _fps(packets: list[tuple[int, int, int, int]]) -> float:
    """Frames per second in these packets, by their RTP timestamps (90 kHz)."""
    stamps = sorted({p[1] for p in packets})
    return (len(stamps) - 1) * 90000 / max(1, stamps[-1] - stamps[0])


def _one_stream(packets: list[tuple[int, int, int, int]]) -> None:
    seqs = [p[0] for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:])), "sequence gap"
    pictures = list(dict.fromkeys(p[2] for p in packets))
    assert all((b - a) & 0x7FFF == 1 for a, b in zip(pictures, pictures[1:])), "PictureID gap"


async def test_a_short_budget_drops_temporal_layers_first(sim_node: NodeProcess) -> None:
    node = sim_node
    room = "sim-temporal"
    pub = await _publish(node, room, rids=["f"], temporal=True)
    rich = WhepViewer(node.url, room, node.token(room, "rich", "viewer"))
    poor = WhepViewer(node.url, room, node.token(room, "poor", "viewer"))
    rich.estimate = poor.estimate = 5_000_000

    def quality() -> dict[str, dict[str, object]]:
        info = node.room(room) or {"viewers": []}
        return {v["participant"]: v["quality"] for v in info["viewers"]}

    def measured() -> bool:
        layers = _layers(node, room)
        return bool(layers) and layers[0]["temporal_layers"] == 3 and all(layers[0]["temporal_bitrates"])

    try:
        await _until(measured, timeout=20)
        for viewer in (rich, poor):
            assert (await viewer.start()).status_code == 201
        await poor.wait_frames("video", 20)
        await _until(lambda: quality().get("poor", {}).get("temporal_layer") == 2, timeout=10, what=quality)
        # A new viewer's first estimates are not the link changing (temporal.SETTLE).
        await _until(lambda: quality()["poor"]["watched_seconds"] >= 7, timeout=20, what=quality)

        # The estimate falls to the rate without TL2 (TL0 and TL1 fit, all three do not).
        # The rates are re-read until the cap comes: the first seconds' are
        # inflated by the first keyframe (they are smoothed over seconds).
        def short_budget() -> bool:
            rates = _layers(node, room)[0]["temporal_bitrates"]
            assert rates[0] < rates[1] < rates[2], rates
            poor.estimate = rates[1] + 60_000  # + the audio it takes first
            return (quality()["poor"]["temporal_layer"] or 0) < 2

        await _until(short_budget, timeout=15, what=quality)
        assert quality()["rich"]["temporal_layer"] == 2
        # From the next frame start on: what the poor viewer gets now.
        start_poor, start_rich = len(poor.raw_packets["video"]), len(rich.raw_packets["video"])
        decoded = poor.frames["video"]
        await poor.wait_frames("video", decoded + 20, timeout=20)
        got, full = _video(poor, start_poor + 20), _video(rich, start_rich)
        assert max(p[3] for p in got) <= 1, [p[3] for p in got]
        _one_stream(got)
        assert 2 in {p[3] for p in full}
        # Fewer frames (half or a quarter), every one of them decoded.
        assert _fps(got) < 0.6 * pub.fps < 0.6 * _fps(full) / 0.8, (_fps(got), _fps(full))
        assert poor.frames["video"] - decoded >= 20
        info = node.room(room) or {"consumers": []}
        consumers = [c for c in info["consumers"] if c["viewer"] == "poor" and c["kind"] == "video"]
        assert consumers and consumers[0]["nack_requests"] == 0, consumers

        # The estimate recovers: every layer again, at a layer-sync frame, still one stream.
        start_poor = len(poor.raw_packets["video"])
        poor.estimate = 5_000_000
        await _until(lambda: quality()["poor"]["temporal_layer"] == 2, timeout=10, what=quality)
        await poor.wait_frames("video", poor.frames["video"] + 20, timeout=20)
        after = _video(poor, start_poor)
        _one_stream(after)
        assert 2 in {p[3] for p in after}
        metrics = node.metrics()
        assert metrics['edge_temporal_switches_total{direction="down"}'] >= 1
        assert metrics['edge_temporal_switches_total{direction="up"}'] >= 1
    finally:
        for viewer in (rich, poor):
            await viewer.stop()
        await pub.stop()
