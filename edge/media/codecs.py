"""Codec facts the forwarder needs from RTP payloads, without decoding.

``codec`` is always the lower-case MIME subtype ("vp8", "h264", "opus", ...).
Payloads come straight off the network, so every function here tolerates
short or garbage input and answers False / None instead of raising.
"""

from __future__ import annotations

from typing import Callable

from .vp8 import parse_ids

__all__ = ["is_frame_start", "is_keyframe", "vp8_temporal_layer"]

# Audio packets are self-contained frames: never keyframes, always frame starts.
AUDIO_CODECS = frozenset(
    {"opus", "pcmu", "pcma", "g722", "g729", "isac", "ilbc", "cn", "telephone-event"}
)

# RFC 7741 section 4.2 payload descriptor bits.
_VP8_X = 0x80  # extended control bits present
_VP8_S = 0x10  # start of VP8 partition
_VP8_PID = 0x07  # partition index
_VP8_I = 0x80  # PictureID present
_VP8_L = 0x40  # TL0PICIDX present
_VP8_T = 0x20  # TID present
_VP8_K = 0x10  # KEYIDX present
_VP8_M = 0x80  # PictureID is 15 bits

# RFC 6184 NAL unit types.
_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28
_H264_FU_START = 0x80
_H264_KEY_TYPES = (_H264_IDR, _H264_SPS)


def _vp8_header_offset(payload: bytes) -> int:
    """Offset of the VP8 payload header after the descriptor, -1 if truncated."""
    size = len(payload)
    if size == 0:
        return -1
    pos = 1
    if payload[0] & _VP8_X:
        if size < 2:
            return -1
        extension = payload[1]
        pos = 2
        if extension & _VP8_I:
            if pos >= size:
                return -1
            pos += 2 if payload[pos] & _VP8_M else 1
        if extension & _VP8_L:
            pos += 1
        if extension & (_VP8_T | _VP8_K):  # one shared TID/Y/KEYIDX byte
            pos += 1
    return pos if pos < size else -1


def _vp8_is_partition_zero_start(payload: bytes) -> bool:
    return bool(payload) and payload[0] & (_VP8_S | _VP8_PID) == _VP8_S


def _vp8_is_keyframe(payload: bytes) -> bool:
    # Only the first packet of a frame carries the VP8 payload header, whose
    # P bit (inverse key frame flag, RFC 7741 section 4.3) is 0 for key frames.
    if not _vp8_is_partition_zero_start(payload):
        return False
    offset = _vp8_header_offset(payload)
    return offset >= 0 and payload[offset] & 0x01 == 0


def _vp8_is_frame_start(payload: bytes) -> bool:
    return _vp8_is_partition_zero_start(payload) and _vp8_header_offset(payload) >= 0


def vp8_temporal_layer(payload: bytes) -> int | None:
    """The temporal layer index (TID) of a VP8 packet, None if not signalled."""
    ids = parse_ids(payload)
    return ids.tid if ids is not None and ids.tid >= 0 else None


def _h264_is_keyframe(payload: bytes) -> bool:
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_TYPES:
        return True
    if nal_type == _H264_STAP_A:
        # 16-bit size followed by a NAL unit, repeated (RFC 6184 section 5.7.1).
        pos = 1
        size = len(payload)
        while pos + 2 < size:
            nal_size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if nal_size == 0 or pos + nal_size > size:
                return False
            if payload[pos] & 0x1F in _H264_KEY_TYPES:
                return True
            pos += nal_size
        return False
    if nal_type == _H264_FU_A:
        # Only the first fragment can tell: later ones may follow a lost start.
        return (
            len(payload) >= 2
            and bool(payload[1] & _H264_FU_START)
            and payload[1] & 0x1F in _H264_KEY_TYPES
        )
    return False


def _h264_is_frame_start(payload: bytes) -> bool:
    # Without parsing slice headers this is "begins a NAL unit": anything but
    # an FU-A continuation. Types 0 and 25..31 other than FU-A are not allowed
    # in packetization-mode 0/1 as used by WebRTC.
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type == _H264_FU_A:
        return len(payload) >= 2 and bool(payload[1] & _H264_FU_START)
    return 1 <= nal_type <= _H264_STAP_A


_KEYFRAME: dict[str, Callable[[bytes], bool]] = {
    "vp8": _vp8_is_keyframe,
    "h264": _h264_is_keyframe,
}
_FRAME_START: dict[str, Callable[[bytes], bool]] = {
    "vp8": _vp8_is_frame_start,
    "h264": _h264_is_frame_start,
}


def is_keyframe(codec: str, payload: bytes) -> bool:
    """Whether this packet starts a frame that decodes without references.

    False for audio and for codecs this module does not know.
    """
    check = _KEYFRAME.get(codec)
    return check(payload) if check is not None else False


def is_frame_start(codec: str, payload: bytes) -> bool:
    """Whether this packet begins a frame (a safe point to switch streams).

    Every audio packet is a frame start; unknown video codecs never are,
    so a forwarder does not switch layers on guesswork.
    """
    if codec in AUDIO_CODECS:
        return True
    check = _FRAME_START.get(codec)
    return check(payload) if check is not None else False
