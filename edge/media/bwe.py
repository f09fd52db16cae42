"""Send-side bandwidth estimation for one viewer transport (GCC, as in libwebrtc).

Carlucci et al., "Congestion Control for Web Real-Time Communication" (2017)
and libwebrtc's goog_cc describe the pipeline implemented here:

1. :class:`InterArrival` groups packets sent within 5 ms into packet groups and
   yields, per completed group, the send and arrival deltas to the previous one.
2. :class:`TrendlineEstimator` accumulates (arrival delta - send delta), smooths
   it and fits a line over the last 20 groups; the slope, scaled, is compared
   against an adaptive threshold to decide overusing / normal / underusing.
3. :class:`AimdRateControl` turns that signal plus the acknowledged bitrate into
   the delay-based estimate (multiplicative increase far from the known link
   capacity, additive near it, 0.85 x acked on overuse).
4. :class:`LossBasedControl` cuts the rate when more than 10 % of packets are
   lost and lets it grow when less than 2 % are.
5. :class:`SendSideBandwidthEstimator` ties them together: the estimate is
   min(delay-based, loss-based) clamped to [min, max].

Everything is pure: time is passed in as monotonic seconds, nothing here reads
a clock, sleeps or awaits, so identical inputs give identical outputs.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

from edge.media.twcc import PacketResult

__all__ = [
    "AcknowledgedBitrateEstimator", "AimdRateControl", "BandwidthEstimate", "BandwidthUsage",
    "BweConfig", "InterArrival", "LossBasedControl", "RembEstimate", "SendSideBandwidthEstimator",
    "TrendlineEstimator",
]  # fmt: skip


@runtime_checkable
class BandwidthEstimate(Protocol):
    """What a layer selector reads: bits per second and when it last changed.

    ``updated_at`` is in the same monotonic seconds the caller feeds in, or
    ``None`` before the first update (then ``bitrate`` is the start value).
    """

    @property
    def bitrate(self) -> float: ...

    @property
    def updated_at(self) -> float | None: ...


class BandwidthUsage(enum.Enum):
    NORMAL = "normal"
    OVERUSING = "overusing"
    UNDERUSING = "underusing"


@dataclass(frozen=True, slots=True)
class BweConfig:
    """Estimator parameters; defaults are libwebrtc's. Rates in bits/s, times in s."""

    start_bitrate: float = 300_000.0
    min_bitrate: float = 30_000.0
    max_bitrate: float = 20_000_000.0
    # Packet grouping.
    burst_window: float = 0.005
    # Trendline filter.
    trendline_window: int = 20
    trendline_smoothing: float = 0.9
    trendline_gain: float = 4.0
    # Adaptive threshold (in ms of modified trend, as in libwebrtc).
    threshold_initial: float = 12.5
    k_up: float = 0.0087
    k_down: float = 0.039
    overuse_time: float = 0.010
    # AIMD.
    beta: float = 0.85
    multiplicative_increase: float = 1.08  # per second
    # Acknowledged bitrate window.
    acked_window: float = 0.5
    # Loss-based control.
    loss_low: float = 0.02
    loss_high: float = 0.10
    loss_min_packets: int = 20
    # Loss is measured over this long (libwebrtc's GoogCC: kLossUpdateInterval),
    # so a burst cuts once a second, not once per feedback: per-feedback cuts
    # took a link that dropped for two seconds down to the minimum rate.
    loss_interval: float = 1.0
    # Loss counts as congestion only while packets also queue: the one-way delay
    # is this much above its minimum over ``queue_baseline_window`` seconds.
    # Random loss (a radio link, a lossy hop) comes without a queue; cutting the
    # rate for it starves the repairs (RED, NACK) that loss calls for.
    # (50 ms: a sender's own bursts and a loaded host's scheduling show as 20-30 ms;
    # a standing queue at a bottleneck is typically 50-300 ms.)
    congestion_queue_delay: float = 0.05
    congestion_hold: float = 0.5  # ...for at least this long
    # ...except loss this heavy, which cuts whatever the queue (an outage).
    loss_always_congestion: float = 0.5
    queue_baseline_window: float = 30.0
    # Used until feedback has measured a round trip.
    initial_rtt: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.min_bitrate <= self.start_bitrate <= self.max_bitrate:
            raise ValueError("BWE bitrates must satisfy 0 < min <= start <= max")
        if self.trendline_window < 2:
            raise ValueError("BWE trendline window must be at least 2")


@dataclass(frozen=True, slots=True)
class GroupDelta:
    """Deltas between two consecutive completed packet groups (seconds, bytes)."""

    send_delta: float
    arrival_delta: float
    arrival_time: float  # last arrival of the newer group
    size: int  # bytes in the newer group


class _Group:
    __slots__ = ("first_send", "last_send", "first_arrival", "last_arrival", "size")

    def __init__(self, send_time: float, arrival_time: float, size: int) -> None:
        self.first_send = self.last_send = send_time
        self.first_arrival = self.last_arrival = arrival_time
        self.size = size


class InterArrival:
    """Groups packets by send time and yields deltas between completed groups.

    A group is the packets sent within ``burst_window`` of its first packet.
    Like libwebrtc, a packet that arrives within the burst window of the group's
    last arrival while having "caught up" (negative propagation delta) also
    joins it: that is a burst released by a queue, not a new send burst.
    Packets sent before the current group (reordered) are ignored.
    """

    _MAX_BURST_DURATION = 0.1

    def __init__(self, burst_window: float = 0.005) -> None:
        self._window = burst_window
        self._current: _Group | None = None
        self._previous: _Group | None = None

    def _joins_burst(self, group: _Group, send_time: float, arrival_time: float) -> bool:
        arrival_delta = arrival_time - group.last_arrival
        propagation_delta = arrival_delta - (send_time - group.last_send)
        return (
            propagation_delta < 0
            and arrival_delta <= self._window
            and arrival_time - group.first_arrival < self._MAX_BURST_DURATION
        )

    def add(self, send_time: float, arrival_time: float, size: int) -> GroupDelta | None:
        current = self._current
        if current is None:
            self._current = _Group(send_time, arrival_time, size)
            return None
        if send_time < current.first_send:
            return None
        if send_time - current.first_send <= self._window or self._joins_burst(
            current, send_time, arrival_time
        ):
            current.last_send = max(current.last_send, send_time)
            current.last_arrival = max(current.last_arrival, arrival_time)
            current.size += size
            return None
        delta = None
        previous = self._previous
        if previous is not None:
            delta = GroupDelta(
                current.last_send - previous.last_send,
                current.last_arrival - previous.last_arrival,
                current.last_arrival,
                current.size,
            )
        self._previous = current
        self._current = _Group(send_time, arrival_time, size)
        return delta


class TrendlineEstimator:
    """Delay-gradient trend and overuse detection (libwebrtc TrendlineEstimator).

    Works in milliseconds internally because the threshold constants (12.5,
    6..600, k_up/k_down per ms) are defined that way.
    """

    _MAX_DELTAS = 60
    _MAX_ADAPT_OFFSET = 15.0
    _THRESHOLD_MIN = 6.0
    _THRESHOLD_MAX = 600.0
    _MAX_TIME_DELTA_MS = 100.0

    def __init__(self, config: BweConfig = BweConfig()) -> None:
        self._config = config
        self._history: deque[tuple[float, float]] = deque(maxlen=config.trendline_window)
        self._num_deltas = 0
        self._first_arrival: float | None = None
        self._accumulated = 0.0
        self._smoothed = 0.0
        self._trend = 0.0
        self._previous_trend = 0.0
        self.threshold = config.threshold_initial
        self._last_threshold_update: float | None = None
        self._time_overusing = -1.0
        self._overuse_count = 0
        self.modified_trend = 0.0
        self.state = BandwidthUsage.NORMAL

    def update(self, delta: GroupDelta) -> BandwidthUsage:
        config = self._config
        send_ms = delta.send_delta * 1000.0
        arrival_ms = delta.arrival_time * 1000.0
        self._num_deltas = min(self._num_deltas + 1, 1000)
        if self._first_arrival is None:
            self._first_arrival = arrival_ms
        self._accumulated += delta.arrival_delta * 1000.0 - send_ms
        self._smoothed = (
            config.trendline_smoothing * self._smoothed
            + (1 - config.trendline_smoothing) * self._accumulated
        )
        self._history.append((arrival_ms - self._first_arrival, self._smoothed))
        if len(self._history) == self._history.maxlen:
            slope = _slope(tuple(self._history))
            if slope is not None:
                self._trend = slope
        self._detect(send_ms, arrival_ms)
        return self.state

    def _detect(self, send_ms: float, now_ms: float) -> None:
        if self._num_deltas < 2:
            self.state = BandwidthUsage.NORMAL
            return
        config = self._config
        trend = self._trend
        modified = min(self._num_deltas, self._MAX_DELTAS) * trend * config.trendline_gain
        self.modified_trend = modified
        if modified > self.threshold:
            if self._time_overusing < 0:
                # First sample over the threshold: assume half the interval.
                self._time_overusing = send_ms / 2
            else:
                self._time_overusing += send_ms
            self._overuse_count += 1
            if self._time_overusing > config.overuse_time * 1000 and self._overuse_count > 1:
                # Only when the trend is still rising: a falling one is draining.
                if trend >= self._previous_trend:
                    self._time_overusing = 0
                    self._overuse_count = 0
                    self.state = BandwidthUsage.OVERUSING
        elif modified < -self.threshold:
            self._time_overusing = -1
            self._overuse_count = 0
            self.state = BandwidthUsage.UNDERUSING
        else:
            self._time_overusing = -1
            self._overuse_count = 0
            self.state = BandwidthUsage.NORMAL
        self._previous_trend = trend
        self._update_threshold(modified, now_ms)

    def _update_threshold(self, modified: float, now_ms: float) -> None:
        if self._last_threshold_update is None:
            self._last_threshold_update = now_ms
        if abs(modified) > self.threshold + self._MAX_ADAPT_OFFSET:
            # A spike (e.g. a route change) must not drag the threshold along.
            self._last_threshold_update = now_ms
            return
        k = self._config.k_down if abs(modified) < self.threshold else self._config.k_up
        elapsed = min(now_ms - self._last_threshold_update, self._MAX_TIME_DELTA_MS)
        self.threshold += k * (abs(modified) - self.threshold) * elapsed
        self.threshold = min(max(self.threshold, self._THRESHOLD_MIN), self._THRESHOLD_MAX)
        self._last_threshold_update = now_ms


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x, or None when x does not vary.

    One pass over sums; x is taken relative to the first point so the sums
    stay small however long the transport has been running.
    """
    n = len(points)
    x0 = points[0][0]
    sx = sy = sxx = sxy = 0.0
    for x, y in points:
        x -= x0
        sx += x
        sy += y
        sxx += x * x
        sxy += x * y
    denominator = n * sxx - sx * sx
    return (n * sxy - sx * sy) / denominator if denominator > 0 else None


class AcknowledgedBitrateEstimator:
    """Receive rate of acknowledged packets over a sliding window of arrival time."""

    def __init__(self, window: float = 0.5) -> None:
        self._window = window
        self._packets: deque[tuple[float, int]] = deque()
        self._bytes = 0
        self._first_arrival: float | None = None

    def add(self, arrival_time: float, size: int) -> None:
        if self._first_arrival is None:
            self._first_arrival = arrival_time
        self._packets.append((arrival_time, size))
        self._bytes += size
        while self._packets and self._packets[0][0] <= arrival_time - self._window:
            self._bytes -= self._packets.popleft()[1]

    @property
    def bitrate(self) -> float | None:
        """Bits/s, or None until a full window of arrivals has been seen."""
        if not self._packets or self._first_arrival is None:
            return None
        if self._packets[-1][0] - self._first_arrival < self._window:
            return None
        return self._bytes * 8 / self._window


class _LinkCapacity:
    """Running mean and variance of the acked bitrate at overuse (libwebrtc)."""

    _ALPHA = 0.05

    def __init__(self) -> None:
        self.estimate: float | None = None  # kbit/s
        self._deviation = 0.4

    def reset(self) -> None:
        self.estimate = None

    def on_overuse(self, bitrate: float) -> None:
        sample = bitrate / 1000
        if self.estimate is None:
            self.estimate = sample
        else:
            self.estimate = (1 - self._ALPHA) * self.estimate + self._ALPHA * sample
        norm = max(self.estimate, 1.0)
        error = self.estimate - sample
        self._deviation = (1 - self._ALPHA) * self._deviation + self._ALPHA * error * error / norm
        self._deviation = min(max(self._deviation, 0.4), 2.5)

    def _spread(self) -> float:
        assert self.estimate is not None
        return 3 * math.sqrt(self._deviation * self.estimate)

    def upper(self) -> float:
        return math.inf if self.estimate is None else (self.estimate + self._spread()) * 1000

    def lower(self) -> float:
        return 0.0 if self.estimate is None else max(0.0, self.estimate - self._spread()) * 1000


class _RateState(enum.Enum):
    HOLD = "hold"
    INCREASE = "increase"
    DECREASE = "decrease"


class AimdRateControl:
    """Delay-based rate: additive-increase / multiplicative-decrease (libwebrtc)."""

    _FRAME_RATE = 30.0
    _PACKET_BITS = 1200 * 8
    _MIN_ADDITIVE = 4000.0  # bits/s per second

    def __init__(self, config: BweConfig = BweConfig()) -> None:
        self._config = config
        self.bitrate = config.start_bitrate
        self._state = _RateState.HOLD
        self._capacity = _LinkCapacity()
        self._last_change: float | None = None

    @property
    def near_capacity(self) -> bool:
        return self._capacity.estimate is not None

    def update(
        self, usage: BandwidthUsage, acked: float | None, now: float, rtt: float
    ) -> float:
        if usage is BandwidthUsage.OVERUSING:
            self._state = _RateState.DECREASE
        elif usage is BandwidthUsage.UNDERUSING:
            self._state = _RateState.HOLD  # let the queues drain first
        elif self._state is _RateState.HOLD:
            self._state = _RateState.INCREASE
        throughput = acked if acked is not None else self.bitrate
        new = self.bitrate
        if self._state is _RateState.INCREASE:
            if throughput > self._capacity.upper():
                self._capacity.reset()  # the link got faster: search again
            since = 0.0 if self._last_change is None else min(now - self._last_change, 1.0)
            if self.near_capacity:
                new += self._additive_rate(rtt) * since
            else:
                increase = self.bitrate * (self._config.multiplicative_increase**since - 1)
                new += max(increase, 1000.0 * since)
            # Never run ahead of what the path demonstrably carries.
            if acked is not None:
                limit = 1.5 * acked + 10_000
                if new > limit:
                    new = max(self.bitrate, limit)
            self._last_change = now
        elif self._state is _RateState.DECREASE:
            # Cut once per round trip unless throughput collapsed under us.
            since = math.inf if self._last_change is None else now - self._last_change
            if since >= min(max(rtt, 0.01), 0.2) or throughput < 0.5 * self.bitrate:
                decreased = self._config.beta * throughput
                if decreased > self.bitrate and self._capacity.estimate is not None:
                    decreased = self._config.beta * self._capacity.estimate * 1000
                if decreased < self.bitrate:
                    new = decreased
                if throughput < self._capacity.lower():
                    self._capacity.reset()
                self._capacity.on_overuse(throughput)
                self._last_change = now
            self._state = _RateState.HOLD
        self.bitrate = min(max(new, self._config.min_bitrate), self._config.max_bitrate)
        return self.bitrate

    def _additive_rate(self, rtt: float) -> float:
        """About one packet per response time, at the current frame size."""
        response_time = rtt + 0.1
        bits_per_frame = self.bitrate / self._FRAME_RATE
        packets_per_frame = math.ceil(bits_per_frame / self._PACKET_BITS)
        packet_bits = bits_per_frame / packets_per_frame
        return max(self._MIN_ADDITIVE, packet_bits / response_time)


class QueueDelay:
    """How long packets queue on the path now: the smoothed one-way delay
    (arrival minus send time, the two clocks' offset included) less its minimum
    over the last ``window`` seconds (the offset and the propagation delay).

    Smoothed over ``time_constant`` seconds of arrivals: a keyframe burst that
    queues for a moment is not a standing queue.
    """

    def __init__(self, window: float = 30.0, time_constant: float = 0.5) -> None:
        self._window = window
        self._tau = time_constant
        self._minimum: deque[tuple[float, float]] = deque()  # (send time, delay), increasing delays
        self._smoothed: float | None = None
        self._last_arrival = 0.0
        self.delay = 0.0

    def add(self, send_time: float, arrival_time: float) -> None:
        sample = arrival_time - send_time
        minimum = self._minimum
        while minimum and minimum[-1][1] >= sample:
            minimum.pop()
        minimum.append((send_time, sample))
        while minimum[0][0] < send_time - self._window:
            minimum.popleft()
        if self._smoothed is None:
            self._smoothed = sample
        else:
            gap = min(max(arrival_time - self._last_arrival, 0.0), self._tau)
            self._smoothed += (1 - math.exp(-gap / self._tau)) * (sample - self._smoothed)
        self._last_arrival = arrival_time
        self.delay = max(0.0, self._smoothed - minimum[0][1])


class LossBasedControl:
    """Loss-based rate (libwebrtc's classic SendSideBandwidthEstimation rules).

    Loss is measured over ``loss_interval`` seconds and at least
    ``loss_min_packets`` reported packets. Above
    ``loss_high`` the rate is cut by (1 - 0.5 x loss), at most once per
    300 ms + RTT; below ``loss_low`` it may grow 8 % over the lowest combined
    estimate of the last second (so it stays just above the delay-based one
    and never runs away on its own); in between it holds.
    """

    _DECREASE_INTERVAL = 0.3
    _HISTORY = 1.0

    def __init__(self, config: BweConfig = BweConfig()) -> None:
        self._config = config
        self.bitrate = config.start_bitrate
        self.loss: float | None = None
        self._lost = 0
        self._expected = 0
        self._last_decrease: float | None = None
        self._window_start: float | None = None
        self._history: deque[tuple[float, float]] = deque()  # (time, combined estimate)

    def note_estimate(self, estimate: float, now: float) -> None:
        history = self._history
        while history and history[-1][1] >= estimate:
            history.pop()  # a lower recent value dominates older higher ones
        history.append((now, estimate))
        while history and history[0][0] < now - self._HISTORY:
            history.popleft()

    def update(
        self, lost: int, expected: int, now: float, rtt: float, congested: bool = True
    ) -> float:
        """``congested``: packets queue on the path (see ``QueueDelay``); high loss
        without it is random loss and holds the rate instead of cutting it."""
        if self._window_start is None:
            self._window_start = now
        self._lost += lost
        self._expected += expected
        if (
            self._expected < self._config.loss_min_packets
            or now - self._window_start < self._config.loss_interval
        ):
            return self.bitrate
        loss = self._lost / self._expected
        self.loss = loss
        self._lost = self._expected = 0
        self._window_start = now
        if loss < self._config.loss_low:
            floor = self._history[0][1] if self._history else self.bitrate
            self.bitrate = max(self.bitrate, self._config.multiplicative_increase * floor + 1000)
        elif loss > self._config.loss_high and (congested or loss >= self._config.loss_always_congestion):
            since = math.inf if self._last_decrease is None else now - self._last_decrease
            if since >= self._DECREASE_INTERVAL + rtt:
                self.bitrate *= 1 - 0.5 * loss
                self._last_decrease = now
        self.bitrate = min(max(self.bitrate, self._config.min_bitrate), self._config.max_bitrate)
        return self.bitrate


class SendSideBandwidthEstimator:
    """The GCC estimate for one transport, fed with TWCC packet results.

    Call :meth:`on_feedback` with the results of each feedback packet (from
    :meth:`edge.media.twcc.TwccRecorder.on_feedback`) and the monotonic time it
    arrived. ``bitrate`` is min(delay-based, loss-based) within [min, max].
    """

    _RTT_SMOOTHING = 0.125

    def __init__(self, config: BweConfig = BweConfig()) -> None:
        self.config = config
        self._inter_arrival = InterArrival(config.burst_window)
        self.trendline = TrendlineEstimator(config)
        self._aimd = AimdRateControl(config)
        self._acked = AcknowledgedBitrateEstimator(config.acked_window)
        self._loss = LossBasedControl(config)
        self._queue = QueueDelay(config.queue_baseline_window)
        self._queued_since: float | None = None  # queue above the threshold since (feedback time)
        self._last_feedback = 0.0
        self._rtt: float | None = None
        self.bitrate = config.start_bitrate
        self.updated_at: float | None = None

    @property
    def delay_based_bitrate(self) -> float:
        return self._aimd.bitrate

    @property
    def loss_based_bitrate(self) -> float:
        return self._loss.bitrate

    @property
    def acked_bitrate(self) -> float | None:
        return self._acked.bitrate

    @property
    def loss(self) -> float | None:
        """The loss fraction of the last loss measurement."""
        return self._loss.loss

    @property
    def queue_delay(self) -> float:
        """Seconds packets queue on the path now (``QueueDelay``)."""
        return self._queue.delay

    @property
    def congested(self) -> bool:
        """Packets have queued on the path for a while: its loss, if any, is congestion."""
        since = self._queued_since
        return since is not None and self._last_feedback - since >= self.config.congestion_hold

    @property
    def usage(self) -> BandwidthUsage:
        return self.trendline.state

    @property
    def rtt(self) -> float:
        return self._rtt if self._rtt is not None else self.config.initial_rtt

    def on_rtt(self, rtt: float) -> None:
        """Use an RTT measured elsewhere (e.g. RTCP RR LSR/DLSR)."""
        if rtt < 0:
            raise ValueError("RTT must not be negative")
        self._rtt = rtt

    def on_feedback(self, results: Sequence[PacketResult], now: float) -> float:
        received = [r for r in results if r.arrival_time is not None]
        lost = len(results) - len(received)
        if received:
            # Feedback RTT: includes the receiver's feedback delay, an upper bound.
            sample = now - max(r.send_time for r in received)
            if sample >= 0:
                self._rtt = (
                    sample
                    if self._rtt is None
                    else (1 - self._RTT_SMOOTHING) * self._rtt + self._RTT_SMOOTHING * sample
                )
        usage = self.trendline.state
        for result in sorted(received, key=lambda r: (r.arrival_time, r.sequence)):
            assert result.arrival_time is not None
            self._acked.add(result.arrival_time, result.size)
            self._queue.add(result.send_time, result.arrival_time)
            delta = self._inter_arrival.add(result.send_time, result.arrival_time, result.size)
            if delta is not None:
                usage = self.trendline.update(delta)
                if usage is BandwidthUsage.OVERUSING:
                    # React inside the feedback: a long one may hold many groups.
                    self._aimd.update(usage, self._acked.bitrate, now, self.rtt)
        self._last_feedback = now
        if self._queue.delay < self.config.congestion_queue_delay:
            self._queued_since = None
        elif self._queued_since is None:
            self._queued_since = now
        if results:
            self._aimd.update(usage, self._acked.bitrate, now, self.rtt)
            self._loss.update(lost, len(results), now, self.rtt, self.congested)
        estimate = min(self._aimd.bitrate, self._loss.bitrate)
        self.bitrate = min(max(estimate, self.config.min_bitrate), self.config.max_bitrate)
        self._loss.note_estimate(self.bitrate, now)
        self.updated_at = now
        return self.bitrate


class RembEstimate:
    """A viewer's REMB value behind the :class:`BandwidthEstimate` interface."""

    def __init__(self, start_bitrate: float = 300_000.0) -> None:
        self.bitrate = float(start_bitrate)
        self.updated_at: float | None = None

    def on_remb(self, bitrate: int, now: float) -> None:
        if bitrate < 0:
            raise ValueError("REMB bitrate must not be negative")
        self.bitrate = float(bitrate)
        self.updated_at = now
