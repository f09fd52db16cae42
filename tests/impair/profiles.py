"""Weak-network profiles as data: what each direction of a viewer's link does.

``up`` is viewer → network (RTCP, NACKs, ICE), ``down`` is network → viewer
(the media). Loss is per direction (a 2 % profile loses 2 % of the media and
2 % of the feedback). Delay is split so that the round trip matches the
profile's RTT; the jitter profile puts its whole ±spread on the media path.

A profile may have several phases (``bandwidth drop``): apply them in order
with ``Link.apply(phase)`` at the phase's ``at_s``, or let ``play`` do it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .shaping import Impairment, Link


@dataclass(frozen=True, slots=True)
class Phase:
    at_s: float  # seconds after the profile starts
    up: Impairment
    down: Impairment


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    phases: tuple[Phase, ...]

    @property
    def rtt_ms(self) -> float:
        """Nominal round-trip time added by the first phase."""
        p = self.phases[0]
        return p.up.delay_ms + p.down.delay_ms

    @property
    def duration_s(self) -> float:
        return self.phases[-1].at_s


def _both(at_s: float = 0.0, **kw: float) -> Phase:
    return Phase(at_s, Impairment(**kw), Impairment(**kw))  # type: ignore[arg-type]


PROFILES: dict[str, Profile] = {
    # 1 Mbit/s each way, 150 ms RTT, 2 % random loss each way.
    "3G": Profile("3G", (_both(rate_kbit=1000, delay_ms=75, loss_percent=2),)),
    "lossy": Profile("lossy", (_both(loss_percent=10),)),
    "very lossy": Profile("very lossy", (_both(loss_percent=30),)),
    # 5 Mbit/s for 10 s, then 500 kbit/s for 10 s, then back to 5 Mbit/s.
    "bandwidth drop": Profile(
        "bandwidth drop",
        (_both(0, rate_kbit=5000), _both(10, rate_kbit=500), _both(20, rate_kbit=5000)),
    ),
    # Media path: 50 ms ± 30 ms (uniform, order kept); feedback path clean.
    "jitter": Profile("jitter", (Phase(0, Impairment(), Impairment(delay_ms=50, jitter_ms=30)),)),
}


async def play(link: Link, profile: Profile, time_scale: float = 1.0) -> None:
    """Apply each phase of ``profile`` at its time (scaled); returns after the last.

    The waits here *are* the schedule (a link that changes at t=10 s), not a
    stand-in for an event.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    for phase in profile.phases:
        await asyncio.sleep(max(0.0, start + phase.at_s * time_scale - loop.time()))
        await asyncio.to_thread(link.apply, phase)
