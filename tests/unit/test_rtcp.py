import re
import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.media.rtcp import (
    Bye,
    Fir,
    Nack,
    Pli,
    ReceiverReport,
    Remb,
    ReportBlock,
    SenderReport,
    SourceDescription,
    TransportFeedback,
    UnknownRtcp,
    ntp_from_unix,
    ntp_middle,
    ntp_now,
    parse_rtcp,
    serialize_compound,
)
from edge.media.twcc import TwccFeedback

aiortc_rtp = pytest.importorskip("aiortc.rtp")
aiortc_clock = pytest.importorskip("aiortc.clock")


def raises(message: str):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def header(first: int, packet_type: int, words: int) -> bytes:
    return struct.pack("!BBH", first, packet_type, words)


BLOCK = ReportBlock(
    ssrc=0x11223344,
    fraction_lost=25,
    packets_lost=-3,
    highest_sequence=0x0001FFFF,
    jitter=77,
    lsr=0xAABBCCDD,
    dlsr=65536,
)

EXAMPLES = [
    SenderReport(1, 0x0123456789ABCDEF, 90000, 10, 12000, [BLOCK]),
    SenderReport(2, 0, 0, 0, 0),
    ReceiverReport(3, [BLOCK, ReportBlock(5, 0, 0x7FFFFF, 0, 0, 0, 0)]),
    ReceiverReport(4),
    SourceDescription.cname(5, "abc"),
    SourceDescription([(6, []), (7, [(1, b"x" * 255), (2, b"name"), (6, b"")])]),
    Bye([8, 9], b"going away"),
    Bye([]),
    Nack(10, 11, [100, 101, 116, 117, 500]),
    Nack(10, 11, [65534, 65535, 0, 1, 13]),
    TransportFeedback(12, 13, TwccFeedback(1, 1, 2, [4, 0])),
    TransportFeedback(12, 13, TwccFeedback(1, 1, 2, [4])),  # P-bit padded
    TransportFeedback(12, 13, TwccFeedback(65535, -5, 255, [None, 300, -2, 7])),
    Pli(14, 15),
    Fir(16, [(17, 1), (18, 255)]),
    Remb(19, 1_000_000, [20, 21]),
    Remb(19, 0, []),
    UnknownRtcp(204, 3, b"nameAPPDATA!"),  # APP
    UnknownRtcp(207, 0, b"\x00\x00\x00\x01\x04\x00\x00\x02\x01\x02\x03\x04\x05\x06\x07\x08"),
    UnknownRtcp(205, 3, struct.pack("!II", 1, 2) + b"tmbr"),  # TMMBR
    UnknownRtcp(206, 15, struct.pack("!II", 1, 0) + b"ABCD1234"),  # non-REMB AFB
    UnknownRtcp(204, 1, b"odd"),  # needs P-bit padding
]


@pytest.mark.parametrize("packet", EXAMPLES, ids=lambda p: type(p).__name__)
def test_round_trip(packet):
    data = bytes(packet)
    assert len(data) % 4 == 0
    assert data[0] >> 6 == 2
    assert type(packet).parse(data) == packet
    assert parse_rtcp(data) == [packet]


def test_compound_round_trip():
    data = serialize_compound(EXAMPLES)
    assert parse_rtcp(data) == EXAMPLES


def test_report_block_wire_format():
    data = bytes(BLOCK)
    assert len(data) == 24
    assert data[4:8] == b"\x19\xff\xff\xfd"  # fraction 25, lost -3 as 24-bit
    assert ReportBlock.parse(data) == BLOCK


def test_report_block_clamps_packets_lost():
    # RFC 3550 section 6.4.1: clamp rather than wrap.
    high = ReportBlock.parse(bytes(ReportBlock(1, 0, 10**8, 0, 0, 0, 0)))
    low = ReportBlock.parse(bytes(ReportBlock(1, 0, -(10**8), 0, 0, 0, 0)))
    assert high.packets_lost == 0x7FFFFF
    assert low.packets_lost == -0x800000


def test_sdes_wire_format():
    # ssrc, CNAME "abc" (2+3 bytes), one null terminator -> 4 + 5 + 1 = 10, pad to 12
    data = bytes(SourceDescription.cname(0x01020304, "abc"))
    assert data == (
        b"\x81\xca\x00\x03" + b"\x01\x02\x03\x04" + b"\x01\x03abc" + b"\x00\x00\x00"
    )
    # items ending exactly on a word boundary still need a null word
    data = bytes(SourceDescription([(1, [(1, b"ab")])]))
    assert data[8:] == b"\x01\x02ab" + b"\x00\x00\x00\x00"


def test_bye_wire_format():
    data = bytes(Bye([1], b"bye"))
    assert data == b"\x81\xcb\x00\x02" + b"\x00\x00\x00\x01" + b"\x03bye"
    data = bytes(Bye([1], b"ciao"))
    assert data == b"\x81\xcb\x00\x03" + b"\x00\x00\x00\x01" + b"\x04ciao\x00\x00\x00"


def test_nack_compression():
    data = bytes(Nack(1, 2, [10, 11, 26, 27]))
    # 11 and 26 fit in the BLP of PID 10 (bits 0 and 15); 27 starts a new pair.
    assert data[12:] == struct.pack("!HHHH", 10, 0x8001, 27, 0)
    # A run across the wrap shares one PID.
    data = bytes(Nack(1, 2, [65535, 0, 1]))
    assert data[12:] == struct.pack("!HH", 65535, 0b11)
    assert Nack.parse(data).lost == [65535, 0, 1]


def test_remb_encoding():
    data = bytes(Remb(1, 300_000, [5]))
    assert data[12:16] == b"REMB"
    # 300000 needs 19 bits: exponent 1, mantissa 150000
    exponent, mantissa = 1, 150000
    assert data[16:20] == bytes([1, (exponent << 2) | (mantissa >> 16)]) + struct.pack(
        "!H", mantissa & 0xFFFF
    )
    assert Remb.parse(data).bitrate == 300_000
    assert Remb.parse(bytes(Remb(1, 300_001, []))).bitrate == 300_000
    huge = Remb.parse(bytes(Remb(1, 1 << 100, []))).bitrate
    assert huge == ((1 << 18) - 1) << 63


def test_fir_sets_media_ssrc_zero():
    data = bytes(Fir(1, [(2, 3)]))
    assert data[8:12] == b"\x00\x00\x00\x00"
    assert data[12:20] == b"\x00\x00\x00\x02\x03\x00\x00\x00"


# --- cross-checks with aiortc ------------------------------------------------


def aiortc_block(block: ReportBlock):
    return aiortc_rtp.RtcpReceiverInfo(
        ssrc=block.ssrc,
        fraction_lost=block.fraction_lost,
        packets_lost=block.packets_lost,
        highest_sequence=block.highest_sequence,
        jitter=block.jitter,
        lsr=block.lsr,
        dlsr=block.dlsr,
    )


def test_reports_match_aiortc():
    sr = aiortc_rtp.RtcpSrPacket(
        ssrc=1,
        sender_info=aiortc_rtp.RtcpSenderInfo(
            ntp_timestamp=0x0123456789ABCDEF, rtp_timestamp=90000, packet_count=10, octet_count=12000
        ),
        reports=[aiortc_block(BLOCK)],
    )
    assert bytes(sr) == bytes(EXAMPLES[0])
    rr = aiortc_rtp.RtcpRrPacket(ssrc=3, reports=[aiortc_block(BLOCK)])
    assert ReceiverReport.parse(bytes(rr)) == ReceiverReport(3, [BLOCK])
    (parsed,) = aiortc_rtp.RtcpPacket.parse(bytes(ReceiverReport(3, [BLOCK])))
    assert parsed.reports[0].packets_lost == -3


def test_sdes_and_bye_match_aiortc():
    # Single chunk only: aiortc does not align each chunk to 32 bits as RFC 3550
    # section 6.5 requires, so its multi-chunk SDES is not interoperable.
    sdes = aiortc_rtp.RtcpSdesPacket(
        chunks=[aiortc_rtp.RtcpSourceInfo(ssrc=6, items=[(1, b"abcd"), (2, b"x")])]
    )
    assert SourceDescription.parse(bytes(sdes)) == SourceDescription(
        [(6, [(1, b"abcd"), (2, b"x")])]
    )
    (parsed,) = aiortc_rtp.RtcpPacket.parse(bytes(SourceDescription.cname(5, "{cname}")))
    assert parsed.chunks == [aiortc_rtp.RtcpSourceInfo(ssrc=5, items=[(1, b"{cname}")])]

    assert Bye.parse(bytes(aiortc_rtp.RtcpByePacket(sources=[1, 2]))) == Bye([1, 2])
    (parsed,) = aiortc_rtp.RtcpPacket.parse(bytes(Bye([3, 4], b"reason")))
    assert parsed.sources == [3, 4]


def test_nack_matches_aiortc():
    lost = [1, 2, 3, 17, 18, 40, 41, 42, 57, 1000]
    theirs = aiortc_rtp.RtcpRtpfbPacket(fmt=1, ssrc=7, media_ssrc=8, lost=lost)
    assert Nack.parse(bytes(theirs)) == Nack(7, 8, lost)
    assert bytes(Nack(7, 8, lost)) == bytes(theirs)
    (parsed,) = aiortc_rtp.RtcpPacket.parse(bytes(Nack(7, 8, lost)))
    assert parsed.lost == lost


def test_feedback_matches_aiortc():
    pli = aiortc_rtp.RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=2)
    assert parse_rtcp(bytes(pli)) == [Pli(1, 2)]
    fci = aiortc_rtp.pack_remb_fci(123_456_789, [3, 4])
    remb = aiortc_rtp.RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=fci)
    assert bytes(Remb(1, 123_456_789, [3, 4])) == bytes(remb)
    (ours,) = parse_rtcp(bytes(remb))
    assert ours == Remb(1, aiortc_rtp.unpack_remb_fci(fci)[0], [3, 4])


@given(st.integers(0, 1 << 70), st.lists(st.integers(0, 0xFFFFFFFF), max_size=5))
def test_remb_property(bitrate, ssrcs):
    data = bytes(Remb(9, bitrate, ssrcs))
    decoded = Remb.parse(data)
    assert decoded.ssrcs == ssrcs
    assert decoded.bitrate <= bitrate
    if bitrate < (1 << 81):
        # the finest step for this magnitude: nothing representable lies between
        step = 1 << max(0, bitrate.bit_length() - 18)
        assert bitrate - decoded.bitrate < step
        assert data[12:] == aiortc_rtp.pack_remb_fci(bitrate, ssrcs)
    assert aiortc_rtp.unpack_remb_fci(data[12:]) == (decoded.bitrate, ssrcs)


# --- NACK properties ---------------------------------------------------------


@given(
    st.integers(0, 0xFFFF),
    st.lists(st.integers(0, 0x7FFF), min_size=1, max_size=200, unique=True),
)
def test_nack_round_trip_property(start, offsets):
    lost = [(start + offset) & 0xFFFF for offset in sorted(offsets)]
    nack = Nack(1, 2, lost)
    data = bytes(nack)
    assert Nack.parse(data) == nack
    assert len(data) <= 12 + 4 * len(lost)
    (theirs,) = aiortc_rtp.RtcpPacket.parse(data)
    assert [seq & 0xFFFF for seq in theirs.lost] == lost


# --- errors ------------------------------------------------------------------

SR = bytes(EXAMPLES[0])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "RTCP packet is too short"),
        (b"\x80\xc8\x00", "RTCP packet is too short"),
        (SR + b"\x80\xc9", "RTCP packet is too short"),
        (b"\x40\xc9\x00\x01\x00\x00\x00\x01", "RTCP version is not 2"),
        (SR + b"\xc0\xc9\x00\x01\x00\x00\x00\x01", "RTCP version is not 2"),
        (b"\x80\xc9\x00\x02\x00\x00\x00\x01", "RTCP packet length is invalid"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x00", "RTCP padding length is invalid"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x05", "RTCP padding length is invalid"),
        (b"\xa0\xc9\x00\x00", "RTCP padding length is invalid"),
        (header(0x80, 200, 5) + bytes(20), "RTCP sender report length is invalid"),
        (header(0x81, 200, 6) + bytes(24), "RTCP sender report length is invalid"),
        (header(0x80, 201, 0), "RTCP receiver report length is invalid"),
        (header(0x81, 201, 1) + bytes(4), "RTCP receiver report length is invalid"),
        (header(0x81, 202, 0), "RTCP SDES chunk is truncated"),
        (header(0x81, 202, 1) + bytes(4), "RTCP SDES chunk is truncated"),
        (header(0x81, 202, 2) + bytes(4) + b"\x01\x05abc", "RTCP SDES item is truncated"),
        (header(0x81, 202, 2) + bytes(4) + b"\x01\x02ab", "RTCP SDES chunk is truncated"),
        (header(0x82, 203, 1) + bytes(4), "RTCP BYE length is invalid"),
        (header(0x81, 203, 2) + bytes(4) + b"\x05abc", "RTCP BYE reason is truncated"),
        (header(0x81, 205, 1) + bytes(4), "RTCP feedback length is invalid"),
        (header(0x81, 206, 0), "RTCP feedback length is invalid"),
        (header(0x8F, 205, 1) + bytes(4), "RTCP feedback length is invalid"),
        (header(0xA1, 205, 3) + bytes(10) + b"\x00\x02", "RTCP NACK length is invalid"),
        (header(0x84, 206, 3) + bytes(12), "RTCP FIR length is invalid"),
        (header(0x8F, 206, 3) + bytes(8) + b"REMB", "RTCP REMB length is invalid"),
        (header(0x8F, 206, 4) + bytes(8) + b"REMB\x01\x00\x00\x00", "RTCP REMB length is invalid"),
    ],
)
def test_parse_errors(data, message):
    with raises(message):
        parse_rtcp(data)


def test_single_packet_parse_errors():
    with raises("RTCP packet has trailing data"):
        SenderReport.parse(SR + SR)
    with raises("RTCP packet has trailing data"):
        UnknownRtcp.parse(SR + SR)
    with raises("RTCP packet type is 200, expected 201"):
        ReceiverReport.parse(SR)
    with raises("RTCP feedback format is 1, expected 15"):
        Remb.parse(bytes(Pli(1, 2)))
    with raises("RTCP feedback format is 1, expected 15"):
        TransportFeedback.parse(bytes(Nack(1, 2, [3])))
    with raises("RTCP REMB identifier is invalid"):
        Remb.parse(bytes(UnknownRtcp(206, 15, bytes(8) + b"ABCD\x00\x00\x00\x00")))
    with raises("RTCP report block length is invalid"):
        ReportBlock.parse(bytes(23))
    with raises("RTCP version is not 2"):
        Pli.parse(b"\x01" + bytes(Pli(1, 2))[1:])


@pytest.mark.parametrize(
    "packet, message",
    [
        (ReceiverReport(1, [BLOCK] * 32), "RTCP count field is out of range"),
        (Bye(list(range(32))), "RTCP count field is out of range"),
        (SourceDescription([(1, [(0, b"x")])]), "RTCP SDES item type is invalid"),
        (SourceDescription([(1, [(1, bytes(256))])]), "RTCP SDES item is too long"),
        (Bye([1], bytes(256)), "RTCP BYE reason is too long"),
        (Remb(1, -1, []), "RTCP REMB bitrate is negative"),
        (Remb(1, 1, list(range(256))), "RTCP REMB has too many SSRCs"),
    ],
)
def test_serialize_errors(packet, message):
    with raises(message):
        bytes(packet)


# --- random input ------------------------------------------------------------

ssrcs = st.integers(0, 0xFFFFFFFF)
blocks = st.builds(
    ReportBlock,
    ssrcs,
    st.integers(0, 255),
    st.integers(-0x800000, 0x7FFFFF),
    ssrcs,
    ssrcs,
    ssrcs,
    ssrcs,
)
packets = st.one_of(
    st.builds(
        SenderReport,
        ssrcs,
        st.integers(0, (1 << 64) - 1),
        ssrcs,
        ssrcs,
        ssrcs,
        st.lists(blocks, max_size=31),
    ),
    st.builds(ReceiverReport, ssrcs, st.lists(blocks, max_size=31)),
    st.builds(
        SourceDescription,
        st.lists(
            st.tuples(
                ssrcs,
                st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=255)), max_size=4),
            ),
            max_size=31,
        ),
    ),
    st.builds(Bye, st.lists(ssrcs, max_size=31), st.binary(max_size=255)),
    st.builds(
        TransportFeedback,
        ssrcs,
        ssrcs,
        st.builds(
            TwccFeedback,
            st.integers(0, 0xFFFF),
            st.integers(-(1 << 23), (1 << 23) - 1),
            st.integers(0, 255),
            st.lists(st.one_of(st.none(), st.integers(-0x8000, 0x7FFF)), min_size=1, max_size=40),
        ),
    ),
    st.builds(Pli, ssrcs, ssrcs),
    st.builds(Fir, ssrcs, st.lists(st.tuples(ssrcs, st.integers(0, 255)), max_size=8)),
    st.builds(UnknownRtcp, st.sampled_from([204, 207, 192, 210]), st.integers(0, 31), st.binary(max_size=64)),
)


@given(st.lists(packets, min_size=1, max_size=5))
def test_compound_round_trip_property(compound):
    assert parse_rtcp(serialize_compound(compound)) == compound


@given(st.binary(max_size=120))
def test_parse_random_bytes_only_value_error(data):
    try:
        parse_rtcp(data)
    except ValueError:
        pass


@given(
    st.integers(0, 0x3F),
    st.sampled_from([200, 201, 202, 203, 204, 205, 206, 207]),
    st.binary(max_size=100),
)
def test_parse_random_payload_only_value_error(flags, packet_type, body):
    words = len(body) // 4
    data = struct.pack("!BBH", 0x80 | flags, packet_type, words) + body[: 4 * words]
    try:
        parse_rtcp(data)
    except ValueError:
        pass


# --- NTP ---------------------------------------------------------------------


def test_ntp_helpers():
    assert ntp_from_unix(0.0) == 2208988800 << 32
    assert ntp_from_unix(1.5) == ((2208988800 + 1) << 32) | (1 << 31)
    assert ntp_middle(0x0123456789ABCDEF) == 0x456789AB
    assert abs(ntp_now() - aiortc_clock.current_ntp_time()) < (1 << 32) // 10
    assert abs((ntp_now() >> 32) - (int(time.time()) + 2208988800)) <= 1
    # Era 1 (after 2036-02-07) wraps the seconds field.
    assert ntp_from_unix(2085978496.0) >> 32 == 0
