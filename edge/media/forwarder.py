"""Forwarder: per-consumer RTP sequence/timestamp rewrite.

A consumer's outgoing stream must look like one continuous stream to the viewer
whatever happens upstream: the first packet, a change of producer in the same
slot (a co-host replacing the host, later a simulcast layer switch). On each
such start the Forwarder picks offsets so that sequence numbers continue at
last+1 and timestamps advance by the wall-clock time that passed. Video starts
only on a keyframe, otherwise the viewer's decoder would show garbage.

Temporal layers (VP8): frames whose TID is above ``tid`` are not forwarded.
``tid_target`` is what the consumer's policy wants (edge/media/temporal.py);
``tid`` follows it only at the first packet of a frame: down at once (nothing
in a lower layer references a higher one), up at a layer-sync frame (Y) or a
keyframe. Each dropped packet shifts later sequence numbers down by one, each
dropped picture shifts later PictureIDs by one (a viewer that sees a PictureID
gap waits for the missing picture, as libwebrtc's VP8 reference finder does).
A late (reordered) packet from before a drop takes the offset that was in
force before it: ``seq_marks`` / ``pic_marks`` remember the last MARKS drop
points. A late packet of a dropped layer cannot be taken back out of the
numbering: it leaves a one-packet hole between frames, which a decoder skips.
Packets missing inside a dropped picture, or at its head right after a frame
that ended (the picture numbers say nothing else is missing), are counted as
dropped with it, so upstream loss there leaves no hole.
"""

from __future__ import annotations

import random

from .rtp import seq_diff, seq_newer
from .vp8 import Vp8Ids, newer, write_ids


# How far behind the newest outgoing packet the floor and the keyframe mark may be.
TRAIL = 0x4000
# Every temporal layer VP8 can name (a 2-bit TID): nothing is dropped.
ALL_TIDS = 3
# Drop points remembered for late packets; a packet from before the oldest
# (once older ones were forgotten) is not forwarded.
MARKS = 64

class Forwarder:
    __slots__ = (
        "video",
        "clock_rate",
        "source",
        "seq_offset",
        "ts_offset",
        "last_seq",
        "last_ts",
        "last_wall",
        "started",
        "floor_seq",
        "key_seq",
        "vp8_sync",
        "pic_offset",
        "tl0_offset",
        "last_pic",
        "last_tl0",
        "tid",
        "tid_target",
        "in_last",
        "in_dropped",
        "in_end",
        "drop_pic",
        "pic_in_last",
        "seq_marks",
        "pic_marks",
        "marks_lost",
    )

    def __init__(self, *, video: bool, clock_rate: int) -> None:
        self.video = video
        self.clock_rate = clock_rate
        self.source: object | None = None
        self.seq_offset = 0
        self.ts_offset = 0
        self.last_seq: int | None = None
        self.last_ts = 0
        self.last_wall = 0.0
        self.started = False
        # Outgoing seq of the packet the current source started with. A late
        # packet from before it (reordered, or retransmitted upstream) would map
        # onto sequence numbers already sent for the previous source: re-using
        # them would re-encrypt under an SRTP nonce already used. Dropped.
        self.floor_seq = 0
        # Outgoing seq of the latest keyframe's first packet (video): a NACK for
        # a packet before it is not served, since nothing after it needs it.
        self.key_seq: int | None = None
        # VP8 PictureID / TL0PICIDX continuity (edge/media/vp8.py): offsets are
        # set again on the first VP8 packet after each (re)start (vp8_sync).
        self.vp8_sync = True
        self.pic_offset = 0
        self.tl0_offset = 0
        self.last_pic: int | None = None  # last PictureID sent (15-bit space)
        self.last_tl0: int | None = None
        # Temporal layers (see the module docstring).
        self.tid = ALL_TIDS
        self.tid_target = ALL_TIDS
        self.in_last: int | None = None  # newest incoming seq since the (re)start
        self.in_dropped = False  # ...and it was dropped
        self.in_end = False  # ...and it ended its frame (RTP marker)
        self.drop_pic: int | None = None  # incoming PictureID of the last dropped picture
        self.pic_in_last: int | None = None  # newest incoming PictureID
        self.seq_marks: list[tuple[int, int]] = []  # (incoming seq dropped, seq_offset before)
        self.pic_marks: list[tuple[int, int]] = []  # (incoming PictureID dropped, pic_offset before)
        self.marks_lost = False  # a seq mark was forgotten since the (re)start

    def vp8(self, payload: bytes, ids: Vp8Ids) -> bytes:
        """``payload`` (a VP8 packet just mapped) with this consumer's continuous
        PictureID and TL0PICIDX."""
        if self.vp8_sync:
            self.vp8_sync = False
            if ids.picture_id_at >= 0:
                mod = (1 << ids.picture_id_bits) - 1
                self.pic_offset = 0 if self.last_pic is None else (self.last_pic + 1 - ids.picture_id) & mod
            if ids.tl0_at >= 0:
                self.tl0_offset = 0 if self.last_tl0 is None else (self.last_tl0 + 1 - ids.tl0) & 0xFF
        pic = tl0 = 0
        pic_offset = self.pic_offset
        if ids.picture_id_at >= 0:
            bits = ids.picture_id_bits
            last_in = self.pic_in_last
            if last_in is None or ids.picture_id == last_in or newer(ids.picture_id, last_in, bits):
                self.pic_in_last = ids.picture_id
            else:
                # A late packet: the offset in force before the drops after it.
                for mark, before in reversed(self.pic_marks):
                    if not newer(mark, ids.picture_id, bits):
                        break
                    pic_offset = before
            pic = (ids.picture_id + pic_offset) & ((1 << bits) - 1)
            if self.last_pic is None or newer(pic, self.last_pic & ((1 << bits) - 1), bits):
                self.last_pic = pic
        if ids.tl0_at >= 0:
            tl0 = (ids.tl0 + self.tl0_offset) & 0xFF
            if self.last_tl0 is None or newer(tl0, self.last_tl0, 8):
                self.last_tl0 = tl0
        if not pic_offset and not self.tl0_offset:
            return payload
        return write_ids(payload, ids, pic, tl0)

    def stale(self, seq: int) -> bool:
        """A packet from before the latest keyframe: not worth a retransmission."""
        return self.key_seq is not None and seq_diff(seq, self.key_seq) < 0

    @property
    def waiting_for_keyframe(self) -> bool:
        return self.video and not self.started

    def switch(self, source: object, clock_rate: int) -> None:
        """Take packets from another source from its next keyframe on."""
        self.source = source
        self.clock_rate = clock_rate
        self.started = False

    def map(
        self, seq: int, ts: int, keyframe: bool, now: float, ids: Vp8Ids | None = None, marker: bool = False
    ) -> tuple[int, int] | None:
        """Outgoing (seq, ts) for an incoming packet, or None to skip it.

        ``ids``: the VP8 descriptor's fields, for temporal-layer dropping;
        ``marker``: the packet's RTP marker (it ends its frame)."""
        if not self.started:
            if self.video and not keyframe:
                return None
            self._rebase(seq, ts, now)
        newest = self.in_last is None or seq_newer(seq, self.in_last)
        if ids is not None and ids.tid >= 0 and self._drop_temporal(seq, ids, keyframe, newest, marker):
            return None
        if newest:
            self.in_last = seq
            self.in_dropped = False
            self.in_end = marker
            offset = self.seq_offset
        else:
            # A late packet: the offset in force before the drops after it.
            offset = self.seq_offset
            for mark, before in reversed(self.seq_marks):
                if seq_diff(seq, mark) >= 0:
                    break
                offset = before
            else:
                if self.marks_lost and self.seq_marks:
                    return None
        out_seq = (seq + offset) & 0xFFFF
        if seq_diff(out_seq, self.floor_seq) < 0:
            return None
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        if keyframe and self.video and (self.key_seq is None or seq_newer(out_seq, self.key_seq)):
            self.key_seq = out_seq
        if seq_newer(out_seq, self.last_seq):  # type: ignore[arg-type]
            self.last_seq = out_seq
            self.last_ts = out_ts
            self.last_wall = now
            # The floor and the keyframe mark trail the newest packet by at most
            # TRAIL: compared in a 16-bit space, a mark 32768 packets behind
            # would look ahead, and the stream would be cut (or its NACKs
            # judged stale) for the next 32768 packets.
            if seq_diff(out_seq, self.floor_seq) > TRAIL:
                self.floor_seq = (out_seq - TRAIL) & 0xFFFF
            if self.key_seq is not None and seq_diff(out_seq, self.key_seq) > TRAIL:
                self.key_seq = (out_seq - TRAIL) & 0xFFFF
        return out_seq, out_ts

    def _drop_temporal(self, seq: int, ids: Vp8Ids, keyframe: bool, newest: bool, marker: bool) -> bool:
        """Whether this packet's temporal layer is not forwarded now; a dropped
        newest packet shifts the numbering of what follows."""
        if ids.start and newest:
            if keyframe or self.tid_target < self.tid:
                self.tid = self.tid_target
            elif self.tid < ids.tid <= self.tid_target and ids.sync:
                self.tid = ids.tid
        if ids.tid <= self.tid:
            return False
        if not newest:
            return True
        gap = seq_diff(seq, self.in_last) - 1 if self.in_last is not None else 0
        same_picture = ids.picture_id_at >= 0 and ids.picture_id == self.drop_pic
        # The dropped frame's first packets are missing, and nothing else is: the
        # last packet ended its frame, and this picture is the next one.
        head = (
            gap > 0
            and not ids.start
            and self.in_end
            and ids.picture_id_at >= 0
            and self.pic_in_last is not None
            and ids.picture_id == (self.pic_in_last + 1) & ((1 << ids.picture_id_bits) - 1)
        )
        if self.in_dropped and (gap == 0 or same_picture):
            # The same run of dropped packets: the packets missing inside it
            # belong to the dropped picture too.
            shift = 1 + gap
        else:
            # The missing head (if that is what the gap is) is dropped with it.
            first = (self.in_last + 1) & 0xFFFF if head else seq  # type: ignore[operator]
            self.seq_marks.append((first, self.seq_offset))
            if len(self.seq_marks) > MARKS:
                del self.seq_marks[0]
                self.marks_lost = True
            shift = 1 + gap if head else 1
        self.seq_offset = (self.seq_offset - shift) & 0xFFFF
        self.in_last = seq
        self.in_dropped = True
        self.in_end = marker
        if ids.picture_id_at >= 0:
            bits = ids.picture_id_bits
            pic = ids.picture_id
            last_in = self.pic_in_last
            if pic != self.drop_pic and (last_in is None or newer(pic, last_in, bits)):
                self.pic_marks.append((pic, self.pic_offset))
                if len(self.pic_marks) > MARKS:
                    del self.pic_marks[0]
                self.pic_offset = (self.pic_offset - 1) & ((1 << bits) - 1)
                self.pic_in_last = pic
            self.drop_pic = pic
        return True

    def _rebase(self, seq: int, ts: int, now: float) -> None:
        if self.last_seq is None:
            # Random origins, as RFC 3550 asks of a new stream.
            self.seq_offset = (random.getrandbits(15) - seq) & 0xFFFF
            self.ts_offset = (random.getrandbits(32) - ts) & 0xFFFFFFFF
            self.last_seq = (seq + self.seq_offset - 1) & 0xFFFF
        else:
            self.seq_offset = (self.last_seq + 1 - seq) & 0xFFFF
            elapsed = max(1, int((now - self.last_wall) * self.clock_rate))
            self.ts_offset = (self.last_ts + elapsed - ts) & 0xFFFFFFFF
        self.floor_seq = (seq + self.seq_offset) & 0xFFFF
        self.started = True
        self.vp8_sync = True
        self.tid = self.tid_target
        self.in_last = None
        self.in_dropped = self.in_end = False
        self.drop_pic = self.pic_in_last = None
        self.seq_marks = []
        self.pic_marks = []
        self.marks_lost = False
