"""Forwarder: per-consumer RTP sequence/timestamp rewrite.

A consumer's outgoing stream must look like one continuous stream to the viewer
whatever happens upstream: the first packet, a change of producer in the same
slot (a co-host replacing the host, later a simulcast layer switch). On each
such start the Forwarder picks offsets so that sequence numbers continue at
last+1 and timestamps advance by the wall-clock time that passed. Video starts
only on a keyframe, otherwise the viewer's decoder would show garbage.
"""

from __future__ import annotations

import random

from .rtp import seq_diff, seq_newer
from .vp8 import Vp8Ids, newer, write_ids


# How far behind the newest outgoing packet the floor and the keyframe mark may be.
TRAIL = 0x4000

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
        if ids.picture_id_at >= 0:
            bits = ids.picture_id_bits
            pic = (ids.picture_id + self.pic_offset) & ((1 << bits) - 1)
            if self.last_pic is None or newer(pic, self.last_pic & ((1 << bits) - 1), bits):
                self.last_pic = pic
        if ids.tl0_at >= 0:
            tl0 = (ids.tl0 + self.tl0_offset) & 0xFF
            if self.last_tl0 is None or newer(tl0, self.last_tl0, 8):
                self.last_tl0 = tl0
        if not self.pic_offset and not self.tl0_offset:
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

    def map(self, seq: int, ts: int, keyframe: bool, now: float) -> tuple[int, int] | None:
        """Outgoing (seq, ts) for an incoming packet, or None to skip it."""
        if not self.started:
            if self.video and not keyframe:
                return None
            self._rebase(seq, ts, now)
        out_seq = (seq + self.seq_offset) & 0xFFFF
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
