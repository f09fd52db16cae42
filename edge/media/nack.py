"""Upstream NACK with retries: ask the publisher again for what stays missing.

A NACK or its retransmission can itself be lost. Each missing sequence number
is asked for when the gap is seen, and again if its repair has not arrived
after a retry interval; the interval follows the repair delay observed on this
stream (the time from a NACK to the retransmission arriving: an RTT measured
on the very path that matters), at least ``MIN_INTERVAL`` and ``DEFAULT``
until one repair has been seen. After ``MAX_TRIES`` or ``GIVE_UP`` seconds a
number is dropped: by then the viewers have asked for a keyframe.

Checked on arrivals of the same stream (a stream with losses keeps sending),
so no timer runs per stream.
"""

from __future__ import annotations

MAX_TRIES = 3
GIVE_UP = 1.0
DEFAULT = 0.100
MIN_INTERVAL = 0.020
MAX_PENDING = 512


class NackTracker:
    __slots__ = ("pending", "repair_delay", "next_due", "retries", "repaired", "abandoned")

    def __init__(self) -> None:
        # seq -> (first asked at, last asked at, tries)
        self.pending: dict[int, tuple[float, float, int]] = {}
        self.repair_delay: float | None = None
        self.next_due = 0.0
        self.retries = 0
        self.repaired = 0
        self.abandoned = 0

    @property
    def interval(self) -> float:
        if self.repair_delay is None:
            return DEFAULT
        return max(MIN_INTERVAL, 1.5 * self.repair_delay)

    def missing(self, seqs: list[int], now: float) -> list[int]:
        """A gap was seen: these are asked for now. Returns what to NACK."""
        if not self.pending:
            self.next_due = 0.0  # nothing was waiting: the schedule starts over
        for seq in seqs:
            self.pending[seq] = (now, now, 1)
        if len(self.pending) > MAX_PENDING:  # a burst beyond repair: keep the newest
            for seq in list(self.pending)[: len(self.pending) - MAX_PENDING]:
                del self.pending[seq]
                self.abandoned += 1
        self.next_due = min(self.next_due or now + self.interval, now + self.interval)
        return seqs

    def arrived(self, seq: int, now: float) -> None:
        entry = self.pending.pop(seq, None)
        if entry is None:
            return
        self.repaired += 1
        delay = now - entry[1]
        # Smoothed like an RTT estimate (RFC 6298's 1/8 gain).
        self.repair_delay = delay if self.repair_delay is None else self.repair_delay + (delay - self.repair_delay) / 8

    def due(self, now: float) -> list[int]:
        """Sequence numbers to ask for again now (call when ``now >= next_due``)."""
        interval = self.interval
        again: list[int] = []
        for seq, (first, last, tries) in list(self.pending.items()):
            if now - first > GIVE_UP or tries >= MAX_TRIES and now - last >= interval:
                del self.pending[seq]
                self.abandoned += 1
            elif now - last >= interval:
                self.pending[seq] = (first, now, tries + 1)
                again.append(seq)
        self.retries += len(again)
        self.next_due = now + interval if self.pending else 0.0
        return again
