"""RED audio and the playout-delay extension towards viewers that offer them.

Real aiortc peers against a real node (both data planes). The viewer's offer is
made to look like Chromium's (RED over Opus, playout-delay on video), and what
arrives is read raw: aiortc cannot decode RED itself.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Callable

from edge.media.playout import decode_playout_delay
from edge.media.red import RedBlock, decode_red
from edge.media.rtcp import Nack
from edge.media.rtp import RtpHeader

from ..clients import PLAYOUT_DELAY_ID, RED_PT, WhepViewer, WhipPublisher
from ..nodeproc import NodeProcess


def _opus_pt(answer: str) -> int:
    line = next(x for x in answer.splitlines() if "opus/48000" in x)
    return int(line.split(":", 1)[1].split(" ", 1)[0])


def _blocks(data: bytes) -> tuple[RtpHeader, list[RedBlock]]:
    header = RtpHeader.parse(data)
    return header, decode_red(data[header.payload_offset : len(data) - header.padding_length], header.timestamp)


async def _nack_until(viewer: WhepViewer, every: int, done: Callable[[], bool], rounds: int = 40) -> None:
    """NACK one video packet in ``every`` (as a lossy link would make the viewer
    do), a batch per 10 packets received, until ``done()``."""
    video = viewer.raw_packets["video"]
    ssrc = struct.unpack_from("!I", video[0], 8)[0]
    seen = len(video)
    for _ in range(rounds):
        seqs = [struct.unpack_from("!H", d, 2)[0] for d in video[seen::every]]
        seen = len(video)
        if seqs:
            await viewer.send_rtcp(bytes(Nack(sender_ssrc=1, media_ssrc=ssrc, lost=seqs)))
        await viewer.wait_raw("video", seen + 10)
        if done():
            return


async def test_red_viewer_gets_opus_with_redundancy_that_follows_its_loss(plane_node: NodeProcess) -> None:
    node, room = plane_node, "red-audio"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    red = WhepViewer(node.url, room, node.token(room, "red", "viewer"), offer_browser_extras=True)
    plain = WhepViewer(node.url, room, node.token(room, "plain", "viewer"))
    for viewer in (red, plain):
        assert (await viewer.start()).status_code == 201
    try:
        opus = _opus_pt(red.answer_sdp)
        assert opus == 111 and _opus_pt(pub.pc.localDescription.sdp) != opus
        assert f"a=rtpmap:{RED_PT} red/48000/2" in red.answer_sdp
        assert f"a=fmtp:{RED_PT} {opus}/{opus}" in red.answer_sdp
        assert "red/48000" not in plain.answer_sdp

        packets = list(await red.wait_raw("audio", 40))
        await plain.wait_frames("audio", 40)
        await red.wait_frames("video", 20)  # its video is untouched

        primaries: dict[int, bytes] = {}  # RTP timestamp -> Opus payload
        redundant = []
        for data in packets:
            header, blocks = _blocks(data)
            assert header.payload_type == RED_PT
            # The blocks name the viewer's Opus PT (111), not the publisher's.
            assert all(b.payload_type == opus for b in blocks)
            primary = blocks[-1]
            # Each primary is an Opus payload the publisher sent, byte for byte...
            assert primary.payload in pub.sent_payloads["audio"]
            primaries[primary.timestamp] = primary.payload
            # ...and each redundant block is an earlier frame (20 ms = 960 ticks apart).
            for block in blocks[:-1]:
                assert 0 < (header.timestamp - block.timestamp) & 0xFFFFFFFF <= 2 * 960
                if block.timestamp in primaries:
                    assert primaries[block.timestamp] == block.payload
            redundant.append(len(blocks) - 1)
        # A new viewer on a clean link gets no redundancy: RED with the primary alone.
        assert redundant.count(0) >= len(redundant) - 3, redundant

        # Heavy loss (an eighth of its video NACKed): two earlier frames per packet.
        def two() -> bool:
            return any(len(_blocks(d)[1]) == 3 for d in red.raw_packets["audio"][-5:])

        await _nack_until(red, 8, two)
        assert two(), "the viewer NACKed an eighth of its video and its audio got no more redundancy"
        header, blocks = _blocks(red.raw_packets["audio"][-1])
        assert [(header.timestamp - b.timestamp) & 0xFFFFFFFF for b in blocks] == [1920, 960, 0]
        info = node.room(room)
        quality = [v["quality"] for v in info["viewers"] if v["participant"] == "red"]  # type: ignore[index]
        assert quality and quality[0]["audio_red_distance"] == 2, quality

        # The plain viewer of the same producer still gets plain Opus.
        assert plain.received_payloads["audio"]
        assert all(p in pub.sent_payloads["audio"] for p in plain.received_payloads["audio"])
        # One producer, two consumers; the RED one counts its packets like any other.
        audio = [c for c in info["consumers"] if c["kind"] == "audio"]  # type: ignore[index]
        assert len(audio) == 2 and all(c["packets"] > 0 for c in audio)
    finally:
        await asyncio.gather(red.stop(), plain.stop())
        await pub.stop()


def _playout_delay(data: bytes) -> tuple[int, int] | None:
    value = RtpHeader.parse(data).extensions.get(PLAYOUT_DELAY_ID)
    return None if value is None else decode_playout_delay(value)


async def test_a_viewer_that_loses_packets_is_asked_for_a_playout_delay(plane_node: NodeProcess) -> None:
    node, room = plane_node, "playout-delay"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    viewer = WhepViewer(node.url, room, node.token(room, "lossy", "viewer"), offer_browser_extras=True)
    assert (await viewer.start()).status_code == 201
    try:
        assert "playout-delay" in viewer.answer_sdp
        clean = list(await viewer.wait_raw("video", 60))
        # A clean link is asked for nothing: the lowest latency.
        assert [_playout_delay(d) for d in clean] == [None] * len(clean)

        # The viewer now NACKs about a tenth of what it gets, as a lossy link would.
        def delayed() -> list[tuple[int, int]]:
            return [pd for pd in map(_playout_delay, viewer.raw_packets["video"][-5:]) if pd]

        await _nack_until(viewer, 10, lambda: bool(delayed()))
        assert delayed(), "no video packet carried a playout delay while the viewer NACKed 10 %"
        low, high = delayed()[-1]
        # A repair plus one retry: at least 2 x 100 ms + margin, within the default cap.
        assert 300 <= low <= 800 and high == 10_000
        # Audio never carries it; the room stats say what the viewer was asked for.
        audio = await viewer.wait_raw("audio", 20)
        assert all(_playout_delay(d) is None for d in audio[-10:])
        info = node.room(room)
        quality = [v["quality"] for v in info["viewers"] if v.get("quality")]  # type: ignore[index]
        assert any(q.get("playout_delay_ms") == low for q in quality), quality
    finally:
        await viewer.stop()
        await pub.stop()
