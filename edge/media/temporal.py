"""The temporal-layer cap of a simulcast Consumer: the first step down.

A VP8 encoding with temporal layers (Chromium sends L1T3: TIDs 0, 2, 1, 2 at
7.5, 15 and 30 frames/s) can be thinned at once, on any frame, without a
keyframe: dropping TL2 halves the frame rate, dropping TL1 too quarters it.
A switch to a lower simulcast layer must wait for that layer's keyframe (a
burst that costs more than the frames it saves, on a link that just became
short). So when the viewer's estimate *falls* (by a quarter from one
assessment to the next) and its video budget is then below what its layer
sends, the cap drops first, at once, to the most temporal layers that fit. Falls in a
viewer's first 6 s do not count (its estimate starts from a guess). A
budget that stands low without falling is left to the spatial policy: an
estimate lags what is sent and may be bounded by it, and a layer's rate
wobbles with its keyframes (measured: a 10 %-loss viewer whose TWCC estimate
started low was otherwise held at TL0, 5 frames/s, for good); the spatial policy
(simulcast.LayerSelector) steps down too if the shortfall lasts. The cap
rises one layer at a time after the budget has allowed it for 2 s: when the
next layer's rate fits it with the spatial step-up's margin (x1.15), or when
the budget stands PROBE_ROOM above what is sent now. An estimate cannot show
much more room than it is sent (see PROBE_ROOM), so that second rise is a
probe. It is taken back if the budget has not followed it within 2.5 s (or
falls), and the next then waits twice as long (up to 16 s). Loss is not an
input: random loss is no reason to send fewer frames, and congestion lowers
the budget.

The rates are measured per TID at ingress (``Layer.tid_bitrate``: TIDs 0..t
together). The Forwarder applies the cap (edge/media/forwarder.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .forwarder import ALL_TIDS
from .simulcast import SelectorConfig

if TYPE_CHECKING:
    from .simulcast import Layer


# An estimate this far above what the viewer is sent may only be bounded by it
# (a TWCC estimate stays within 1.5x the acknowledged rate, a REMB close to the
# incoming rate): it cannot show room for the next temporal layer, so the cap
# rises anyway, as a probe that the down rule takes back if the link cannot carry it.
PROBE_ROOM = 1.3
# Seconds after a consumer's first estimate during which falls do not count: a
# new viewer's estimate starts from a guess (TWCC: 300 kbit/s) and its first
# corrections down are not the link changing.
SETTLE = 6.0


class TemporalPolicy:
    __slots__ = (
        "config", "_since", "_hold", "_raised_at", "_fell_at", "_first", "budget", "probes", "failed_probes",
    )

    def __init__(self, config: SelectorConfig | None = None) -> None:
        self.config = config or SelectorConfig()
        self._since: float | None = None  # the budget has allowed a rise since then
        self._hold = self.config.up_hold  # how long it must (doubles after a failed probe)
        self._raised_at: float | None = None  # the last rise, until it held
        self._fell_at = -1e9  # the budget last fell by a quarter or more from one tick to the next
        self._first: float | None = None  # the first budget seen
        self.budget: int | None = None  # the last budget seen
        self.probes = 0
        self.failed_probes = 0

    @staticmethod
    def layers_of(layer: "Layer") -> int:
        """How many temporal layers there are to choose from (0 or 1: none)."""
        return layer.temporal_layers if any(layer.tid_bitrate) else 0

    def fit(self, layer: "Layer", budget: int | None) -> int:
        """The cap for ``layer`` under ``budget`` now: every layer when its full
        rate fits (or nothing is known), else the most TIDs that fit, at least TL0."""
        count = self.layers_of(layer)
        if budget is None or count < 2 or layer.tid_bitrate[count - 1] <= budget:
            return ALL_TIDS
        for tid in range(count - 2, -1, -1):
            if layer.tid_bitrate[tid] <= budget:
                return tid
        return 0

    def choose(self, layer: "Layer", cap: int, now: float, *, budget: int | None) -> int:
        """The cap this consumer should have on ``layer`` (``cap`` to keep it)."""
        cfg = self.config
        if budget is not None and self._first is None:
            self._first = now
        settled = self._first is not None and now - self._first >= SETTLE
        if settled and budget is not None and self.budget is not None and budget < self.budget * cfg.overuse_drop:
            self._fell_at = now
        self.budget = budget
        count = self.layers_of(layer)
        if budget is None or count < 2:
            self._since = None
            return ALL_TIDS
        top = count - 1
        current = min(cap, top)
        rates = layer.tid_bitrate
        if rates[current] > budget:
            # Short, and the link changed: the estimate fell. A standing low
            # estimate is no reason (it may only lag or be bounded by what is
            # sent, and a layer's rate wobbles with its keyframes): that is the
            # spatial policy's to judge, with its trials. A rise is also taken
            # back when the budget has not followed it within 2.5 s.
            fell = now - self._fell_at < cfg.overuse_memory
            unfollowed = self._raised_at is not None and now - self._raised_at >= cfg.trial_hold
            if not (fell or unfollowed):
                return cap
            if self._raised_at is not None:
                # The last rise did not hold: wait longer before the next.
                self.failed_probes += 1
                self._hold = min(self._hold * 2, cfg.trial_backoff_max)
            self._raised_at = None
            self._since = now  # the hold counts from the fall
            return min(self.fit(layer, budget), current)
        if self._raised_at is not None and now - self._raised_at >= cfg.trial_hold:
            self._raised_at = None
            self._hold = cfg.up_hold
        if current >= top:
            return ALL_TIDS
        fits = rates[current + 1] * cfg.up_margin <= budget
        if not fits and budget < rates[current] * PROBE_ROOM:
            self._since = None
            return cap
        if self._since is None:
            self._since = now
        if now - self._since < self._hold:
            return cap
        self._since = None
        self._raised_at = now
        if not fits:
            self.probes += 1
        return ALL_TIDS if current + 1 >= top else current + 1

    def on_switch(self, layer: "Layer") -> int:
        """The cap on a layer the consumer just moved to (the last budget's fit)."""
        self._since = self._raised_at = None
        return self.fit(layer, self.budget)
