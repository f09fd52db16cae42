"""A small deterministic link simulator for the bandwidth estimator tests.

One sender sends 1200-byte packets at the estimator's current bitrate (evenly
paced, or as video frames released in bursts by a pacer) through
a drop-tail bottleneck (capacity ``C`` bits/s, at most ``max_queue`` seconds
of queue) with a fixed one-way propagation delay. The receiver sends real
TWCC feedback bytes every ``feedback_interval``; they reach the sender one
propagation delay later (uncongested return path) and go through the real
parser, :class:`TwccRecorder` and :class:`SendSideBandwidthEstimator`.
All time is simulated; the run is a pure function of its parameters and seed.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

from edge.media.bwe import BweConfig, SendSideBandwidthEstimator
from edge.media.rtcp import TransportFeedback, parse_rtcp
from edge.media.twcc import TwccFeedback, TwccRecorder

PACKET_SIZE = 1200


@dataclass
class Link:
    capacity: float  # bits/s
    delay: float = 0.025  # one-way propagation, seconds
    max_queue: float = 0.3  # seconds of queue before drop-tail
    loss: float = 0.0  # random loss before the queue
    free_at: float = 0.0  # when the bottleneck finishes its current packet

    def transmit(self, now: float, size: int, rng: random.Random) -> float | None:
        """Arrival time at the receiver, or None if the packet is dropped."""
        if self.loss and rng.random() < self.loss:
            return None
        start = max(now, self.free_at)
        if start - now > self.max_queue:
            return None
        self.free_at = start + size * 8 / self.capacity
        return self.free_at + self.delay


@dataclass
class Simulation:
    link: Link
    config: BweConfig = field(default_factory=BweConfig)
    feedback_interval: float = 0.05
    # None: pace packets evenly at the estimate. A number: video frames at
    # that rate, each frame's packets released by a pacer at 2.5 x the
    # estimate (as libwebrtc's pacer does), so packets leave in bursts.
    frame_rate: float | None = None
    seed: int = 1
    now: float = 0.0
    trace: list[tuple[float, float]] = field(default_factory=list)  # (time, estimate)

    def __post_init__(self) -> None:
        self.bwe = SendSideBandwidthEstimator(self.config)
        self.recorder = TwccRecorder()
        self._rng = random.Random(self.seed)
        self._next_send = 0.0 if self.frame_rate is None else math.inf
        self._next_frame = 0.0 if self.frame_rate is not None else math.inf
        self._queued = 0  # packets waiting in the pacer (frame mode)
        self._frame_credit = 0.0  # bits not yet packetized (frame mode)
        self._next_feedback = self.feedback_interval
        self._in_flight: deque[tuple[int, float | None]] = deque()  # (seq, arrival)
        self._report_from = 0  # first unwrapped sequence not yet reported
        self._sent = 0
        self._feedback_count = 0
        self._to_sender: deque[tuple[float, bytes]] = deque()

    def run_until(self, end: float) -> None:
        while True:
            due = min(self._next_send, self._next_feedback, self._next_frame)
            if self._to_sender:
                due = min(due, self._to_sender[0][0])
            if due > end:
                self.now = end
                return
            self.now = due
            if self._to_sender and self._to_sender[0][0] == due:
                _, data = self._to_sender.popleft()
                (packet,) = parse_rtcp(data)
                assert isinstance(packet, TransportFeedback)
                results = self.recorder.on_feedback(packet.feedback)
                estimate = self.bwe.on_feedback(results, due)
                self.trace.append((due, estimate))
            elif due == self._next_frame:
                assert self.frame_rate is not None
                # Carry the fraction of a packet over, so the average rate
                # is the estimate even when a frame is under two packets.
                self._frame_credit += self.bwe.bitrate / self.frame_rate
                packets = int(self._frame_credit // (PACKET_SIZE * 8))
                self._frame_credit -= packets * PACKET_SIZE * 8
                self._queued += packets
                if self._queued:
                    self._next_send = min(self._next_send, due)
                self._next_frame = due + 1 / self.frame_rate
            elif due == self._next_send:
                self.recorder.send(due, PACKET_SIZE)
                self._in_flight.append((self._sent, self.link.transmit(due, PACKET_SIZE, self._rng)))
                self._sent += 1
                if self.frame_rate is None:
                    self._next_send = due + PACKET_SIZE * 8 / self.bwe.bitrate
                else:
                    self._queued -= 1
                    pacing = 2.5 * self.bwe.bitrate
                    self._next_send = due + PACKET_SIZE * 8 / pacing if self._queued else math.inf
            else:
                self._send_feedback(due)
                self._next_feedback = due + self.feedback_interval

    def _send_feedback(self, now: float) -> None:
        # The receiver knows a packet is lost once a later one has arrived.
        reported: list[float | None] = []
        last_arrived = None
        for i, (_, arrival) in enumerate(self._in_flight):
            if arrival is not None and arrival <= now:
                last_arrived = i
        if last_arrived is None:
            return
        for _ in range(last_arrived + 1):
            reported.append(self._in_flight.popleft()[1])
        arrivals = [a if a is not None and a <= now else None for a in reported]
        feedback = TwccFeedback.from_arrivals(self._report_from, arrivals, self._feedback_count)
        self._report_from += len(reported)
        self._feedback_count += 1
        data = bytes(TransportFeedback(1, 2, feedback))
        self._to_sender.append((now + self.link.delay, data))

    def estimates_between(self, start: float, end: float) -> list[float]:
        return [e for t, e in self.trace if start <= t <= end]

    def first_time_at_least(self, bitrate: float) -> float | None:
        return next((t for t, e in self.trace if e >= bitrate), None)
