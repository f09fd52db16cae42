"""The weak-network profiles' pass criteria (issue: weak-network adaptation), as code.

Each check takes a Chromium viewer's result (tests/qoe/browser.py: the
browser's own freeze counters and decoded sizes) and returns (passed, what was
measured). tests/qoe/test_profiles.py asserts all of them; bench/qoe.py
tabulates them into bench/RESULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .browser import BrowserQoe

LOW_OR_MID = {"q", "h"}


@dataclass(frozen=True)
class Scenario:
    profile: str
    seconds: float
    clear_at: float | None = None  # the impairment ends then
    # The viewer joins on a clean link and the profile starts at its first frame
    # (instead of joining through the impaired link). For 30 % loss: what the
    # issue's criteria judge is playback under loss, and joining through 30 %
    # loss is a problem of its own (DTLS retransmission backoff, TCP for the
    # page and the WHEP request): measured there, a fifth of the joins take over
    # a minute; see docs/weak-networks.md.
    join_clean: bool = False


SCENARIOS = {
    "3G": Scenario("3G", 20),
    "lossy": Scenario("lossy", 15),
    "very lossy": Scenario("very lossy", 16, clear_at=8, join_clean=True),
    # The link is back at 20 s; watched until 36 s, so that "back up within 15 s" is seen whole.
    "bandwidth drop": Scenario("bandwidth drop", 36),
    "jitter": Scenario("jitter", 15),
}

Check = Callable[[BrowserQoe], tuple[bool, str]]


def low_or_mid_within(seconds: float) -> Check:
    def check(r: BrowserQoe) -> tuple[bool, str]:
        t = r.first_time(LOW_OR_MID)
        return t is not None and t <= seconds, f"low/mid at {t} s"
    return check


def stall_rate_below(limit: float) -> Check:
    def check(r: BrowserQoe) -> tuple[bool, str]:
        return r.stall_rate < limit, f"stall rate {r.stall_rate:.1%}"
    return check


def keeps_decoding(min_fps: float) -> Check:
    def check(r: BrowserQoe) -> tuple[bool, str]:
        fps = r.fps()
        return fps >= min_fps, f"{fps:.1f} fps decoded"
    return check


def recovers_after(clear_at: float, within: float) -> Check:
    def check(r: BrowserQoe) -> tuple[bool, str]:
        t = r.smooth_from(clear_at)
        took = None if t is None else t - clear_at
        return took is not None and took <= within, f"smooth {took if took is None else round(took, 1)} s after loss ended"
    return check


def audio_concealed_below(limit: float, start: float = 0.0, end: float | None = None) -> Check:
    def check(r: BrowserQoe) -> tuple[bool, str]:
        c = r.audio_concealed(start, end)
        return c < limit, f"audio concealed {c:.1%}"
    return check


def steps_down_within(at: float, within: float) -> Check:
    def check(r: BrowserQoe) -> tuple[bool, str]:
        before = r.layer_at(at)
        order = ["q", "h", "f"]
        lower = set(order[: order.index(before)]) if before in order else set()
        t = r.first_time(lower, after=at) if lower else None
        took = None if t is None else round(t - at, 1)
        return took is not None and took <= within, f"{before} -> lower after {took} s"
    return check


def back_up_within(drop_at: float, recover_at: float, within: float) -> Check:
    """Back on the layer it had before the drop (or a higher one) within ``within``
    seconds of the link recovering (0 if it never left it or is there already)."""
    def check(r: BrowserQoe) -> tuple[bool, str]:
        before = r.layer_at(drop_at)
        order = ["q", "h", "f"]
        wanted = set(order[order.index(before) :]) if before in order else set()
        t = r.first_time(wanted, after=recover_at) if wanted else None
        took = None if t is None else round(t - recover_at, 1)
        return took is not None and took <= within, f"{before} again after {took} s"
    return check


def longest_freeze_below(limit: float) -> Check:
    def check(r: BrowserQoe) -> tuple[bool, str]:
        longest = r.longest_freeze()
        return longest < limit, f"longest freeze ~{longest:.2f} s"
    return check


def freeze_rate_below(limit: float) -> Check:
    return stall_rate_below(limit)


CRITERIA: dict[str, dict[str, Check]] = {
    "3G": {
        "low or mid layer within 5 s": low_or_mid_within(5),
        "stall rate < 2%": stall_rate_below(0.02),
    },
    "lossy": {
        "video keeps decoding": keeps_decoding(10),
        "freeze time < 2% of watch time": freeze_rate_below(0.02),
    },
    "very lossy": {
        "audio continuous (concealment < 5% while lossy)": audio_concealed_below(0.05, 0, 8),
        "video recovers within 2 s after loss ends": recovers_after(8, 2),
    },
    "bandwidth drop": {
        "step down within 3 s": steps_down_within(10, 3),
        "back up within 15 s": back_up_within(10, 20, 15),
        "no freeze > 1 s": longest_freeze_below(1.0),
    },
    "jitter": {
        "no freezes attributable to reordering (none at all)": lambda r: (
            r.last["freezeCount"] == 0, f"{r.last['freezeCount']} freezes, {r.last['totalFreezesDuration']:.2f} s"
        ),
    },
}
