"""RTP wire helpers (RFC 3550, RFC 8285 header extensions, RFC 4588 RTX).

These functions sit on the per-packet hot path of the pure-Python data plane:
the parser reads the fixed header with a single ``struct.unpack_from`` and the
builder writes it with a single ``struct.pack``, so that forwarding a packet to
a consumer costs one header rewrite and one concatenation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "RTP_HEADER",
    "RtpHeader",
    "abs_send_time",
    "build_packet",
    "is_rtcp",
    "seq_diff",
    "seq_newer",
    "serialize_extensions",
    "unwrap_rtx",
]

# V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
RTP_HEADER = struct.Struct("!BBHII")
RTP_HEADER_SIZE = RTP_HEADER.size

# Extension block header: "defined by profile" word and length in 32-bit words.
_EXTENSION_HEADER = struct.Struct("!HH")

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000
# RFC 8285 section 4.3: the low 4 bits of the two-byte profile ("appbits") are
# application-defined, so only the upper 12 bits identify the form.
_TWO_BYTE_PROFILE_MASK = 0xFFF0

# RFC 8285 section 4.2: ID 15 is reserved; on seeing it a receiver must stop
# processing the rest of the one-byte extension block.
_ONE_BYTE_RESERVED_ID = 15

# CSRC lists are at most 15 entries; precompile one unpacker per count.
_CSRC_LISTS = tuple(struct.Struct(f"!{count}I") for count in range(16))


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 section 4 demultiplexing of RTP and RTCP on one port.

    RTCP packet types 192..223 land in the second byte where RTP has the
    marker bit and payload type, a range that RTP payload types avoid.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpHeader:
    """A parsed RTP header; the payload stays in the original buffer."""

    marker: bool
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    csrcs: tuple[int, ...]
    extension_profile: int  # 0 when the X bit is clear
    extensions: dict[int, bytes]  # only for the RFC 8285 profiles
    payload_offset: int
    padding_length: int  # 0 when the P bit is clear

    @classmethod
    def parse(cls, data: bytes) -> RtpHeader:
        length = len(data)
        if length < RTP_HEADER_SIZE:
            raise ValueError("RTP packet is too short")
        first, second, sequence_number, timestamp, ssrc = RTP_HEADER.unpack_from(data)
        if first >> 6 != 2:
            raise ValueError("RTP version is not 2")

        pos = RTP_HEADER_SIZE
        csrc_count = first & 0x0F
        csrcs: tuple[int, ...] = ()
        if csrc_count:
            pos += 4 * csrc_count
            if pos > length:
                raise ValueError("RTP CSRC list is truncated")
            csrcs = _CSRC_LISTS[csrc_count].unpack_from(data, RTP_HEADER_SIZE)

        extension_profile = 0
        extensions: dict[int, bytes] = {}
        if first & 0x10:
            if pos + 4 > length:
                raise ValueError("RTP header extension length is invalid")
            extension_profile, words = _EXTENSION_HEADER.unpack_from(data, pos)
            start = pos + 4
            pos = start + 4 * words
            if pos > length:
                raise ValueError("RTP header extension length is invalid")
            if extension_profile == ONE_BYTE_PROFILE:
                _parse_one_byte(data, start, pos, extensions)
            elif extension_profile & _TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
                _parse_two_byte(data, start, pos, extensions)
            # Any other profile is opaque to us; the block is skipped as a whole.

        padding_length = 0
        if first & 0x20:
            # The last octet counts the padding including itself, so 0 is invalid.
            padding_length = data[-1]
            if padding_length == 0 or padding_length > length - pos:
                raise ValueError("RTP padding length is invalid")

        # Positional: keyword construction costs about three times as much.
        return cls(
            bool(second & 0x80),
            second & 0x7F,
            sequence_number,
            timestamp,
            ssrc,
            csrcs,
            extension_profile,
            extensions,
            pos,
            padding_length,
        )

    def payload(self, data: bytes) -> bytes:
        """The payload of ``data`` (the buffer this header was parsed from)."""
        return data[self.payload_offset : len(data) - self.padding_length]


def _parse_one_byte(data: bytes, pos: int, end: int, out: dict[int, bytes]) -> None:
    while pos < end:
        byte = data[pos]
        if byte == 0:  # padding between or after elements
            pos += 1
            continue
        ext_id = byte >> 4
        if ext_id == _ONE_BYTE_RESERVED_ID:
            return
        size = (byte & 0x0F) + 1
        pos += 1
        if pos + size > end:
            raise ValueError("RTP header extension element is truncated")
        out[ext_id] = data[pos : pos + size]
        pos += size


def _parse_two_byte(data: bytes, pos: int, end: int, out: dict[int, bytes]) -> None:
    while pos < end:
        ext_id = data[pos]
        if ext_id == 0:  # padding
            pos += 1
            continue
        if pos + 2 > end:
            raise ValueError("RTP header extension element is truncated")
        size = data[pos + 1]
        pos += 2
        if pos + size > end:
            raise ValueError("RTP header extension element is truncated")
        out[ext_id] = data[pos : pos + size]
        pos += size


def serialize_extensions(extensions: dict[int, bytes]) -> bytes:
    """Build a complete RFC 8285 extension block (profile, length, elements).

    The one-byte form is used whenever every element fits it because it is
    the form every WebRTC stack supports; otherwise the two-byte form.
    """
    if not extensions:
        return b""
    items = extensions.items()
    block = bytearray(4)  # profile and length are filled in at the end
    for ext_id, value in items:
        if not (0 < ext_id < _ONE_BYTE_RESERVED_ID and 0 < len(value) <= 16):
            # One element that does not fit forces the two-byte form for all.
            profile = TWO_BYTE_PROFILE
            for ext_id, value in items:
                if not 0 < ext_id <= 255:
                    raise ValueError("RTP header extension id is invalid")
                if len(value) > 255:
                    raise ValueError("RTP header extension value is too long")
                block += bytes((ext_id, len(value)))
                block += value
            break
    else:
        profile = ONE_BYTE_PROFILE
        for ext_id, value in items:
            block.append((ext_id << 4) | (len(value) - 1))
            block += value
    block += bytes(-len(block) % 4)
    _EXTENSION_HEADER.pack_into(block, 0, profile, len(block) // 4 - 1)
    return bytes(block)


def build_packet(
    *,
    marker: bool,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    extension_block: bytes,
    payload: bytes,
) -> bytes:
    """Build an RTP packet without CSRCs or padding.

    ``extension_block`` is a complete block as returned by
    :func:`serialize_extensions` (or copied from an incoming packet), and the
    X bit is set iff it is non-empty.
    """
    if payload_type > 127:
        # Would otherwise silently spill into the marker bit.
        raise ValueError("RTP payload type is invalid")
    header = RTP_HEADER.pack(
        0x90 if extension_block else 0x80,
        (payload_type | 0x80) if marker else payload_type,
        sequence_number,
        timestamp,
        ssrc,
    )
    return b"".join((header, extension_block, payload))


def abs_send_time(now: float) -> bytes:
    """The 3-byte abs-send-time extension value: seconds in 6.18 fixed point.

    http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time — only the low
    6 bits of the seconds are kept; receivers use it for inter-arrival deltas.
    """
    return (int(now * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")


def with_payload(
    data: bytes,
    payload_offset: int,
    payload_type: int,
    payload: bytes,
    *,
    marker: bool | None = None,
    sequence_number: int | None = None,
    timestamp: int | None = None,
) -> bytes:
    """Packet ``data``'s header (CSRCs and extensions kept, padding dropped) with
    ``payload`` of ``payload_type``; marker, sequence number and timestamp kept
    unless given."""
    header = bytearray(data[:payload_offset])
    header[0] &= 0xDF  # no padding any more
    keep = header[1] & 0x80 if marker is None else (0x80 if marker else 0)
    header[1] = keep | payload_type
    if sequence_number is not None:
        header[2:4] = sequence_number.to_bytes(2, "big")
    if timestamp is not None:
        header[4:8] = timestamp.to_bytes(4, "big")
    return bytes(header) + payload


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between 16-bit sequence numbers, in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seq_newer(a: int, b: int) -> bool:
    """Whether sequence number ``a`` comes after ``b`` (RFC 1982 style).

    Numbers exactly half the space apart are ambiguous and neither is newer.
    """
    return 0 < ((a - b) & 0xFFFF) < 0x8000


def unwrap_rtx(data: bytes, header: RtpHeader, *, payload_type: int, ssrc: int) -> bytes:
    """Rebuild the original packet from an RFC 4588 retransmission.

    The RTX payload starts with the original sequence number (OSN). CSRCs and
    the extension block are copied verbatim; the RTX packet's own padding is
    dropped since it is not part of the original payload.
    """
    start = header.payload_offset
    end = len(data) - header.padding_length
    if end - start < 2:
        raise ValueError("RTX payload is too short")
    if payload_type > 127:
        raise ValueError("RTP payload type is invalid")
    fixed = RTP_HEADER.pack(
        data[0] & 0xDF,  # keep V, X and CC; clear P
        (payload_type | 0x80) if header.marker else payload_type,
        (data[start] << 8) | data[start + 1],
        header.timestamp,
        ssrc,
    )
    return b"".join((fixed, data[RTP_HEADER_SIZE:start], data[start + 2 : end]))
