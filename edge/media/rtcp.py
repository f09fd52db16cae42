"""RTCP wire structures (RFC 3550, RFC 4585, RFC 5104, REMB, transport-cc).

Every structure is a slotted dataclass with ``parse(data)`` (one complete
packet, header included) and ``__bytes__`` (one complete packet).
:func:`parse_rtcp` walks a compound packet and never drops a packet it does not
understand: those come back as :class:`UnknownRtcp` so they can be relayed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import struct
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable, TypeVar, Union

from edge.media.twcc import TwccFeedback

__all__ = [
    "Bye", "Fir", "Nack", "Pli", "Remb", "ReceiverReport", "ReportBlock", "RtcpPacket",
    "SenderReport", "SourceDescription", "TransportFeedback", "UnknownRtcp",
    "ntp_from_unix", "ntp_middle", "ntp_now", "parse_rtcp", "serialize_compound",
]  # fmt: skip

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_RTPFB = 205
RTCP_PSFB = 206

RTPFB_NACK = 1
RTPFB_TRANSPORT_CC = 15
PSFB_PLI = 1
PSFB_FIR = 4
PSFB_AFB = 15  # application layer feedback, used by REMB

SDES_CNAME = 1

_HEADER = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
_FEEDBACK = struct.Struct("!II")  # sender SSRC, media source SSRC
_REPORT_BLOCK = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC + sender info
_NACK_ITEM = struct.Struct("!HH")
_FIR_ITEM = struct.Struct("!IB3x")
_REMB_HEAD = struct.Struct("!4sBBH")

_MAX_COUNT = 31  # the count / fmt field is 5 bits
_REMB_MANTISSA_BITS = 18
_REMB_MAX_EXPONENT = 63

# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_EPOCH_OFFSET = 2208988800


def _pack(packet_type: int, count: int, payload: bytes) -> bytes:
    """Prefix ``payload`` with an RTCP header, padding it to 32 bits if needed.

    Structures here are naturally aligned; only raw payloads (e.g. a
    transport-cc FCI whose sender used the P bit) need RFC 3550 padding,
    which keeps ``parse(bytes(x)) == x`` for them.
    """
    if not 0 <= count <= _MAX_COUNT:
        raise ValueError("RTCP count field is out of range")
    first = 0x80 | count
    pad = -len(payload) % 4
    if pad:
        first |= 0x20
        payload = payload + bytes(pad - 1) + bytes((pad,))
    return _HEADER.pack(first, packet_type, len(payload) // 4) + payload


def _read_packet(data: bytes, pos: int) -> tuple[int, int, bytes, int]:
    """Read the packet at ``pos``: (type, count/fmt, unpadded payload, end)."""
    if len(data) - pos < 4:
        raise ValueError("RTCP packet is too short")
    first, packet_type, words = _HEADER.unpack_from(data, pos)
    if first >> 6 != 2:
        raise ValueError("RTCP version is not 2")
    start = pos + 4
    end = start + 4 * words
    if end > len(data):
        raise ValueError("RTCP packet length is invalid")
    payload_end = end
    if first & 0x20:
        # The last octet counts the padding including itself.
        pad = data[end - 1] if end > start else 0
        if pad == 0 or pad > end - start:
            raise ValueError("RTCP padding length is invalid")
        payload_end -= pad
    return packet_type, first & 0x1F, data[start:payload_end], end


def _read_single(data: bytes, packet_type: int, fmt: int | None) -> tuple[int, int, bytes]:
    """Read exactly one packet of the given type (and feedback format)."""
    actual_type, count, payload, end = _read_packet(data, 0)
    if end != len(data):
        raise ValueError("RTCP packet has trailing data")
    if actual_type != packet_type:
        raise ValueError(f"RTCP packet type is {actual_type}, expected {packet_type}")
    if fmt is not None and count != fmt:
        raise ValueError(f"RTCP feedback format is {count}, expected {fmt}")
    return actual_type, count, payload


def _feedback_ssrcs(payload: bytes) -> tuple[int, int]:
    if len(payload) < 8:
        raise ValueError("RTCP feedback length is invalid")
    sender_ssrc, media_ssrc = _FEEDBACK.unpack_from(payload)
    return sender_ssrc, media_ssrc


_P = TypeVar("_P", bound="_Packet")


class _Packet(ABC):
    """``parse`` for a single packet: header checks, then the type's ``_decode``."""

    __slots__ = ()
    PACKET_TYPE: ClassVar[int]
    FMT: ClassVar[int | None] = None  # feedback format, for RTPFB / PSFB only

    @classmethod
    def parse(cls: type[_P], data: bytes) -> _P:
        return cls._decode(*_read_single(data, cls.PACKET_TYPE, cls.FMT))

    @classmethod
    @abstractmethod
    def _decode(cls: type[_P], packet_type: int, count: int, payload: bytes) -> _P:
        """Build the packet from its header fields and payload (each type its own)."""


@dataclass(slots=True)
class ReportBlock:
    """RFC 3550 section 6.4.1 reception report block (24 bytes)."""

    ssrc: int
    fraction_lost: int
    packets_lost: int  # signed 24-bit cumulative loss
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int

    @classmethod
    def parse(cls, data: bytes) -> ReportBlock:
        if len(data) != _REPORT_BLOCK.size:
            raise ValueError("RTCP report block length is invalid")
        return cls._unpack(data, 0)

    @classmethod
    def _unpack(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, loss, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        lost = loss & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, loss >> 24, lost, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        # RFC 3550 section 6.4.1: the cumulative loss is clamped, not wrapped.
        lost = max(-0x800000, min(self.packets_lost, 0x7FFFFF)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost << 24) | lost,
            self.highest_sequence,
            self.jitter,
            self.lsr,
            self.dlsr,
        )


def _unpack_blocks(payload: bytes, pos: int, count: int) -> list[ReportBlock]:
    return [ReportBlock._unpack(payload, pos + 24 * i) for i in range(count)]


@dataclass(slots=True)
class SenderReport(_Packet):
    PACKET_TYPE: ClassVar[int] = RTCP_SR

    ssrc: int
    ntp_timestamp: int  # 64-bit NTP
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> SenderReport:
        # Profile-specific extensions may follow the blocks; they are ignored.
        if len(payload) < _SENDER_INFO.size + 24 * count:
            raise ValueError("RTCP sender report length is invalid")
        ssrc, ntp, rtp, packets, octets = _SENDER_INFO.unpack_from(payload)
        return cls(ssrc, ntp, rtp, packets, octets, _unpack_blocks(payload, 24, count))

    def __bytes__(self) -> bytes:
        head = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        blocks = b"".join(bytes(block) for block in self.reports)
        return _pack(RTCP_SR, len(self.reports), head + blocks)


@dataclass(slots=True)
class ReceiverReport(_Packet):
    PACKET_TYPE: ClassVar[int] = RTCP_RR

    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> ReceiverReport:
        if len(payload) < 4 + 24 * count:
            raise ValueError("RTCP receiver report length is invalid")
        return cls(_SSRC.unpack_from(payload)[0], _unpack_blocks(payload, 4, count))

    def __bytes__(self) -> bytes:
        blocks = b"".join(bytes(block) for block in self.reports)
        return _pack(RTCP_RR, len(self.reports), _SSRC.pack(self.ssrc) + blocks)


@dataclass(slots=True)
class SourceDescription(_Packet):
    """SDES: chunks of (ssrc, [(item type, value), ...])."""

    PACKET_TYPE: ClassVar[int] = RTCP_SDES

    chunks: list[tuple[int, list[tuple[int, bytes]]]] = field(default_factory=list)

    @classmethod
    def cname(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls([(ssrc, [(SDES_CNAME, cname.encode())])])

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> SourceDescription:
        chunks: list[tuple[int, list[tuple[int, bytes]]]] = []
        size = len(payload)
        pos = 0
        for _ in range(count):
            if pos + 4 > size:
                raise ValueError("RTCP SDES chunk is truncated")
            ssrc = _SSRC.unpack_from(payload, pos)[0]
            pos += 4
            items: list[tuple[int, bytes]] = []
            while True:
                if pos >= size:
                    raise ValueError("RTCP SDES chunk is truncated")
                item_type = payload[pos]
                if item_type == 0:
                    # End of list; null octets pad the chunk to 32 bits.
                    pos = (pos + 4) & ~3
                    break
                if pos + 2 > size or pos + 2 + payload[pos + 1] > size:
                    raise ValueError("RTCP SDES item is truncated")
                end = pos + 2 + payload[pos + 1]
                items.append((item_type, payload[pos + 2 : end]))
                pos = end
            chunks.append((ssrc, items))
        return cls(chunks)

    def __bytes__(self) -> bytes:
        parts: list[bytes] = []
        for ssrc, items in self.chunks:
            chunk = [_SSRC.pack(ssrc)]
            for item_type, value in items:
                if not 1 <= item_type <= 255:
                    raise ValueError("RTCP SDES item type is invalid")
                if len(value) > 255:
                    raise ValueError("RTCP SDES item is too long")
                chunk.append(bytes((item_type, len(value))))
                chunk.append(value)
            body = b"".join(chunk)
            # At least one null octet terminates the list, more align the chunk.
            parts.append(body + bytes(4 - len(body) % 4))
        return _pack(RTCP_SDES, len(self.chunks), b"".join(parts))


@dataclass(slots=True)
class Bye(_Packet):
    PACKET_TYPE: ClassVar[int] = RTCP_BYE

    sources: list[int]
    reason: bytes = b""

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> Bye:
        pos = 4 * count
        if pos > len(payload):
            raise ValueError("RTCP BYE length is invalid")
        sources = list(struct.unpack_from(f"!{count}I", payload))
        reason = b""
        if pos < len(payload):
            end = pos + 1 + payload[pos]
            if end > len(payload):
                raise ValueError("RTCP BYE reason is truncated")
            reason = payload[pos + 1 : end]
        return cls(sources, reason)

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            if len(self.reason) > 255:
                raise ValueError("RTCP BYE reason is too long")
            reason = bytes((len(self.reason),)) + self.reason
            body += reason + bytes(-len(reason) % 4)  # null octets, not the P bit
        return _pack(RTCP_BYE, len(self.sources), body)


@dataclass(slots=True)
class Nack(_Packet):
    """Generic NACK (RFC 4585 section 6.2.1), lost sequence numbers expanded."""

    PACKET_TYPE: ClassVar[int] = RTCP_RTPFB
    FMT: ClassVar[int] = RTPFB_NACK

    sender_ssrc: int
    media_ssrc: int
    lost: list[int] = field(default_factory=list)

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> Nack:
        sender_ssrc, media_ssrc = _feedback_ssrcs(payload)
        if len(payload) % 4:
            raise ValueError("RTCP NACK length is invalid")
        lost: list[int] = []
        for pid, blp in _NACK_ITEM.iter_unpack(payload[8:]):
            lost.append(pid)
            bit = 0
            while blp:
                if blp & 1:
                    lost.append((pid + bit + 1) & 0xFFFF)
                blp >>= 1
                bit += 1
        return cls(sender_ssrc, media_ssrc, lost)

    def __bytes__(self) -> bytes:
        parts = [_FEEDBACK.pack(self.sender_ssrc, self.media_ssrc)]
        if self.lost:
            pid = self.lost[0]
            blp = 0
            for seq in self.lost[1:]:
                # Modular distance so that a run across 65535 -> 0 shares a PID.
                distance = (seq - pid - 1) & 0xFFFF
                if distance < 16:
                    blp |= 1 << distance
                else:
                    parts.append(_NACK_ITEM.pack(pid, blp))
                    pid, blp = seq, 0
            parts.append(_NACK_ITEM.pack(pid, blp))
        return _pack(RTCP_RTPFB, RTPFB_NACK, b"".join(parts))


@dataclass(slots=True)
class TransportFeedback(_Packet):
    """transport-cc feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01).

    The FCI is decoded into :class:`edge.media.twcc.TwccFeedback`; a malformed
    FCI makes the packet (and so the compound) a ``ValueError`` like any other
    malformed feedback. The FCI is padded with the P bit, as libwebrtc does.
    """

    PACKET_TYPE: ClassVar[int] = RTCP_RTPFB
    FMT: ClassVar[int] = RTPFB_TRANSPORT_CC

    sender_ssrc: int
    media_ssrc: int
    feedback: TwccFeedback

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> TransportFeedback:
        sender_ssrc, media_ssrc = _feedback_ssrcs(payload)
        return cls(sender_ssrc, media_ssrc, TwccFeedback.parse(payload[8:]))

    def __bytes__(self) -> bytes:
        body = _FEEDBACK.pack(self.sender_ssrc, self.media_ssrc) + bytes(self.feedback)
        return _pack(RTCP_RTPFB, RTPFB_TRANSPORT_CC, body)


@dataclass(slots=True)
class Pli(_Packet):
    """Picture Loss Indication (RFC 4585 section 6.3.1)."""

    PACKET_TYPE: ClassVar[int] = RTCP_PSFB
    FMT: ClassVar[int] = PSFB_PLI

    sender_ssrc: int
    media_ssrc: int

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> Pli:
        return cls(*_feedback_ssrcs(payload))

    def __bytes__(self) -> bytes:
        return _pack(RTCP_PSFB, PSFB_PLI, _FEEDBACK.pack(self.sender_ssrc, self.media_ssrc))


@dataclass(slots=True)
class Fir(_Packet):
    """Full Intra Request (RFC 5104 section 4.3.1): (ssrc, sequence) entries."""

    PACKET_TYPE: ClassVar[int] = RTCP_PSFB
    FMT: ClassVar[int] = PSFB_FIR

    sender_ssrc: int
    entries: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> Fir:
        # The media source SSRC is unused for FIR (RFC 5104); targets are in the FCI.
        sender_ssrc, _ = _feedback_ssrcs(payload)
        if (len(payload) - 8) % _FIR_ITEM.size:
            raise ValueError("RTCP FIR length is invalid")
        return cls(sender_ssrc, list(_FIR_ITEM.iter_unpack(payload[8:])))

    def __bytes__(self) -> bytes:
        parts = [_FEEDBACK.pack(self.sender_ssrc, 0)]
        parts.extend(_FIR_ITEM.pack(ssrc, sequence) for ssrc, sequence in self.entries)
        return _pack(RTCP_PSFB, PSFB_FIR, b"".join(parts))


@dataclass(slots=True)
class Remb(_Packet):
    """Receiver Estimated Max Bitrate (draft-alvestrand-rmcat-remb-03)."""

    PACKET_TYPE: ClassVar[int] = RTCP_PSFB
    FMT: ClassVar[int] = PSFB_AFB

    sender_ssrc: int
    bitrate: int
    ssrcs: list[int] = field(default_factory=list)

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> Remb:
        sender_ssrc, _ = _feedback_ssrcs(payload)
        if len(payload) < 8 + _REMB_HEAD.size:
            raise ValueError("RTCP REMB length is invalid")
        identifier, num_ssrc, high, low = _REMB_HEAD.unpack_from(payload, 8)
        if identifier != b"REMB":
            raise ValueError("RTCP REMB identifier is invalid")
        if len(payload) < 16 + 4 * num_ssrc:
            raise ValueError("RTCP REMB length is invalid")
        bitrate = (((high & 0x03) << 16) | low) << (high >> 2)
        ssrcs = list(struct.unpack_from(f"!{num_ssrc}I", payload, 16))
        return cls(sender_ssrc, bitrate, ssrcs)

    def __bytes__(self) -> bytes:
        if self.bitrate < 0:
            raise ValueError("RTCP REMB bitrate is negative")
        if len(self.ssrcs) > 255:
            raise ValueError("RTCP REMB has too many SSRCs")
        # The smallest exponent that fits gives the finest step; truncating the
        # mantissa keeps the advertised value at or below the estimate.
        exponent = max(0, self.bitrate.bit_length() - _REMB_MANTISSA_BITS)
        if exponent > _REMB_MAX_EXPONENT:
            exponent, mantissa = _REMB_MAX_EXPONENT, (1 << _REMB_MANTISSA_BITS) - 1
        else:
            mantissa = self.bitrate >> exponent
        fci = _REMB_HEAD.pack(
            b"REMB", len(self.ssrcs), (exponent << 2) | (mantissa >> 16), mantissa & 0xFFFF
        )
        ssrcs = struct.pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        # RFC 4585 section 6.4: the media source SSRC is 0 for REMB.
        return _pack(RTCP_PSFB, PSFB_AFB, _FEEDBACK.pack(self.sender_ssrc, 0) + fci + ssrcs)


@dataclass(slots=True)
class UnknownRtcp:
    """Any other packet (APP, XR, other feedback), kept verbatim for relaying."""

    packet_type: int
    fmt: int  # the 5-bit count / format field
    payload: bytes  # after the header, padding removed

    @classmethod
    def parse(cls, data: bytes) -> UnknownRtcp:
        packet_type, count, payload, end = _read_packet(data, 0)
        if end != len(data):
            raise ValueError("RTCP packet has trailing data")
        return cls(packet_type, count, payload)

    @classmethod
    def _decode(cls, packet_type: int, count: int, payload: bytes) -> UnknownRtcp:
        return cls(packet_type, count, payload)

    def __bytes__(self) -> bytes:
        return _pack(self.packet_type, self.fmt, self.payload)


RtcpPacket = Union[
    SenderReport, ReceiverReport, SourceDescription, Bye, Nack, TransportFeedback,
    Pli, Fir, Remb, UnknownRtcp,
]  # fmt: skip

_Decoder = Callable[[int, int, bytes], RtcpPacket]


def _decode_afb(packet_type: int, count: int, payload: bytes) -> RtcpPacket:
    # Application layer feedback is shared; only the "REMB" flavour is ours.
    if payload[8:12] == b"REMB":
        return Remb._decode(packet_type, count, payload)
    return UnknownRtcp._decode(packet_type, count, payload)


# Feedback packets are keyed by (type, fmt); the others carry a count instead.
_FEEDBACK_DECODERS: dict[tuple[int, int], _Decoder] = {
    (RTCP_RTPFB, RTPFB_NACK): Nack._decode,
    (RTCP_RTPFB, RTPFB_TRANSPORT_CC): TransportFeedback._decode,
    (RTCP_PSFB, PSFB_PLI): Pli._decode,
    (RTCP_PSFB, PSFB_FIR): Fir._decode,
    (RTCP_PSFB, PSFB_AFB): _decode_afb,
}
_DECODERS: dict[int, _Decoder] = {
    RTCP_SR: SenderReport._decode,
    RTCP_RR: ReceiverReport._decode,
    RTCP_SDES: SourceDescription._decode,
    RTCP_BYE: Bye._decode,
}


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet into its packets, in order."""
    if not data:
        raise ValueError("RTCP packet is too short")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        packet_type, count, payload, pos = _read_packet(data, pos)
        decoder = _FEEDBACK_DECODERS.get((packet_type, count)) or _DECODERS.get(
            packet_type, UnknownRtcp._decode
        )
        packets.append(decoder(packet_type, count, payload))
    return packets


def serialize_compound(packets: Iterable[RtcpPacket]) -> bytes:
    return b"".join(bytes(packet) for packet in packets)


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) from Unix time."""
    whole = int(seconds)
    fraction = int((seconds - whole) * (1 << 32))
    # The seconds field wraps in 2036 (NTP era 1); RFC 4330 section 3.
    return (((whole + NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32) | fraction


def ntp_now() -> int:
    return ntp_from_unix(time.time())


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as used in LSR (RFC 3550)."""
    return (ntp >> 16) & 0xFFFFFFFF
