"""Simulcast: the layers of a video Producer, and choosing one per Consumer.

A simulcast publisher sends one video track as several encodings (layers),
each its own SSRC tagged with an rtp-stream-id (rid). The node keeps one
``Layer`` per rid, forwards each consumer from exactly one of them, and moves
a consumer between layers only on a keyframe of the new layer (the Forwarder
keeps the outgoing stream continuous across the switch).

``LayerSelector`` is the per-consumer policy. Inputs: the viewer's bandwidth
estimate (REMB, or the node's TWCC estimate), the measured bitrate of each
layer, the viewer's loss, and whether each layer is being sent at all (a
browser stops its upper layers when its own uplink is short). Rules:

* audio first: the video budget is the estimate minus the audio the viewer gets;
* down at once when the current layer does not fit the budget (or loss is
  high), to the best layer that fits;
* up only after the budget has held above the next layer's bitrate (with a
  margin) for ``up_hold`` seconds, and never right after a step down.

A receive-side REMB estimate lags what the viewer receives and cannot grow
much past it (libwebrtc's AIMD clamps it to about 1.5x the incoming rate; in
practice Chromium reports 1.1-1.3x), and a browser may send no REMB at all.
So a viewer on a low layer never "sees" room for a higher one. Instead of
probing with padding, the selector makes a *trial* step up while the viewer
takes its current layer without loss and its estimate is not falling; a trial
that makes loss rise or the estimate fall (over-use) goes back at once and the
next waits twice as long (exponential back-off, capped). A trial that held is
kept: the rate it showed the link carries counts as room even while the
lagging estimate catches up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .keyframe import KeyframeRequester
from .nack import NackTracker
from .stats import ReceiveStats

if TYPE_CHECKING:
    from .consumer import Consumer


class Layer:
    """One simulcast encoding of a Producer: a forwarding source of its own.

    Has the attributes the data planes read from a forwarding source
    (``consumers``, ``video``, ``audio_level_id``, ``closed``).
    """

    video = True
    audio_level_id = None

    def __init__(
        self,
        *,
        rid: str,
        index: int,
        clock_rate: int,
        send_pli: Callable[["Layer"], None],
        keyframe_interval: float,
    ) -> None:
        self.rid = rid
        self.index = index  # 0 = lowest quality
        self.ssrc: int | None = None  # learnt from the first packet carrying this rid
        self.rtx_ssrc: int | None = None
        self.consumers: list["Consumer"] = []  # forwarded from this layer now
        self.pending: list["Consumer"] = []  # switching to this layer at its next keyframe
        self.stats = ReceiveStats(clock_rate)
        self.nacks = NackTracker()
        self.keyframes = KeyframeRequester(lambda: send_pli(self), keyframe_interval)
        self.keyframes_seen = 0
        # Temporal layers the publisher sends in this encoding (VP8 TIDs seen + 1; 0: none),
        # the bytes received per TID, and the bit/s of TIDs 0..t together (edge/media/temporal.py).
        self.temporal_layers = 0
        self.tid_bytes = [0, 0, 0, 0]
        self.tid_bitrate = [0, 0, 0, 0]
        self._tid_bytes_at_tick = [0, 0, 0, 0]
        self.last_packet = 0.0
        self.bitrate = 0  # bit/s over the last measuring window
        self._bytes_at_tick = 0
        self._tick_at = 0.0
        self.producer: object = None  # the Producer this layer belongs to
        self.closed = False

    @property
    def vp8(self) -> bool:
        return bool(getattr(self.producer, "vp8", False))

    def active(self, now: float, idle: float = 1.0) -> bool:
        return self.ssrc is not None and now - self.last_packet < idle

    def measure(self, now: float) -> None:
        """Called about once a second: the layer's bitrate since the last call."""
        if self._tick_at:
            elapsed = now - self._tick_at
            if elapsed > 0.2:
                sent = self.stats.bytes - self._bytes_at_tick
                # Smoothed, so that one large keyframe does not look like a new rate.
                rate = int(sent * 8 / elapsed)
                self.bitrate = rate if not self.bitrate else int(0.5 * self.bitrate + 0.5 * rate)
                if self.temporal_layers > 1:
                    self._measure_tids(elapsed)
        self._bytes_at_tick = self.stats.bytes
        self._tick_at = now
        if not self.active(now, idle=2.0):
            self.bitrate = 0
            self.tid_bitrate = [0, 0, 0, 0]

    def _measure_tids(self, elapsed: float) -> None:
        total = 0
        for tid in range(4):
            sent = self.tid_bytes[tid] - self._tid_bytes_at_tick[tid]
            self._tid_bytes_at_tick[tid] = self.tid_bytes[tid]
            total += int(sent * 8 / elapsed)
            old = self.tid_bitrate[tid]
            self.tid_bitrate[tid] = total if not old else int(0.5 * old + 0.5 * total)

    def describe(self, now: float) -> dict[str, object]:
        return {
            "rid": self.rid,
            "index": self.index,
            "ssrc": self.ssrc,
            "active": self.active(now),
            "bitrate": self.bitrate,
            "packets": self.stats.packets,
            "packets_lost": self.stats.lost,
            "keyframes": self.keyframes_seen,
            "temporal_layers": self.temporal_layers,
            "temporal_bitrates": self.tid_bitrate[: self.temporal_layers] if self.temporal_layers > 1 else [],
            "consumers": len(self.consumers),
        }

    def close(self) -> None:
        self.closed = True
        self.keyframes.close()


@dataclass(slots=True)
class SelectorConfig:
    # A layer "fits" when its bitrate x up_margin is within the video budget.
    up_margin: float = 1.15
    up_hold: float = 2.0  # seconds a step up must keep fitting before it is taken
    loss_down: float = 0.10  # fraction lost at which we step down one layer
    loss_up_max: float = 0.02  # no step up while loss is above this
    # A trial targets at most this x what the viewer takes now (its estimate,
    # its layer, or a proven rate): with an estimate, and without one.
    trial_reach: float = 2.2
    trial_reach_blind: float = 4.0
    trial_hold: float = 2.5  # seconds a trial must hold to be kept
    trial_loss: float = 0.05  # loss during a trial that fails it
    trial_grace: float = 1.2  # seconds after a trial starts during which loss does not count
    # ...unless it is this heavy: a clipped keyframe burst loses a part of one
    # frame, a link that cannot carry the layer at all loses most of them.
    trial_heavy_loss: float = 0.3
    trial_backoff: float = 2.0  # first wait before a trial; doubles on each failure
    trial_backoff_max: float = 16.0
    overuse_drop: float = 0.75  # an estimate below this x the last one is an over-use signal
    overuse_memory: float = 3.0  # seconds an over-use signal counts
    estimate_hold: float = 2.0  # seconds a fallen estimate must stay below the layer (no loss)
    trend_window: float = 3.0  # seconds over which a rising estimate is seen
    blind_after: float = 4.0  # seconds without any estimate before trials go blind
    # An estimate below a layer the viewer proved it carries, after this long
    # without any loss, says nothing about the link (a receive-side estimate a
    # congestion episode crushed climbs back at a few % a second): trials then
    # go as if there were none.
    stale_estimate_after: float = 6.0


class LayerSelector:
    """Per-consumer simulcast layer policy (see the module docstring)."""

    __slots__ = (
        "config",
        "_fits_since",
        "_last_down",
        "_trial",
        "_backoff",
        "_proven",
        "_last_budget",
        "_last_overuse",
        "_loss_before",
        "_below_since",
        "_history",
        "_joined",
        "_clean_since",
        "trials",
        "failed_trials",
    )

    def __init__(self, config: SelectorConfig | None = None) -> None:
        self.config = config or SelectorConfig()
        self._fits_since: float | None = None
        self._last_down = 0.0
        # (origin index, started, budget then: None for a blind trial)
        self._trial: tuple[int, float, int | None] | None = None
        self._backoff = self.config.trial_backoff
        # Video bit/s the viewer was shown to carry without loss (a kept trial):
        # a lagging receive-side estimate is not a reason to step down from it.
        self._proven = 0
        self._last_budget: int | None = None
        self._last_overuse = -1e9
        self._loss_before = 0.0
        self._below_since: float | None = None
        self._history: list[tuple[float, int]] = []  # (time, budget) over the trend window
        self._joined = 0.0
        self._clean_since: float | None = None  # no loss at all since then
        self.trials = 0
        self.failed_trials = 0

    @property
    def in_trial(self) -> bool:
        return self._trial is not None

    def _rising(self, now: float) -> bool:
        """The estimate grew by 3 % and 10 kbit/s or more over the trend window.

        (The budget is the estimate less the audio's measured rate: on a tiny
        budget the audio's own wobble would otherwise look like a climb.)"""
        if len(self._history) < 2 or now - self._history[0][0] < self.config.trend_window / 2:
            return False
        first, last = self._history[0][1], self._history[-1][1]
        return last >= first * 1.03 and last - first >= 10_000

    def initial(self, layers: list[Layer], now: float, budget: int | None) -> Layer | None:
        """The layer a new consumer starts on: the best that fits a known budget, else the lowest."""
        self._last_down = now  # the first trial step up waits its back-off after joining
        self._joined = now
        live = [layer for layer in layers if layer.active(now)]
        if not live:
            return layers[0] if layers else None
        if budget is None:
            return live[0]
        fitting = [layer for layer in live if layer.bitrate * self.config.up_margin <= budget]
        return fitting[-1] if fitting else live[0]

    def choose(
        self, layers: list[Layer], current: Layer, now: float, *, budget: int | None, loss: float
    ) -> Layer:
        """The layer this consumer should be on now (``current`` to stay).

        ``budget``: bit/s the viewer can take for this video (its estimate
        minus its audio), None without an estimate (then steps up are trials
        judged by loss alone); ``loss``: its fraction lost.
        """
        cfg = self.config
        live = [layer for layer in layers if layer.active(now)]
        if not live:
            return current
        if current not in live:
            # The publisher stopped sending this layer: the best live one below, else the lowest.
            self._trial = None
            below = [layer for layer in live if layer.index < current.index]
            return below[-1] if below else live[0]
        known = budget is not None
        if loss > 0:
            self._clean_since = None
        elif self._clean_since is None:
            self._clean_since = now
        if budget is None and now - self._joined < cfg.blind_after:
            return current  # the viewer's first estimate may still be on its way
        if budget is None:
            # No estimate from this viewer (a browser may send no REMB at all):
            # climb by trials, judged by its loss alone.
            budget = 1 << 40
        overuse = known and self._last_budget is not None and budget < self._last_budget * cfg.overuse_drop
        if known:
            self._last_budget = budget
            self._history.append((now, budget))
            while self._history and now - self._history[0][0] > cfg.trend_window:
                self._history.pop(0)
        if overuse:
            self._proven = 0
            self._last_overuse = now

        if self._trial is not None:
            origin, started, before = self._trial
            # Loss is judged against the loss before the trial: a link that
            # loses 2 % at random is not congested by the new layer.
            # The new layer's first keyframe is a burst that a shallow
            # bottleneck queue may clip, and a browser's estimate dips on it:
            # neither counts in the grace period.
            settled = now - started >= cfg.trial_grace
            lossy = (settled and loss > max(cfg.trial_loss, self._loss_before + cfg.trial_loss / 2)) or (
                loss >= cfg.trial_heavy_loss
            )
            # After it, an estimate that fell well below where it was when the
            # trial began is over-use. (Not "below the layer we came from": a
            # receive-side estimate that a congestion episode crushed stays
            # there for many seconds after the link recovered.)
            fell = settled and known and before is not None and budget < before * cfg.overuse_drop
            # A trial started blind, and the first estimate to come says even
            # the layer it came from is too much: believe it.
            contradicted = known and before is None and budget < layers[origin].bitrate * cfg.overuse_drop
            if lossy or fell or contradicted:
                # The link could not carry it: back, and wait longer before the next try.
                self._trial = None
                self.failed_trials += 1
                self._backoff = min(self._backoff * 2, cfg.trial_backoff_max)
                self._last_down = now
                back = [layer for layer in live if layer.index <= origin]
                return back[-1] if back else live[0]
            if now - started < cfg.trial_hold:
                return current
            self._trial = None
            self._proven = current.bitrate
            self._backoff = cfg.trial_backoff

        # A kept trial proved the layer's rate; its measured rate wobbles with
        # keyframes, so the proof carries the same margin a step up needs.
        room = max(budget, int(self._proven * cfg.up_margin))
        lower = [layer for layer in live if layer.index < current.index]
        # An estimate below the current rate steps down only with a sign of
        # congestion (it fell lately, or there is loss): receive-side
        # estimates lag what a clean link carries.
        # Without loss, an estimate that fell must also stay below the layer
        # for ``estimate_hold`` seconds: keyframe bursts make estimators dip.
        below = current.bitrate > room
        if not below:
            self._below_since = None
        elif self._below_since is None:
            self._below_since = now
        # An estimate far below the layer (not just lagging it) is a limit even
        # without a fall: the viewer got this layer without earning it (its own
        # layer paused, or it joined on a stale rate) and says it cannot take it.
        far_below = room < current.bitrate * cfg.overuse_drop
        congested = below and (
            loss > cfg.loss_up_max
            or (
                (far_below or now - self._last_overuse < cfg.overuse_memory)
                and now - self._below_since >= cfg.estimate_hold  # type: ignore[operator]
            )
        )
        if lower and (loss >= cfg.loss_down or congested):
            self._fits_since = None
            self._last_down = now
            self._proven = 0
            if loss >= cfg.loss_down:
                return lower[-1]
            fitting = [layer for layer in lower if layer.bitrate <= budget]
            return fitting[-1] if fitting else lower[0]

        higher = [layer for layer in live if layer.index > current.index]
        if not higher or loss > cfg.loss_up_max or not higher[0].bitrate:
            self._fits_since = None
            return current
        nxt = higher[0]
        if known and nxt.bitrate * cfg.up_margin <= room:
            if self._fits_since is None:
                self._fits_since = now
            if now - self._fits_since >= cfg.up_hold and now - self._last_down >= cfg.up_hold:
                self._fits_since = None
                return [layer for layer in higher if layer.bitrate * cfg.up_margin <= room][-1]
            return current
        self._fits_since = None
        # A receive-side estimate lags what the viewer gets (and cannot grow
        # much past it), so it cannot show room for the next layer: while the
        # viewer takes its current layer without loss and its estimate is not
        # falling, try the next layer (a trial, judged on loss and estimate).
        stale = (
            known
            and self._proven
            and budget < current.bitrate
            and self._clean_since is not None
            and now - self._clean_since >= cfg.stale_estimate_after
        )
        if stale:
            known = False
        base = max(budget if known else 0, current.bitrate, self._proven)
        # With an estimate, it must not say the viewer is short: it is above the
        # current layer, or still rising (a browser's REMB climbs slowly while
        # nothing constrains the link; one that stays flat below the layer is a limit).
        unconstrained = not known or budget >= current.bitrate or self._rising(now)
        if (
            unconstrained
            and nxt.bitrate <= base * (cfg.trial_reach if known else cfg.trial_reach_blind)
            and now - self._last_down >= self._backoff
            and now - self._last_overuse >= self._backoff
        ):
            # A stale estimate still tells a fall: its value is kept for that.
            self._trial = (current.index, now, budget if known or stale else None)
            self._loss_before = loss
            self.trials += 1
            return nxt
        return current
