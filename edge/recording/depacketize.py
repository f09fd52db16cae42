"""RTP payloads back into codec frames, without decoding (for the remuxer).

- VP8 (RFC 7741): the payload descriptor is stripped and the packets of one
  timestamp are concatenated into a frame.
- H.264 (RFC 6184, packetization-mode 1): single NAL units, STAP-A and FU-A
  become one Annex B access unit per timestamp (4-byte start codes); an IDR
  access unit without SPS/PPS gets the last ones seen, so it decodes on its own.
- Opus (RFC 7587): one packet is one frame.

Packets go in in sequence-number order (``RtpPacket.ext_seq``, unwrapped);
frames come out as ``Frame`` records. A frame is emitted only when complete:
its packets are consecutive, it starts where a frame starts, and it ends with
the marker bit (or the next packet, one sequence number later, starts a new
timestamp). After an incomplete frame, video frames are dropped until the next
keyframe, since a decoder could not use them; every stream starts at a
keyframe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

START_CODE = b"\x00\x00\x00\x01"

# H.264 NAL unit types (RFC 6184 / ITU-T H.264 table 7-1).
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
NAL_STAP_A = 24
NAL_FU_A = 28


@dataclass(slots=True)
class RtpPacket:
    """One received RTP packet, as the remuxer needs it."""

    ext_seq: int  # sequence number unwrapped past 16 bits
    ext_ts: int  # timestamp unwrapped past 32 bits
    marker: bool
    payload: bytes
    arrival: float = 0.0


@dataclass(slots=True)
class Frame:
    ext_ts: int
    data: bytes
    keyframe: bool
    arrival: float = 0.0


class Depacketizer(Protocol):
    frames_dropped: int

    def push(self, packet: RtpPacket) -> list[Frame]: ...

    def flush(self) -> list[Frame]: ...


# -- VP8 ---------------------------------------------------------------------------------


def vp8_descriptor_size(payload: bytes) -> int:
    """Length of the RFC 7741 payload descriptor; -1 when truncated."""
    size = len(payload)
    if size < 1:
        return -1
    pos = 1
    if payload[0] & 0x80:  # X: extended control bits
        if size < 2:
            return -1
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: PictureID
            if pos >= size:
                return -1
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: one shared TID/Y/KEYIDX byte
            pos += 1
    return pos if pos <= size else -1


def vp8_frame_start(payload: bytes) -> bool:
    """S=1 and PID=0: the packet begins a frame."""
    return bool(payload) and payload[0] & 0x17 == 0x10


def vp8_is_keyframe(frame: bytes) -> bool:
    """A VP8 frame (no descriptor) is a key frame when the P bit of its tag is 0."""
    return bool(frame) and frame[0] & 0x01 == 0


def vp8_dimensions(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 key frame header (RFC 6386 section 9.1)."""
    if len(frame) < 10 or not vp8_is_keyframe(frame) or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return width, height


class _Grouper(ABC):
    """Groups packets by timestamp and decides whether each group is complete."""

    keyframe_gated = True

    def __init__(self) -> None:
        self.group: list[RtpPacket] = []
        self.last_seq: int | None = None  # last packet of the previous group
        self.waiting_for_keyframe = True
        self.frames_dropped = 0
        self.frames = 0

    def push(self, packet: RtpPacket) -> list[Frame]:
        group = self.group
        if group and packet.ext_ts != group[0].ext_ts:
            out = self._close(next_seq=packet.ext_seq)
            self.group = [packet]
            return out
        group.append(packet)
        if packet.marker:
            out = self._close(next_seq=None)
            self.group = []
            return out
        return []

    def flush(self) -> list[Frame]:
        out = self._close(next_seq=None) if self.group else []
        self.group = []
        return out

    def _close(self, next_seq: int | None) -> list[Frame]:
        group = self.group
        previous = self.last_seq
        self.last_seq = group[-1].ext_seq
        contiguous = all(b.ext_seq == a.ext_seq + 1 for a, b in zip(group, group[1:]))
        ended = group[-1].marker or (next_seq is not None and next_seq == group[-1].ext_seq + 1)
        gap_before = previous is not None and group[0].ext_seq != previous + 1
        frame = self._assemble(group, gap_before) if contiguous and ended else None
        if frame is None:
            self.frames_dropped += 1
            self.waiting_for_keyframe = True
            return []
        if self.waiting_for_keyframe and not frame.keyframe:
            self.frames_dropped += 1
            return []
        self.waiting_for_keyframe = False
        self.frames += 1
        return [frame]

    @abstractmethod
    def _assemble(self, group: list[RtpPacket], gap_before: bool) -> Frame | None:
        """One frame from the packets of one RTP timestamp (each codec its own)."""


class Vp8Depacketizer(_Grouper):
    def _assemble(self, group: list[RtpPacket], gap_before: bool) -> Frame | None:
        # A gap before the group is harmless when the group itself starts a frame
        # (S=1, PID=0): the missing packets belonged to an earlier frame.
        if not vp8_frame_start(group[0].payload):
            return None
        parts = []
        for packet in group:
            offset = vp8_descriptor_size(packet.payload)
            if offset < 0:
                return None
            parts.append(packet.payload[offset:])
        data = b"".join(parts)
        if not data:
            return None
        return Frame(group[0].ext_ts, data, vp8_is_keyframe(data), group[0].arrival)


# -- H.264 -------------------------------------------------------------------------------


def h264_nal_units(payloads: Iterable[bytes]) -> list[bytes] | None:
    """The NAL units carried by the RTP payloads of one access unit, in order.

    None when the payloads do not form whole NAL units (a broken FU-A, a
    truncated STAP-A, an unsupported packet type).
    """
    nals: list[bytes] = []
    fu: list[bytes] | None = None
    for payload in payloads:
        if not payload:
            return None
        nal_type = payload[0] & 0x1F
        if nal_type == NAL_FU_A:
            if len(payload) < 2:
                return None
            header = payload[1]
            start, end = bool(header & 0x80), bool(header & 0x40)
            if start:
                if fu is not None:
                    return None
                fu = [bytes([(payload[0] & 0xE0) | (header & 0x1F)]), payload[2:]]
            else:
                if fu is None:
                    return None
                fu.append(payload[2:])
            if end:
                nals.append(b"".join(fu))
                fu = None
            continue
        if fu is not None:
            return None  # a fragmented NAL unit without its end
        if 1 <= nal_type <= 23:
            nals.append(payload)
        elif nal_type == NAL_STAP_A:
            pos = 1
            size = len(payload)
            while pos < size:
                if pos + 2 > size:
                    return None
                length = (payload[pos] << 8) | payload[pos + 1]
                pos += 2
                if length == 0 or pos + length > size:
                    return None
                nals.append(payload[pos : pos + length])
                pos += length
        else:
            return None  # STAP-B, MTAP, FU-B: not in packetization-mode 1
    if fu is not None:
        return None
    return nals


def annex_b(nals: Iterable[bytes]) -> bytes:
    return b"".join(START_CODE + nal for nal in nals)


def split_annex_b(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (3- or 4-byte start codes)."""
    out: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        end = len(data) if j == -1 else j
        nal = data[start:end]
        if j != -1 and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")  # the next start code's leading zero (4-byte form)
        if nal:
            out.append(nal)
        i = j
    return out


class H264Depacketizer(_Grouper):
    def __init__(self) -> None:
        super().__init__()
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def _assemble(self, group: list[RtpPacket], gap_before: bool) -> Frame | None:
        if gap_before:
            return None  # a lost packet may have held this access unit's first NAL units
        nals = h264_nal_units(p.payload for p in group)
        if not nals:
            return None
        types = [nal[0] & 0x1F for nal in nals]
        for nal, kind in zip(nals, types):
            if kind == NAL_SPS:
                self.sps = nal
            elif kind == NAL_PPS:
                self.pps = nal
        keyframe = NAL_IDR in types
        if keyframe:
            if NAL_SPS not in types or NAL_PPS not in types:
                if self.sps is None or self.pps is None:
                    return None  # an IDR nobody can decode: wait for one with parameter sets
                extra = [n for n, k in ((self.sps, NAL_SPS), (self.pps, NAL_PPS)) if k not in types]
                nals = extra + nals
        return Frame(group[0].ext_ts, annex_b(nals), keyframe, group[0].arrival)


class _BitReader:
    """Exp-Golomb reader over an RBSP (emulation prevention bytes removed)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise ValueError("SPS is truncated")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def h264_dimensions(sps: bytes) -> tuple[int, int] | None:
    """Width and height (after cropping) from an SPS NAL unit (H.264 7.3.2.1.1)."""
    try:
        r = _BitReader(_rbsp(sps[1:]))
        profile_idc = r.bits(8)
        r.bits(16)  # constraint flags, level_idc
        r.ue()  # seq_parameter_set_id
        chroma_format_idc = 1
        separate_colour_plane = 0
        if profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            chroma_format_idc = r.ue()
            if chroma_format_idc == 3:
                separate_colour_plane = r.bit()
            r.ue()  # bit_depth_luma_minus8
            r.ue()  # bit_depth_chroma_minus8
            r.bit()  # qpprime_y_zero_transform_bypass_flag
            if r.bit():  # seq_scaling_matrix_present_flag
                for i in range(8 if chroma_format_idc != 3 else 12):
                    if r.bit():
                        size = 16 if i < 6 else 64
                        last = nxt = 8
                        for _ in range(size):
                            if nxt != 0:
                                nxt = (last + r.se() + 256) % 256
                            last = nxt if nxt != 0 else last
        r.ue()  # log2_max_frame_num_minus4
        poc_type = r.ue()
        if poc_type == 0:
            r.ue()
        elif poc_type == 1:
            r.bit()
            r.se()
            r.se()
            for _ in range(r.ue()):
                r.se()
        r.ue()  # max_num_ref_frames
        r.bit()  # gaps_in_frame_num_value_allowed_flag
        width_mbs = r.ue() + 1
        height_map_units = r.ue() + 1
        frame_mbs_only = r.bit()
        if not frame_mbs_only:
            r.bit()  # mb_adaptive_frame_field_flag
        r.bit()  # direct_8x8_inference_flag
        width = width_mbs * 16
        height = (2 - frame_mbs_only) * height_map_units * 16
        if r.bit():  # frame_cropping_flag
            left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
            chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
            if chroma_array_type == 0:
                crop_x, crop_y = 1, 2 - frame_mbs_only
            else:
                sub_width = 1 if chroma_array_type == 3 else 2
                sub_height = 2 if chroma_array_type == 1 else 1
                crop_x, crop_y = sub_width, sub_height * (2 - frame_mbs_only)
            width -= crop_x * (left + right)
            height -= crop_y * (top + bottom)
        return (width, height) if width > 0 and height > 0 else None
    except ValueError:
        return None


def h264_frame_dimensions(frame: bytes) -> tuple[int, int] | None:
    for nal in split_annex_b(frame):
        if nal[0] & 0x1F == NAL_SPS:
            return h264_dimensions(nal)
    return None


# -- Opus --------------------------------------------------------------------------------

_OPUS_FRAME_SAMPLES = (
    # SILK NB, MB, WB: 10, 20, 40, 60 ms
    *([480, 960, 1920, 2880] * 3),
    # Hybrid SWB, FB: 10, 20 ms
    *([480, 960] * 2),
    # CELT NB, WB, SWB, FB: 2.5, 5, 10, 20 ms
    *([120, 240, 480, 960] * 4),
)


def opus_samples(packet: bytes) -> int:
    """Samples at 48 kHz in an Opus packet (RFC 6716 section 3.1); 0 if malformed."""
    if not packet:
        return 0
    toc = packet[0]
    per_frame = _OPUS_FRAME_SAMPLES[toc >> 3]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(packet) < 2:
            return 0
        count = packet[1] & 0x3F
    return per_frame * count


class OpusDepacketizer:
    """Every packet is a frame; lost packets are simply absent (the decoder conceals)."""

    def __init__(self) -> None:
        self.frames_dropped = 0
        self.frames = 0

    def push(self, packet: RtpPacket) -> list[Frame]:
        if not packet.payload:
            return []
        self.frames += 1
        return [Frame(packet.ext_ts, packet.payload, True, packet.arrival)]

    def flush(self) -> list[Frame]:
        return []


DEPACKETIZERS = {"vp8": Vp8Depacketizer, "h264": H264Depacketizer, "opus": OpusDepacketizer}


def depacketizer(codec: str) -> Depacketizer:
    try:
        return DEPACKETIZERS[codec]()  # type: ignore[no-any-return]
    except KeyError:
        raise ValueError(f"recording does not support the {codec!r} codec") from None


def depacketize(codec: str, packets: Iterable[RtpPacket]) -> Iterator[Frame]:
    """All frames of packets given in sequence-number order."""
    d = depacketizer(codec)
    for packet in packets:
        yield from d.push(packet)
    yield from d.flush()
