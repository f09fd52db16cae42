"""RTX packets towards viewers (edge/media/rtx.py): built from the node's own packets."""

from __future__ import annotations

import pytest

from edge.media.rtp import RtpHeader, build_packet, serialize_extensions
from edge.media.rtx import restamp_twcc, rtx_packet, twcc_offset


def _clear(extensions: dict[int, bytes], marker: bool = True) -> bytes:
    return build_packet(
        marker=marker, payload_type=96, sequence_number=0x1234, timestamp=0xAABBCCDD, ssrc=0x01020304,
        extension_block=serialize_extensions(extensions), payload=b"\x90\x80payload",
    )


@pytest.mark.parametrize("extensions", [{}, {5: b"\x00\x07", 1: b"0"}, {200: b"\x00\x07", 1: b"0"}])
def test_rtx_packet_carries_the_osn_and_the_original_header_fields(extensions: dict[int, bytes]) -> None:
    clear = _clear(extensions)
    rtx = rtx_packet(clear, 97, 0xFFFF, 0xCAFEBABE)
    header = RtpHeader.parse(rtx)
    assert (header.payload_type, header.sequence_number, header.ssrc) == (97, 0xFFFF, 0xCAFEBABE)
    assert header.timestamp == 0xAABBCCDD and header.marker
    assert header.extensions == extensions
    payload = header.payload(rtx)
    assert payload[:2] == b"\x12\x34" and payload[2:] == b"\x90\x80payload"


def test_the_transport_wide_sequence_is_found_first_in_either_form() -> None:
    one_byte = _clear({5: b"\x00\x07", 1: b"0"})
    two_byte = _clear({200: b"\x00\x07", 1: b"0"})
    assert twcc_offset(one_byte, 5) == 17 and twcc_offset(two_byte, 200) == 18
    assert twcc_offset(one_byte, 6) is None  # another id first: not ours to patch
    assert twcc_offset(_clear({}), 5) is None
    stamped = RtpHeader.parse(restamp_twcc(one_byte, 17, 0x10002))
    assert stamped.extensions[5] == b"\x00\x02" and stamped.extensions[1] == b"0"
    stamped = RtpHeader.parse(restamp_twcc(two_byte, 18, 7))
    assert stamped.extensions[200] == b"\x00\x07" and stamped.extensions[1] == b"0"


def test_packets_the_node_does_not_build_are_refused() -> None:
    with_csrc = bytearray(_clear({}))
    with_csrc[0] |= 0x01
    with pytest.raises(ValueError, match="padding or CSRCs"):
        rtx_packet(bytes(with_csrc), 97, 1, 1)
    truncated = _clear({5: b"\x00\x07"})[:15]
    with pytest.raises(ValueError, match="truncated"):
        rtx_packet(truncated, 97, 1, 1)
