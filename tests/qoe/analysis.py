"""Quality of experience from what a viewer decoded (frame arrival times and sizes).

A *freeze* follows the W3C webrtc-stats definition (RTCInboundRtpStreamStats
freezeCount): an interval between two decoded video frames longer than
max(3 x the average frame duration, average + 150 ms), the average taken over
the preceding frames (a window of 30). Freeze time is the sum of those
intervals; the stall rate is freeze time over the time watched (first decoded
frame to the end of the run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

WINDOW = 30


@dataclass
class Freezes:
    count: int = 0
    total_s: float = 0.0
    longest_s: float = 0.0
    at: list[tuple[float, float]] = field(default_factory=list)  # (start, duration)


def freezes(times: list[float], start: float = 0.0, end: float | None = None) -> Freezes:
    """Freezes among frame times (seconds) within [start, end]."""
    out = Freezes()
    gaps: list[float] = []
    previous: float | None = None
    for t in times:
        if t < start or (end is not None and t > end):
            continue
        if previous is not None:
            gap = t - previous
            if len(gaps) >= 5:
                recent = gaps[-WINDOW:]
                avg = sum(recent) / len(recent)
                if gap > max(3 * avg, avg + 0.150):
                    out.count += 1
                    out.total_s += gap
                    out.longest_s = max(out.longest_s, gap)
                    out.at.append((round(previous, 3), round(gap, 3)))
            gaps.append(gap)
        previous = t
    return out


def stall_rate(times: list[float], end: float) -> float:
    if not times:
        return 1.0
    watched = end - times[0]
    return freezes(times).total_s / watched if watched > 0 else 0.0


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest interval without a frame inside [start, end] (edges included)."""
    inside = [t for t in times if start <= t <= end]
    points = [start, *inside, end]
    return max(b - a for a, b in zip(points, points[1:]))


def layer_at(size_log: list[tuple[float, int, int]], t: float) -> tuple[int, int] | None:
    size = None
    for at, w, h in size_log:
        if at <= t:
            size = (w, h)
    return size


def first_time(size_log: list[tuple[float, int, int]], sizes: set[tuple[int, int]], after: float = 0.0) -> float | None:
    """When the decoded size first became one of ``sizes`` at or after ``after``."""
    current = layer_at(size_log, after)
    if current in sizes:
        return after
    for at, w, h in size_log:
        if at >= after and (w, h) in sizes:
            return at
    return None
