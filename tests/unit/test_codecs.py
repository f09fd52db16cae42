import fractions
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.media.codecs import is_frame_start, is_keyframe, vp8_temporal_layer

# --- VP8 (RFC 7741) ----------------------------------------------------------

KEY_HEADER = b"\x50\x02\x00\x9d\x01\x2a"  # P bit (bit 0 of the first byte) clear
DELTA_HEADER = b"\x51\x02\x00"  # P bit set


def vp8_descriptor(**kwargs) -> bytes:
    vpx = pytest.importorskip("aiortc.codecs.vpx")
    return bytes(vpx.VpxPayloadDescriptor(**kwargs))


def test_vp8_minimal_descriptor():
    assert is_keyframe("vp8", b"\x10" + KEY_HEADER)
    assert is_frame_start("vp8", b"\x10" + KEY_HEADER)
    assert not is_keyframe("vp8", b"\x10" + DELTA_HEADER)
    assert is_frame_start("vp8", b"\x10" + DELTA_HEADER)
    # Not the start of partition 0: a continuation, whatever the bytes say.
    assert not is_keyframe("vp8", b"\x00" + KEY_HEADER)
    assert not is_frame_start("vp8", b"\x00" + KEY_HEADER)
    assert not is_keyframe("vp8", b"\x11" + KEY_HEADER)
    assert not is_frame_start("vp8", b"\x11" + KEY_HEADER)
    # N (non-reference) and the reserved bit do not matter.
    assert is_keyframe("vp8", b"\x30" + KEY_HEADER)


@pytest.mark.parametrize(
    "options",
    [
        {"picture_id": 5},  # written as 15 bits by aiortc
        {"picture_id": 0x7FFF, "tl0picidx": 9},
        {"picture_id": 300, "tl0picidx": 1, "tid": (2, 1)},
        {"picture_id": 1, "tl0picidx": 2, "tid": (1, 0), "keyidx": 7},
        {"keyidx": 3},
        {"tid": (3, 0)},
        {"tl0picidx": 200},
    ],
)
def test_vp8_extended_descriptors_from_aiortc(options):
    for partition_start, partition_id, expected_start in ((1, 0, True), (0, 0, False), (1, 2, False)):
        descriptor = vp8_descriptor(
            partition_start=partition_start, partition_id=partition_id, **options
        )
        assert is_keyframe("vp8", descriptor + KEY_HEADER) is expected_start
        assert is_keyframe("vp8", descriptor + DELTA_HEADER) is False
        assert is_frame_start("vp8", descriptor + DELTA_HEADER) is expected_start
        tid = options.get("tid")
        assert vp8_temporal_layer(descriptor + DELTA_HEADER) == (tid[0] if tid else None)
        # The descriptor alone, without the VP8 payload header, is no frame start.
        assert not is_keyframe("vp8", descriptor)
        assert not is_frame_start("vp8", descriptor)


def test_vp8_seven_bit_picture_id():
    # X, I with a 7-bit PictureID (M clear), then the payload header.
    assert is_keyframe("vp8", b"\x90\x80\x05" + KEY_HEADER)
    assert not is_keyframe("vp8", b"\x90\x80\x05" + DELTA_HEADER)
    # Same PictureID byte with M set would swallow the P byte: no keyframe.
    assert not is_keyframe("vp8", b"\x90\x80\x85\x00")


def test_vp8_temporal_layer():
    assert vp8_temporal_layer(b"\x10" + DELTA_HEADER) is None  # no X
    assert vp8_temporal_layer(b"\x90\x00" + DELTA_HEADER) is None  # X without T
    assert vp8_temporal_layer(b"\x90\x10\x80" + DELTA_HEADER) is None  # K only
    assert vp8_temporal_layer(b"\x90\x20\x40" + DELTA_HEADER) == 1  # T, TID 1
    assert vp8_temporal_layer(b"\x90\xe0\x81\x02\x07\xc0") == 3  # I(15) L T
    assert vp8_temporal_layer(b"\x90\xe0\x81\x02\x07") is None  # truncated
    assert vp8_temporal_layer(b"\x90\x80") is None
    assert vp8_temporal_layer(b"") is None


@pytest.mark.parametrize("payload", [b"", b"\x10", b"\x90", b"\x90\x80", b"\x90\x80\x80", b"\x90\xf0\x05\x01"])
def test_vp8_truncated(payload):
    assert not is_keyframe("vp8", payload)
    assert not is_frame_start("vp8", payload)


# --- H.264 (RFC 6184) --------------------------------------------------------

SPS = b"\x67\x42\xc0\x1f\xda"
PPS = b"\x68\xce\x3c\x80"
SEI = b"\x06\x05\x01\x02"
IDR = b"\x65\x88\x84\x00"
SLICE = b"\x41\x9a\x00\x10"


def stap_a(*nalus: bytes) -> bytes:
    return b"\x78" + b"".join(struct.pack("!H", len(n)) + n for n in nalus)


def fu_a(nal: bytes, *, start: bool, end: bool) -> bytes:
    indicator = (nal[0] & 0xE0) | 28
    fu_header = (0x80 if start else 0) | (0x40 if end else 0) | (nal[0] & 0x1F)
    return bytes([indicator, fu_header]) + nal[1:]


def test_h264_single_nal():
    assert is_keyframe("h264", IDR)
    assert is_keyframe("h264", SPS)
    assert not is_keyframe("h264", PPS)
    assert not is_keyframe("h264", SEI)
    assert not is_keyframe("h264", SLICE)
    assert all(is_frame_start("h264", n) for n in (IDR, SPS, PPS, SLICE))


def test_h264_stap_a():
    assert is_keyframe("h264", stap_a(SPS, PPS, IDR))
    assert is_keyframe("h264", stap_a(SEI, IDR))
    assert not is_keyframe("h264", stap_a(SEI, SLICE))
    assert not is_keyframe("h264", stap_a(PPS))
    assert is_frame_start("h264", stap_a(SEI, SLICE))
    # A size running past the end stops the scan instead of reading garbage.
    assert not is_keyframe("h264", b"\x78\x00\x09" + SEI + b"\x00\x01\x65")
    assert not is_keyframe("h264", b"\x78\x00\x00\x00\x01\x65")
    assert not is_keyframe("h264", b"\x78\x00")
    assert not is_keyframe("h264", b"\x78\x00\x01")


def test_h264_fu_a():
    assert is_keyframe("h264", fu_a(IDR, start=True, end=False))
    assert not is_keyframe("h264", fu_a(IDR, start=False, end=False))
    assert not is_keyframe("h264", fu_a(IDR, start=False, end=True))
    assert not is_keyframe("h264", fu_a(SLICE, start=True, end=False))
    assert is_frame_start("h264", fu_a(SLICE, start=True, end=False))
    assert not is_frame_start("h264", fu_a(SLICE, start=False, end=False))
    assert not is_frame_start("h264", fu_a(IDR, start=False, end=True))
    assert not is_keyframe("h264", b"\x7c")
    assert not is_frame_start("h264", b"\x7c")


def test_h264_garbage():
    assert not is_keyframe("h264", b"")
    assert not is_frame_start("h264", b"")
    assert not is_frame_start("h264", b"\x00\x00")  # NAL type 0 is undefined
    assert not is_frame_start("h264", b"\x7d\x85")  # FU-B: not in WebRTC's modes


# --- other codecs ------------------------------------------------------------


@pytest.mark.parametrize("codec", ["opus", "pcmu", "pcma", "g722", "telephone-event"])
def test_audio(codec):
    for payload in (b"", b"\x10" + KEY_HEADER, IDR, bytes(100)):
        assert not is_keyframe(codec, payload)
        assert is_frame_start(codec, payload)


@pytest.mark.parametrize("codec", ["av1x", "vp9", "VP8", ""])
def test_unknown_codec(codec):
    for payload in (b"", b"\x10" + KEY_HEADER, IDR):
        assert not is_keyframe(codec, payload)
        assert not is_frame_start(codec, payload)


@given(st.sampled_from(["vp8", "h264", "opus", "vp9"]), st.binary(max_size=40))
def test_never_raises(codec, payload):
    assert isinstance(is_keyframe(codec, payload), bool)
    assert isinstance(is_frame_start(codec, payload), bool)
    result = vp8_temporal_layer(payload)
    assert result is None or 0 <= result <= 3


# --- real encoder output -----------------------------------------------------


def encoded_frames(mime_type: str, count: int, forced: set[int]) -> list[list[bytes]]:
    av = pytest.importorskip("av")
    codecs = pytest.importorskip("aiortc.codecs")
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    encoder = codecs.get_encoder(
        RTCRtpCodecParameters(mimeType=mime_type, clockRate=90000, payloadType=96)
    )
    rng = random.Random(1234)
    frames = []
    for index in range(count):
        frame = av.VideoFrame(width=320, height=240, format="yuv420p")
        # Noise makes frames big enough to span several packets.
        for plane in frame.planes:
            plane.update(rng.randbytes(plane.buffer_size))
        frame.pts = index * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        payloads, _ = encoder.encode(frame, force_keyframe=index in forced)
        frames.append(payloads)
    return frames


def test_vp8_encoder_output():
    frames = encoded_frames("video/VP8", 6, forced={4})
    assert any(len(payloads) > 1 for payloads in frames), "want multi-packet frames"
    for index, payloads in enumerate(frames):
        key = index in (0, 4)
        assert is_keyframe("vp8", payloads[0]) is key, index
        assert is_frame_start("vp8", payloads[0])
        for later in payloads[1:]:
            assert not is_keyframe("vp8", later)
            assert not is_frame_start("vp8", later)
        assert all(vp8_temporal_layer(p) is None for p in payloads)


def test_h264_encoder_output():
    frames = encoded_frames("video/H264", 6, forced={4})
    assert any(len(payloads) > 1 for payloads in frames), "want multi-packet frames"
    for index, payloads in enumerate(frames):
        key = index in (0, 4)
        assert is_keyframe("h264", payloads[0]) is key, index
        assert is_frame_start("h264", payloads[0])
        if not key:
            assert not any(is_keyframe("h264", p) for p in payloads)
        # Every FU-A continuation is neither a keyframe nor a frame start.
        for payload in payloads:
            if payload[0] & 0x1F == 28 and not payload[1] & 0x80:
                assert not is_keyframe("h264", payload)
                assert not is_frame_start("h264", payload)
