"""The glue around the native receive side: the transport's counting wrapper
and ``native_plane.rtp_parser`` built from negotiated m-lines."""

from __future__ import annotations

import struct

import pylibsrtp
import pytest
from pylibsrtp import Policy, Session

from edge.media import codecs
from edge.media.rtp import RtpHeader, serialize_extensions
from edge.transport.webrtc import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_RID,
    EXT_TRANSPORT_CC,
    CodecInfo,
    MediaSection,
    _CountingSrtp,
)

from .rig import tx_policy


@pytest.mark.parametrize("profile,key_len", [(1, 30), (2, 30), (7, 28), (8, 44)])
def test_counting_wrapper_on_the_native_receiver_drops_like_pylibsrtp(profile: int, key_len: int) -> None:
    """What aiortc's receive loop sees: bytes, or a pylibsrtp.Error after on_drop."""
    from edge.media.native_plane import NativeDataPlane

    key = bytes(range(key_len))
    sender = Session(tx_policy(key, profile))
    plane = NativeDataPlane()
    drops: list[str] = []
    native = _CountingSrtp(plane.srtp_receiver(profile, key), drops.append)
    reference = _CountingSrtp(Session(tx_policy(key, profile, Policy.SSRC_ANY_INBOUND)), drops.append)
    rtp = struct.pack("!BBHII", 0x80, 96, 65535, 1, 42) + b"payload"
    rtcp_packet = struct.pack("!BBHI", 0x80, 201, 1, 42)
    srtp, srtcp = sender.protect(rtp), sender.protect_rtcp(rtcp_packet)
    after_wrap = sender.protect(struct.pack("!BBHII", 0x80, 96, 0, 2, 42) + b"next")  # ROC 1
    tampered = after_wrap[:-1] + bytes([after_wrap[-1] ^ 1])
    for wrapper in (native, reference):
        assert wrapper.unprotect(srtp) == rtp
        assert wrapper.unprotect_rtcp(srtcp) == rtcp_packet
        with pytest.raises(pylibsrtp.Error, match="replay check failed"):
            wrapper.unprotect(srtp)
        with pytest.raises(pylibsrtp.Error, match="replay check failed"):
            wrapper.unprotect_rtcp(srtcp)
        with pytest.raises(pylibsrtp.Error, match="authentication failure"):
            wrapper.unprotect(tampered)
        assert wrapper.unprotect(after_wrap).endswith(b"next")
    assert drops == ["srtp", "srtcp", "srtp"] * 2
    counters = plane.counters()
    assert counters == {
        "srtp_unprotected": 2, "srtp_unprotect_failed": 2,
        "srtcp_unprotected": 1, "srtcp_unprotect_failed": 1,
    }


def test_rtp_parser_from_negotiated_sections() -> None:
    from edge.media.native_plane import rtp_parser

    exts = {EXT_MID: 4, EXT_ABS_SEND_TIME: 2, EXT_TRANSPORT_CC: 3, EXT_RID: 10, EXT_AUDIO_LEVEL: 1}
    video = MediaSection(
        mid="1", kind="video", index=1, extensions=exts, local_ssrc=1,
        codecs=[CodecInfo("vp8", 96, 90000, None, {}), CodecInfo("h264", 102, 90000, None, {})],
    )
    audio = MediaSection(
        mid="0", kind="audio", index=0, extensions=exts, local_ssrc=2,
        codecs=[CodecInfo("opus", 111, 48000, 2, {})],
    )
    parser = rtp_parser([audio, video])
    block = serialize_extensions({4: b"1", 2: b"\x01\x02\x03", 3: b"\x00\x07", 10: b"hi", 1: b"\x85"})
    for pt, payload in ((96, b"\x10\x00\x00\x9d"), (102, b"\x65\x88"), (111, b"\xfc\xff")):
        packet = struct.pack("!BBHII", 0x90, 0x80 | pt, 7, 8, 9) + block + payload
        header = RtpHeader.parse(packet)
        keyframe = codecs.is_keyframe({96: "vp8", 102: "h264"}.get(pt, "opus"), packet[header.payload_offset :])
        assert parser.parse(packet) == (
            header.payload_offset, 0, True, pt, 7, 8, 9, "1", "hi", None, 0x010203, 7, b"\x85", keyframe,
        )
        assert keyframe == (pt != 111)
