import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.media.rtp import (
    RTP_HEADER,
    RtpHeader,
    abs_send_time,
    build_packet,
    is_rtcp,
    seq_diff,
    seq_newer,
    serialize_extensions,
    unwrap_rtx,
    with_payload,
)

aiortc_rtp = pytest.importorskip("aiortc.rtp")
from aiortc.rtcrtpparameters import (  # noqa: E402
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)

MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
RID = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"


def raises(message: str):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def aiortc_map(**ids: int) -> "aiortc_rtp.HeaderExtensionsMap":
    uris = {"mid": MID, "abs": ABS_SEND_TIME, "level": AUDIO_LEVEL, "twcc": TWCC, "rid": RID}
    extensions_map = aiortc_rtp.HeaderExtensionsMap()
    extensions_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=ext_id, uri=uris[name])
                for name, ext_id in ids.items()
            ]
        )
    )
    return extensions_map


def fixed_header(first: int = 0x80, second: int = 96, seq: int = 1, ts: int = 2, ssrc: int = 3):
    return RTP_HEADER.pack(first, second, seq, ts, ssrc)


# --- demux -------------------------------------------------------------------


def test_is_rtcp():
    assert is_rtcp(b"\x80\xc8\x00\x06")  # SR
    assert is_rtcp(b"\x80\xc0")  # lowest RFC 5761 RTCP type
    assert is_rtcp(b"\x80\xdf")
    assert not is_rtcp(b"\x80\xe0")  # marker + PT 96
    assert not is_rtcp(b"\x80\x60")  # PT 96
    assert not is_rtcp(b"\x80\xbf")
    assert not is_rtcp(b"\x80")
    assert not is_rtcp(b"")


# --- parsing -----------------------------------------------------------------


def test_parse_minimal():
    data = fixed_header(0x80, 0x80 | 111, 65535, 0xDEADBEEF, 0x01020304) + b"hello"
    header = RtpHeader.parse(data)
    assert header == RtpHeader(
        marker=True,
        payload_type=111,
        sequence_number=65535,
        timestamp=0xDEADBEEF,
        ssrc=0x01020304,
        csrcs=(),
        extension_profile=0,
        extensions={},
        payload_offset=12,
        padding_length=0,
    )
    assert header.payload(data) == b"hello"


def test_parse_csrcs_extensions_padding():
    block = serialize_extensions({1: b"a", 2: b"bcd"})
    data = (
        fixed_header(0x80 | 0x20 | 0x10 | 2, 96)
        + struct.pack("!II", 11, 22)
        + block
        + b"payload"
        + b"\x00\x00\x03"
    )
    header = RtpHeader.parse(data)
    assert header.csrcs == (11, 22)
    assert header.extension_profile == 0xBEDE
    assert header.extensions == {1: b"a", 2: b"bcd"}
    assert header.payload_offset == 12 + 8 + len(block)
    assert header.padding_length == 3
    assert header.payload(data) == b"payload"


def test_parse_padding_only_payload():
    data = fixed_header(0xA0) + b"\x00\x00\x00\x04"
    header = RtpHeader.parse(data)
    assert header.padding_length == 4
    assert header.payload(data) == b""


def test_one_byte_padding_between_elements_and_reserved_id():
    # element 1 (1 byte), two padding bytes, element 2 (2 bytes), then ID 15
    # which stops processing: the "element" after it must be ignored.
    body = b"\x10\xaa\x00\x00\x21\xbb\xcc\xf0\x30\xdd\x00\x00"
    data = fixed_header(0x90) + struct.pack("!HH", 0xBEDE, 3) + body + b"x"
    header = RtpHeader.parse(data)
    assert header.extensions == {1: b"\xaa", 2: b"\xbb\xcc"}
    assert header.payload(data) == b"x"


def test_two_byte_with_appbits_and_empty_value():
    body = b"\x01\x00\x00\x10\x02\xaa\xbb\x00"
    data = fixed_header(0x90) + struct.pack("!HH", 0x1005, 2) + body + b"x"
    header = RtpHeader.parse(data)
    assert header.extension_profile == 0x1005
    assert header.extensions == {1: b"", 16: b"\xaa\xbb"}


def test_unknown_extension_profile_is_skipped():
    data = fixed_header(0x90) + struct.pack("!HH", 0x1234, 1) + b"\x11\x22\x33\x44" + b"x"
    header = RtpHeader.parse(data)
    assert header.extension_profile == 0x1234
    assert header.extensions == {}
    assert header.payload_offset == 20
    assert header.payload(data) == b"x"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "RTP packet is too short"),
        (fixed_header()[:11], "RTP packet is too short"),
        (fixed_header(0x40), "RTP version is not 2"),
        (fixed_header(0xC0), "RTP version is not 2"),
        (fixed_header(0x82) + b"\x00" * 7, "RTP CSRC list is truncated"),
        (fixed_header(0x90) + b"\xbe\xde\x00", "RTP header extension length is invalid"),
        (
            fixed_header(0x90) + b"\xbe\xde\x00\x02" + b"\x00" * 7,
            "RTP header extension length is invalid",
        ),
        (
            fixed_header(0x90) + b"\xbe\xde\x00\x01" + b"\x13\x00\x00\x00",
            "RTP header extension element is truncated",
        ),
        (
            fixed_header(0x90) + b"\x10\x00\x00\x01" + b"\x00\x00\x00\x05",
            "RTP header extension element is truncated",
        ),
        (
            fixed_header(0x90) + b"\x10\x00\x00\x01" + b"\x01\x03\xaa\xbb",
            "RTP header extension element is truncated",
        ),
        (fixed_header(0xA0) + b"abc\x00", "RTP padding length is invalid"),
        (fixed_header(0xA0) + b"abc\x05", "RTP padding length is invalid"),
        (fixed_header(0xA0) + b"\x05\x05\x05\x05", "RTP padding length is invalid"),
    ],
)
def test_parse_errors(data, message):
    with raises(message):
        RtpHeader.parse(data)


# --- extensions and building -------------------------------------------------


def test_serialize_extensions_one_byte():
    assert serialize_extensions({}) == b""
    assert serialize_extensions({1: b"\x01", 3: b"abc"}) == (
        b"\xbe\xde\x00\x02" + b"\x10\x01" + b"\x32abc" + b"\x00\x00"
    )
    assert serialize_extensions({14: bytes(16)}) == b"\xbe\xde\x00\x05\xef" + bytes(19)


@pytest.mark.parametrize(
    "extensions",
    [{15: b"a"}, {1: b""}, {1: bytes(17)}, {1: b"a", 200: b"b"}],
)
def test_serialize_extensions_two_byte(extensions):
    block = serialize_extensions(extensions)
    assert block[:2] == b"\x10\x00"
    assert len(block) % 4 == 0
    header = RtpHeader.parse(fixed_header(0x90) + block)
    assert header.extensions == extensions


def test_serialize_extensions_two_byte_exact():
    assert serialize_extensions({1: b"", 16: b"\xaa"}) == (
        b"\x10\x00\x00\x02" + b"\x01\x00" + b"\x10\x01\xaa" + b"\x00\x00\x00"
    )


@pytest.mark.parametrize(
    "extensions, message",
    [
        ({0: b"a"}, "RTP header extension id is invalid"),
        ({256: b"a"}, "RTP header extension id is invalid"),
        ({1: bytes(256)}, "RTP header extension value is too long"),
    ],
)
def test_serialize_extensions_errors(extensions, message):
    with raises(message):
        serialize_extensions(extensions)


def test_build_packet():
    block = serialize_extensions({3: b"\x01\x02\x03"})
    data = build_packet(
        marker=True,
        payload_type=100,
        sequence_number=7,
        timestamp=8,
        ssrc=9,
        extension_block=block,
        payload=b"body",
    )
    assert data[:12] == RTP_HEADER.pack(0x90, 0x80 | 100, 7, 8, 9)
    header = RtpHeader.parse(data)
    assert (header.marker, header.payload_type, header.sequence_number) == (True, 100, 7)
    assert (header.timestamp, header.ssrc) == (8, 9)
    assert header.extensions == {3: b"\x01\x02\x03"}
    assert header.payload(data) == b"body"

    plain = build_packet(
        marker=False,
        payload_type=0,
        sequence_number=1,
        timestamp=2,
        ssrc=3,
        extension_block=b"",
        payload=b"x",
    )
    assert plain == b"\x80\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03x"


def test_build_packet_rejects_payload_type_over_127():
    with raises("RTP payload type is invalid"):
        build_packet(
            marker=False,
            payload_type=128,
            sequence_number=0,
            timestamp=0,
            ssrc=0,
            extension_block=b"",
            payload=b"",
        )


def test_reparse_rewrite_preserves_extension_block():
    # The forwarding path: copy the raw extension block and rewrite the header.
    original = aiortc_rtp.RtpPacket(payload_type=96, sequence_number=5, timestamp=6, ssrc=7)
    original.extensions.mid = "0"
    original.extensions.transport_sequence_number = 1234
    extensions_map = aiortc_map(mid=1, twcc=5)
    data = original.serialize(extensions_map)
    header = RtpHeader.parse(data)
    block = data[12 + 4 * len(header.csrcs) : header.payload_offset]
    rewritten = build_packet(
        marker=header.marker,
        payload_type=header.payload_type,
        sequence_number=900,
        timestamp=901,
        ssrc=902,
        extension_block=block,
        payload=header.payload(data),
    )
    again = aiortc_rtp.RtpPacket.parse(rewritten, extensions_map)
    assert (again.sequence_number, again.timestamp, again.ssrc) == (900, 901, 902)
    assert again.extensions.mid == "0"
    assert again.extensions.transport_sequence_number == 1234


# --- cross-checks with aiortc ------------------------------------------------


def test_parse_matches_aiortc_one_byte():
    extensions_map = aiortc_map(mid=1, abs=3, level=4, twcc=5)
    packet = aiortc_rtp.RtpPacket(
        payload_type=111, marker=1, sequence_number=4242, timestamp=123456, ssrc=0xCAFEBABE,
        payload=b"opus-frame",
    )
    packet.csrc = [1, 2, 3]
    packet.extensions.mid = "audio"
    packet.extensions.abs_send_time = 0x123456
    packet.extensions.audio_level = (True, 42)
    packet.extensions.transport_sequence_number = 0xBEEF
    packet.padding_size = 5
    data = packet.serialize(extensions_map)

    header = RtpHeader.parse(data)
    assert header.marker is True
    assert header.payload_type == 111
    assert header.sequence_number == 4242
    assert header.timestamp == 123456
    assert header.ssrc == 0xCAFEBABE
    assert header.csrcs == (1, 2, 3)
    assert header.extension_profile == 0xBEDE
    assert header.extensions == {
        1: b"audio",
        3: b"\x12\x34\x56",
        4: bytes([0x80 | 42]),
        5: b"\xbe\xef",
    }
    assert header.padding_length == 5
    assert header.payload(data) == b"opus-frame"


def test_parse_matches_aiortc_two_byte():
    # A 20-byte RID does not fit the one-byte form, so aiortc uses two bytes.
    extensions_map = aiortc_map(mid=1, rid=2)
    packet = aiortc_rtp.RtpPacket(payload_type=96, sequence_number=1, timestamp=2, ssrc=3)
    packet.extensions.mid = "v"
    packet.extensions.rtp_stream_id = "r" * 20
    data = packet.serialize(extensions_map)
    header = RtpHeader.parse(data)
    assert header.extension_profile == 0x1000
    assert header.extensions == {1: b"v", 2: b"r" * 20}


def test_aiortc_parses_our_packets():
    extensions_map = aiortc_map(mid=1, abs=3, twcc=5)
    data = build_packet(
        marker=True,
        payload_type=97,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=42,
        extension_block=serialize_extensions(
            {1: b"video", 3: abs_send_time(12.25), 5: b"\x00\x07"}
        ),
        payload=b"\x90\x80" + bytes(50),
    )
    packet = aiortc_rtp.RtpPacket.parse(data, extensions_map)
    assert (packet.marker, packet.payload_type) == (1, 97)
    assert (packet.sequence_number, packet.timestamp, packet.ssrc) == (65535, 0xFFFFFFFF, 42)
    assert packet.extensions.mid == "video"
    assert packet.extensions.abs_send_time == int(12.25 * (1 << 18))
    assert packet.extensions.transport_sequence_number == 7
    assert packet.payload == b"\x90\x80" + bytes(50)


def test_unwrap_rtx_matches_aiortc():
    extensions_map = aiortc_map(mid=1, twcc=5)
    original = aiortc_rtp.RtpPacket(
        payload_type=96, marker=1, sequence_number=1000, timestamp=5555, ssrc=1111,
        payload=b"media-payload",
    )
    original.csrc = [77]
    original.extensions.mid = "1"
    original.extensions.transport_sequence_number = 3
    rtx = aiortc_rtp.wrap_rtx(original, payload_type=97, sequence_number=20, ssrc=2222)
    rtx.padding_size = 4  # RTX padding must not leak into the original payload
    rtx_data = rtx.serialize(extensions_map)

    header = RtpHeader.parse(rtx_data)
    assert (header.payload_type, header.sequence_number, header.ssrc) == (97, 20, 2222)
    unwrapped = unwrap_rtx(rtx_data, header, payload_type=96, ssrc=1111)
    original.padding_size = 0
    assert unwrapped == original.serialize(extensions_map)

    expected = aiortc_rtp.unwrap_rtx(
        aiortc_rtp.RtpPacket.parse(rtx_data, extensions_map), payload_type=96, ssrc=1111
    )
    assert unwrapped == expected.serialize(extensions_map)


def test_unwrap_rtx_too_short():
    data = fixed_header(0x80, 97) + b"\x01"
    with raises("RTX payload is too short"):
        unwrap_rtx(data, RtpHeader.parse(data), payload_type=96, ssrc=1)
    padded = fixed_header(0xA0, 97) + b"\x01\x02\x00\x03"  # OSN cut by padding
    with raises("RTX payload is too short"):
        unwrap_rtx(padded, RtpHeader.parse(padded), payload_type=96, ssrc=1)


def test_unwrap_rtx_empty_original_payload():
    data = fixed_header(0x80, 97, 5, 6, 7) + b"\x12\x34"
    unwrapped = unwrap_rtx(data, RtpHeader.parse(data), payload_type=96, ssrc=1)
    assert unwrapped == RTP_HEADER.pack(0x80, 96, 0x1234, 6, 1)


# --- small helpers -----------------------------------------------------------


def test_abs_send_time():
    assert abs_send_time(0.0) == b"\x00\x00\x00"
    assert abs_send_time(1.5) == b"\x06\x00\x00"
    assert abs_send_time(63.999999) == b"\xff\xff\xff"
    assert abs_send_time(64.0) == b"\x00\x00\x00"  # 6 bits of seconds wrap
    assert abs_send_time(1700000000.25) == ((1700000000 % 64) << 18 | 1 << 16).to_bytes(3, "big")
    assert len(abs_send_time(123456.789)) == 3


def test_seq_helpers():
    assert seq_diff(1, 65535) == 2
    assert seq_diff(65535, 1) == -2
    assert seq_diff(5, 5) == 0
    assert seq_diff(0x8000, 0) == -32768
    assert seq_diff(0x7FFF, 0) == 32767
    assert seq_newer(0, 65535)
    assert not seq_newer(65535, 0)
    assert not seq_newer(5, 5)
    # Exactly half the space apart: ambiguous, neither is newer.
    assert not seq_newer(0x8000, 0) and not seq_newer(0, 0x8000)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_seq_helpers_property(a, b):
    diff = seq_diff(a, b)
    assert -32768 <= diff <= 32767
    assert (b + diff) & 0xFFFF == a
    assert seq_newer(a, b) == (diff > 0)
    if a != b and diff != -32768:
        assert seq_newer(a, b) != seq_newer(b, a)


# --- properties --------------------------------------------------------------

extension_dicts = st.dictionaries(st.integers(1, 255), st.binary(max_size=255), max_size=8)
one_byte_dicts = st.dictionaries(st.integers(1, 14), st.binary(min_size=1, max_size=16), max_size=14)


@given(
    marker=st.booleans(),
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    extensions=st.one_of(extension_dicts, one_byte_dicts),
    payload=st.binary(max_size=64),
)
def test_build_parse_round_trip(
    marker, payload_type, sequence_number, timestamp, ssrc, extensions, payload
):
    block = serialize_extensions(extensions)
    data = build_packet(
        marker=marker,
        payload_type=payload_type,
        sequence_number=sequence_number,
        timestamp=timestamp,
        ssrc=ssrc,
        extension_block=block,
        payload=payload,
    )
    header = RtpHeader.parse(data)
    assert header.marker == marker
    assert header.payload_type == payload_type
    assert header.sequence_number == sequence_number
    assert header.timestamp == timestamp
    assert header.ssrc == ssrc
    assert header.csrcs == ()
    assert header.extensions == extensions
    assert header.extension_profile == (0 if not extensions else int.from_bytes(block[:2], "big"))
    assert header.payload(data) == payload
    # aiortc reads the same elements.
    if extensions:
        profile, words = struct.unpack_from("!HH", block)
        elements = aiortc_rtp.unpack_header_extensions(profile, block[4 : 4 + 4 * words])
        assert dict(elements) == extensions


@given(st.binary(max_size=80))
def test_parse_random_bytes_only_value_error(data):
    try:
        header = RtpHeader.parse(data)
    except ValueError:
        return
    assert 12 <= header.payload_offset <= len(data) - header.padding_length


@given(st.integers(0, 0xFF), st.binary(min_size=11, max_size=80))
def test_parse_random_version_2_only_value_error(flags, rest):
    data = bytes([0x80 | (flags & 0x3F)]) + rest
    try:
        header = RtpHeader.parse(data)
    except ValueError:
        return
    assert header.payload_offset <= len(data) - header.padding_length


def test_with_payload_keeps_the_header_and_drops_padding() -> None:
    ext = serialize_extensions({1: b"\x30", 3: b"mid"})
    packet = build_packet(
        marker=True, payload_type=111, sequence_number=7, timestamp=960, ssrc=0xABCD,
        extension_block=ext, payload=b"opus",
    )
    padded = bytes([packet[0] | 0x20]) + packet[1:] + b"\x00\x00\x03"
    header = RtpHeader.parse(padded)
    out = RtpHeader.parse(with_payload(padded, header.payload_offset, 63, b"red"))
    assert (out.payload_type, out.marker, out.sequence_number, out.timestamp, out.ssrc) == (63, True, 7, 960, 0xABCD)
    assert out.extensions == header.extensions and out.padding_length == 0
    moved = with_payload(padded, header.payload_offset, 111, b"x", marker=False, sequence_number=65535, timestamp=1)
    h = RtpHeader.parse(moved)
    assert (h.marker, h.sequence_number, h.timestamp) == (False, 65535, 1) and moved.endswith(b"x")
