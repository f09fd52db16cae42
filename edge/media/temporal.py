"""The temporal-layer cap of a simulcast Consumer: the first step down.

A VP8 encoding with temporal layers (Chromium sends L1T3: TIDs 0, 2, 1, 2 at
7.5, 15 and 30 frames/s) can be thinned at once, on any frame, without a
keyframe: dropping TL2 halves the frame rate, dropping TL1 too quarters it.
A switch to a lower simulcast layer must wait for that layer's keyframe (a
burst that costs more than the frames it saves, on a link that just became
short). So when the viewer's video budget falls below what its layer sends,
the cap drops first, to the most temporal layers that fit; the spatial policy
(simulcast.LayerSelector) steps down too if the shortfall lasts. The cap
rises one layer at a time, after the budget has held above the next layer's
rate with the same margin and hold time as a spatial step up.

The rates are measured per TID at ingress (``Layer.tid_bitrate``: TIDs 0..t
together). The Forwarder applies the cap (edge/media/forwarder.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .forwarder import ALL_TIDS
from .simulcast import SelectorConfig

if TYPE_CHECKING:
    from .simulcast import Layer


class TemporalPolicy:
    __slots__ = ("config", "_fits_since", "budget")

    def __init__(self, config: SelectorConfig | None = None) -> None:
        self.config = config or SelectorConfig()
        self._fits_since: float | None = None
        self.budget: int | None = None  # the last budget seen

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

    def choose(self, layer: "Layer", cap: int, now: float, *, budget: int | None, loss: float) -> int:
        """The cap this consumer should have on ``layer`` (``cap`` to keep it)."""
        self.budget = budget
        count = self.layers_of(layer)
        if budget is None or count < 2:
            self._fits_since = None
            return ALL_TIDS
        top = count - 1
        current = min(cap, top)
        if layer.tid_bitrate[current] > budget:
            self._fits_since = None
            return min(self.fit(layer, budget), current)
        if current >= top:
            return ALL_TIDS
        cfg = self.config
        if loss > cfg.loss_up_max or layer.tid_bitrate[current + 1] * cfg.up_margin > budget:
            self._fits_since = None
            return cap
        if self._fits_since is None:
            self._fits_since = now
        if now - self._fits_since < cfg.up_hold:
            return cap
        self._fits_since = None
        return ALL_TIDS if current + 1 >= top else current + 1

    def on_switch(self, layer: "Layer") -> int:
        """The cap on a layer the consumer just moved to (the last budget's fit)."""
        self._fits_since = None
        return self.fit(layer, self.budget)
