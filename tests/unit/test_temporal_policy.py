"""The temporal-layer cap policy (edge/media/temporal.py)."""

from __future__ import annotations

from edge.media.forwarder import ALL_TIDS
from edge.media.simulcast import Layer
from edge.media.temporal import TemporalPolicy


def layer(rates: list[int]) -> Layer:
    """A layer with len(rates) temporal layers, TIDs 0..t together at rates[t]."""
    x = Layer(rid="f", index=2, clock_rate=90000, send_pli=lambda _: None, keyframe_interval=1.0)
    x.temporal_layers = len(rates)
    x.tid_bitrate = rates + [0] * (4 - len(rates))
    return x


F = layer([400_000, 600_000, 1_000_000])


def test_every_layer_while_the_full_rate_fits_or_nothing_is_known() -> None:
    p = TemporalPolicy()
    assert p.choose(F, ALL_TIDS, 0.0, budget=1_200_000, loss=0.0) == ALL_TIDS
    assert p.choose(F, ALL_TIDS, 1.0, budget=None, loss=0.0) == ALL_TIDS
    # A layer without temporal layers (or not measured yet) is never capped.
    assert p.choose(layer([]), ALL_TIDS, 2.0, budget=10_000, loss=0.0) == ALL_TIDS
    assert p.choose(layer([0, 0, 0]), ALL_TIDS, 3.0, budget=10_000, loss=0.0) == ALL_TIDS


def test_down_at_once_to_the_most_layers_that_fit() -> None:
    p = TemporalPolicy()
    assert p.choose(F, ALL_TIDS, 0.0, budget=700_000, loss=0.0) == 1
    assert p.choose(F, 1, 1.0, budget=500_000, loss=0.0) == 0
    assert p.choose(F, 0, 2.0, budget=100_000, loss=0.0) == 0  # TL0 is the floor
    p = TemporalPolicy()
    assert p.choose(F, ALL_TIDS, 0.0, budget=450_000, loss=0.0) == 0  # straight to TL0


def test_up_one_layer_after_the_budget_held_with_margin() -> None:
    p = TemporalPolicy()
    cap = p.choose(F, ALL_TIDS, 0.0, budget=500_000, loss=0.0)
    assert cap == 0
    # 650k fits TL0+TL1 (600k) but not with the 15 % margin: stays.
    assert p.choose(F, cap, 1.0, budget=650_000, loss=0.0) == 0
    assert p.choose(F, cap, 5.0, budget=650_000, loss=0.0) == 0
    # 700k fits with the margin: after up_hold (2 s) of it, one layer up.
    assert p.choose(F, cap, 6.0, budget=700_000, loss=0.0) == 0
    assert p.choose(F, cap, 7.0, budget=2_000_000, loss=0.0) == 0
    cap = p.choose(F, cap, 8.0, budget=2_000_000, loss=0.0)
    assert cap == 1  # one at a time
    # Loss holds it where it is.
    assert p.choose(F, cap, 9.0, budget=2_000_000, loss=0.05) == 1
    assert p.choose(F, cap, 12.0, budget=2_000_000, loss=0.05) == 1
    assert p.choose(F, cap, 13.0, budget=2_000_000, loss=0.0) == 1
    assert p.choose(F, cap, 15.0, budget=2_000_000, loss=0.0) == ALL_TIDS


def test_a_switch_applies_the_last_budget_to_the_new_layer() -> None:
    p = TemporalPolicy()
    p.choose(F, ALL_TIDS, 0.0, budget=500_000, loss=0.0)
    assert p.on_switch(layer([150_000, 250_000, 400_000])) == ALL_TIDS
    assert p.on_switch(layer([300_000, 480_000, 800_000])) == 1
    assert p.on_switch(layer([])) == ALL_TIDS
