"""One real publisher, real viewers: RTP forwarded untouched, nothing decoded in the node."""

from __future__ import annotations

import asyncio

import httpx

from ..clients import WhepViewer, WhipPublisher
from ..nodeproc import NodeProcess


async def test_five_viewers_get_byte_identical_payloads_and_decode(node: NodeProcess) -> None:
    room = "fwd-five"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    viewers = [WhepViewer(node.url, room, node.token(room, f"v{i}", "viewer")) for i in range(5)]
    for r in await asyncio.gather(*(v.start() for v in viewers)):
        assert r.status_code == 201, r.text
    await asyncio.gather(*(v.wait_frames("video", 40) for v in viewers))
    await asyncio.gather(*(v.wait_frames("audio", 40) for v in viewers))

    for v in viewers:
        assert v.frame_sizes == {(320, 240)}
        for kind in ("video", "audio"):
            got = v.received_payloads[kind]
            assert len(got) > 20, kind
            # Every payload a viewer got is one the publisher sent, byte for byte.
            foreign = [p for p in got if p not in pub.sent_payloads[kind]]
            assert foreign == [], f"{kind}: {len(foreign)} of {len(got)} payloads were altered"

    info = node.room(room)
    assert info is not None
    assert {p["kind"] for p in info["producers"]} == {"audio", "video"}
    consumers = info["consumers"]
    assert len(consumers) == 10
    assert all(c["packets"] > 0 for c in consumers)

    # The node never decodes or encodes: no codec was created, no decoder thread runs.
    metrics = node.metrics()
    assert not any(k.startswith("edge_codec_instances_total") and v > 0 for k, v in metrics.items())
    threads = httpx.get(node.url + "/v1/admin/runtime", headers=node.admin_headers()).json()["threads"]
    assert not [t for t in threads if "decoder" in t or "encoder" in t], threads
    assert metrics["edge_packets_out_total"] > 0

    await asyncio.gather(*(v.stop() for v in viewers))
    await pub.stop()


async def test_viewer_before_publisher_gets_media_when_host_arrives(node: NodeProcess) -> None:
    room = "fwd-early-viewer"
    viewer = WhepViewer(node.url, room, node.token(room, "early", "viewer"))
    assert (await viewer.start()).status_code == 201
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    await viewer.wait_frames("video", 10)
    await viewer.stop()
    await pub.stop()


async def test_delete_ends_session_and_room(node: NodeProcess) -> None:
    room = "fwd-delete"
    token = node.token(room, "seller", "host")
    pub = WhipPublisher(node.url, room, token)
    assert (await pub.start()).status_code == 201
    assert node.room(room) is not None
    async with httpx.AsyncClient() as client:
        r = await client.delete(node.url + pub.location, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        # whip-whep closes the peer connection before it DELETEs: a second DELETE is fine.
        r = await client.delete(node.url + pub.location, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    assert node.room(room) is None
    await pub.pc.close()


async def test_h264_is_forwarded_untouched(node: NodeProcess) -> None:
    from aiortc import RTCRtpSender

    room = "fwd-h264"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"), audio=False)
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    pub.codec_preferences = {"video": h264}
    assert (await pub.start()).status_code == 201
    viewer = WhepViewer(node.url, room, node.token(room, "fan", "viewer"), audio_slots=0)
    assert (await viewer.start()).status_code == 201
    await viewer.wait_frames("video", 30)
    info = node.room(room)
    assert [p["codec"] for p in info["producers"]] == ["h264"]
    got = viewer.received_payloads["video"]
    assert got and all(p in pub.sent_payloads["video"] for p in got)
    assert viewer.frame_sizes == {(320, 240)}
    await viewer.stop()
    await pub.stop()


async def test_sender_reports_are_translated_for_lip_sync(node: NodeProcess) -> None:
    """Each consumer's SR keeps the publisher's NTP time and shifts RTP time by
    exactly the consumer's timestamp offset, for audio and video alike."""
    room = "fwd-sr"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    viewer = WhepViewer(node.url, room, node.token(room, "fan", "viewer"))
    assert (await viewer.start()).status_code == 201
    await viewer.wait_frames("video", 20)
    # aiortc publishers send an SR every 0.5-1.5 s: wait for one per stream.
    await viewer.wait_sender_reports(2)

    pub_sr = {ntp: (ssrc, rtp) for ssrc, ntp, rtp in pub.sender_reports}
    checked = 0
    for kind in ("audio", "video"):
        # The consumer's timestamp offset, from any payload seen on both sides.
        shared = [p for p in viewer.received_payloads[kind] if p in pub.sent_timestamps]
        offset = (viewer.received_timestamps[shared[-1]] - pub.sent_timestamps[shared[-1]]) & 0xFFFFFFFF
        ssrcs = {s for s, k in _answer_kinds(viewer.answer_sdp).items() if k == kind}
        for ssrc, ntp, rtp in viewer.sender_reports:
            if ssrc in ssrcs:
                assert ntp in pub_sr, "SR NTP time is not the publisher's"
                assert (rtp - pub_sr[ntp][1]) & 0xFFFFFFFF == offset
                checked += 1
    assert checked >= 2
    await viewer.stop()
    await pub.stop()


def _answer_kinds(sdp: str) -> dict[int, str]:
    from ..clients import _answer_ssrcs

    return _answer_ssrcs(sdp)
