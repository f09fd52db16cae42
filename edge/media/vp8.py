"""VP8 picture ID and TL0PICIDX continuity across a consumer's source changes.

Each simulcast layer comes from its own encoder, and each encoder numbers its
pictures from its own random start (RFC 7741 §4.2: PictureID, 7 or 15 bits;
TL0PICIDX, 8 bits). A viewer's decoder orders and references frames by those
numbers: after a switch from one layer to another its stream would jump back
or forward by thousands of pictures, and a browser may then hold or drop the
new layer's frames as "old" until another keyframe (a freeze at each switch).
So, like mediasoup and LiveKit, the node rewrites both fields per consumer:
at each (re)start of the stream (``Forwarder.vp8_sync``) the offsets are set so
the new source's first picture follows the last one the consumer sent.

``parse_ids`` reads the fields' positions once per packet; ``Forwarder.vp8``
(and the native plane's C twin) rewrites a copy of the payload per consumer,
keeping each field's length (a 7-bit PictureID stays 7-bit).

It also reads what temporal-layer dropping needs (edge/media/temporal.py):
the TID (T bit), the layer-sync flag Y (this frame references only TL0, so a
viewer may start taking its layer here) and whether the packet starts a frame
(S bit, partition 0): layer changes happen only there, never inside a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

_X = 0x80
_S = 0x10
_PID = 0x07
_I = 0x80
_L = 0x40
_T = 0x20
_K = 0x10
_M = 0x80
_Y = 0x20


@dataclass(frozen=True, slots=True)
class Vp8Ids:
    picture_id_at: int  # offset in the payload, -1: no PictureID
    picture_id_bits: int  # 7 or 15 (0 without one)
    picture_id: int
    tl0_at: int  # offset of TL0PICIDX, -1: none
    tl0: int
    tid: int = -1  # temporal layer (0-3), -1: the packet names none
    sync: bool = False  # Y: a layer sync frame
    start: bool = False  # the first packet of a frame


def parse_ids(payload: bytes) -> Vp8Ids | None:
    """Where the PictureID and TL0PICIDX of a VP8 payload are, and its TID; None if
    it has none of them (or is too short to say)."""
    size = len(payload)
    if size < 2 or not payload[0] & _X:
        return None
    ext = payload[1]
    pos = 2
    pic_at, bits, pic = -1, 0, 0
    if ext & _I:
        if pos >= size:
            return None
        if payload[pos] & _M:
            if pos + 1 >= size:
                return None
            pic_at, bits, pic = pos, 15, ((payload[pos] & 0x7F) << 8) | payload[pos + 1]
            pos += 2
        else:
            pic_at, bits, pic = pos, 7, payload[pos] & 0x7F
            pos += 1
    tl0_at, tl0 = -1, 0
    if ext & _L:
        if pos >= size:
            return None
        tl0_at, tl0 = pos, payload[pos]
        pos += 1
    tid, sync = -1, False
    if ext & (_T | _K):
        if pos >= size:
            return None
        if ext & _T:
            tid, sync = payload[pos] >> 6, bool(payload[pos] & _Y)
    if pic_at < 0 and tl0_at < 0 and tid < 0:
        return None
    start = bool(payload[0] & _S) and not payload[0] & _PID
    return Vp8Ids(pic_at, bits, pic, tl0_at, tl0, tid, sync, start)


def newer(a: int, b: int, bits: int) -> bool:
    """``a`` is after ``b`` in a ``bits``-bit wrapping counter."""
    half = 1 << (bits - 1)
    d = (a - b) & ((1 << bits) - 1)
    return 0 < d < half


def write_ids(payload: bytes, ids: Vp8Ids, picture_id: int, tl0: int) -> bytes:
    out = bytearray(payload)
    if ids.picture_id_at >= 0:
        if ids.picture_id_bits == 15:
            out[ids.picture_id_at] = 0x80 | (picture_id >> 8)
            out[ids.picture_id_at + 1] = picture_id & 0xFF
        else:
            out[ids.picture_id_at] = picture_id & 0x7F
    if ids.tl0_at >= 0:
        out[ids.tl0_at] = tl0
    return bytes(out)
