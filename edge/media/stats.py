"""Receive statistics of one incoming RTP stream (RFC 3550 appendix A.3 and A.8).

They feed the receiver reports the node sends back to the publisher, and the
upstream NACKs for packets lost on the way in.
"""

from __future__ import annotations

from .rtcp import ReportBlock


class ReceiveStats:
    __slots__ = (
        "clock_rate",
        "packets",
        "bytes",
        "base_seq",
        "max_seq",
        "cycles",
        "jitter",
        "_transit",
        "_expected_prior",
        "_received_prior",
        "last_sr",
        "last_sr_time",
    )

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.packets = 0
        self.bytes = 0
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.jitter = 0.0
        self._transit: int | None = None
        self._expected_prior = 0
        self._received_prior = 0
        self.last_sr = 0  # middle 32 bits of the last SR's NTP time
        self.last_sr_time = 0.0

    def add(self, seq: int, timestamp: int, size: int, arrival: float) -> list[int]:
        """Count a packet; return the sequence numbers a forward jump skipped."""
        self.packets += 1
        self.bytes += size
        missing: list[int] = []
        if self.base_seq is None:
            self.base_seq = self.max_seq = seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 1 << 16
                if 1 < delta <= 128:  # a bigger jump is a restart, not loss
                    missing = [(self.max_seq + i) & 0xFFFF for i in range(1, delta)]
                self.max_seq = seq
        arrival_ts = int(arrival * self.clock_rate)
        transit = arrival_ts - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit
        return missing

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def lost(self) -> int:
        if self.base_seq is None:
            return 0
        return max(0, self.extended_max - self.base_seq + 1 - self.packets)

    def report_block(self, ssrc: int, now: float) -> ReportBlock:
        expected = 0 if self.base_seq is None else self.extended_max - self.base_seq + 1
        expected_interval = expected - self._expected_prior
        received_interval = self.packets - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.packets
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        dlsr = int((now - self.last_sr_time) * 65536) if self.last_sr else 0
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            packets_lost=min(self.lost, 0x7FFFFF),
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self.last_sr,
            dlsr=dlsr & 0xFFFFFFFF,
        )
