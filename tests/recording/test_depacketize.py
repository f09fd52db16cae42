"""Depacketizers against aiortc's real encoders: frames come back byte for byte."""

from __future__ import annotations

import pytest

from edge.recording.depacketize import (
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    Frame,
    RtpPacket,
    annex_b,
    depacketize,
    h264_frame_dimensions,
    h264_nal_units,
    opus_samples,
    split_annex_b,
    vp8_dimensions,
)

from .media import encode_opus, encode_video, remux_packets

KEYFRAMES = (0, 6)


@pytest.fixture(scope="module")
def vp8_frames():  # type: ignore[no-untyped-def]
    return encode_video("vp8", 12, KEYFRAMES)


@pytest.fixture(scope="module")
def h264_frames():  # type: ignore[no-untyped-def]
    # Not a multiple of 16: the SPS carries frame cropping.
    return encode_video("h264", 12, KEYFRAMES, size=(330, 190))


def test_vp8_frames_are_the_encoders_byte_for_byte(vp8_frames) -> None:  # type: ignore[no-untyped-def]
    assert len(vp8_frames) == 12
    assert any(len(f.payloads) > 1 for f in vp8_frames)  # frames span packets
    # sequence numbers past 65535, timestamps past 2**32 (already unwrapped here)
    out = list(depacketize("vp8", remux_packets(vp8_frames, seq0=65530, ts0=2**32 - 3000)))
    assert [f.data for f in out] == [f.data for f in vp8_frames]
    assert [f.keyframe for f in out] == [i in KEYFRAMES for i in range(12)]
    assert [f.ext_ts for f in out] == [2**32 - 3000 + f.timestamp for f in vp8_frames]
    assert vp8_dimensions(out[0].data) == (320, 240)
    assert vp8_dimensions(out[1].data) is None  # not a keyframe


def test_vp8_loss_drops_frames_until_the_next_keyframe(vp8_frames) -> None:  # type: ignore[no-untyped-def]
    packets = remux_packets(vp8_frames)
    lost_frame = next(i for i, f in enumerate(vp8_frames) if i > 2 and i not in KEYFRAMES and len(f.payloads) > 1)
    first = sum(len(f.payloads) for f in vp8_frames[:lost_frame])
    del packets[first + 1]  # the second packet of that frame
    out = list(depacketize("vp8", packets))
    expected = [f.data for i, f in enumerate(vp8_frames) if i < lost_frame or i >= KEYFRAMES[1]]
    assert [f.data for f in out] == expected


def test_vp8_stream_starts_at_a_keyframe(vp8_frames) -> None:  # type: ignore[no-untyped-def]
    packets = remux_packets(vp8_frames[2:])  # joined mid-stream
    out = list(depacketize("vp8", packets))
    assert out[0].keyframe and out[0].data == vp8_frames[KEYFRAMES[1]].data
    assert len(out) == 12 - KEYFRAMES[1]


def test_h264_access_units_are_the_encoders_nal_units(h264_frames) -> None:  # type: ignore[no-untyped-def]
    assert len(h264_frames) == 12
    payload_types = {p[0] & 0x1F for f in h264_frames for p in f.payloads}
    assert {24, 28} <= payload_types  # STAP-A (SPS+PPS) and FU-A, besides single NAL units
    out = list(depacketize("h264", remux_packets(h264_frames, seq0=65000, ts0=10)))
    # Annex B with 4-byte start codes: the encoder's NAL units, in order, byte for byte.
    assert [f.data for f in out] == [f.data for f in h264_frames]
    assert [split_annex_b(f.data) for f in out] == [f.nals for f in h264_frames]
    assert [f.keyframe for f in out] == [i in KEYFRAMES for i in range(12)]
    assert h264_frame_dimensions(out[0].data) == (330, 190)


def test_h264_idr_without_parameter_sets_gets_the_last_ones() -> None:
    sps, pps = bytes([0x67, 0x42, 0xC0, 0x1F, 0xDA]), bytes([0x68, 0xCE, 0x3C, 0x80])
    idr, slice_ = bytes([0x65, 0x88, 0x84]), bytes([0x41, 0x9A, 0x02])
    stap = bytes([0x78]) + len(sps).to_bytes(2, "big") + sps + len(pps).to_bytes(2, "big") + pps
    packets = [
        RtpPacket(0, 0, False, stap), RtpPacket(1, 0, True, idr),
        RtpPacket(2, 3000, True, slice_),
        RtpPacket(3, 6000, True, idr),  # a later IDR alone
    ]
    out = list(depacketize("h264", packets))
    assert [f.keyframe for f in out] == [True, False, True]
    assert split_annex_b(out[2].data) == [sps, pps, idr]
    assert [n[0] & 0x1F for n in split_annex_b(out[0].data)] == [NAL_SPS, NAL_PPS, NAL_IDR]


def test_h264_broken_fragments_are_refused() -> None:
    start = bytes([0x7C, 0x85]) + b"a" * 10  # FU-A start of an IDR
    middle = bytes([0x7C, 0x05]) + b"b" * 10
    end = bytes([0x7C, 0x45]) + b"c" * 10
    assert h264_nal_units([start, middle, end]) == [bytes([0x65]) + b"a" * 10 + b"b" * 10 + b"c" * 10]
    assert h264_nal_units([start, middle]) is None  # no end
    assert h264_nal_units([middle, end]) is None  # no start
    assert h264_nal_units([bytes([0x78, 0x00, 0x09, 0x67])]) is None  # truncated STAP-A
    assert annex_b([b"\x67", b"\x68"]) == b"\x00\x00\x00\x01\x67\x00\x00\x00\x01\x68"


def test_opus_packets_are_frames_with_their_durations() -> None:
    packets = encode_opus(5)
    assert len(packets) == 5
    frames = list(depacketize("opus", [RtpPacket(i, ts, True, p) for i, (p, ts) in enumerate(packets)]))
    assert [f.data for f in frames] == [p for p, _ in packets]
    assert all(opus_samples(f.data) == 960 for f in frames)
    # RFC 6716 TOC: config 3 = SILK 60 ms; code 1 = two frames; code 3 = count in byte 2
    assert opus_samples(bytes([3 << 3])) == 2880
    assert opus_samples(bytes([(31 << 3) | 1])) == 1920
    assert opus_samples(bytes([(16 << 3) | 3, 0x04])) == 4 * 120
    assert opus_samples(b"") == 0


def test_unsupported_codec_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not support"):
        list(depacketize("vp9", []))
    assert isinstance(Frame(0, b"x", True), Frame)
