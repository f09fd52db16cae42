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


def settled() -> TemporalPolicy:
    """A policy past its first 6 s (falls count)."""
    p = TemporalPolicy()
    p.choose(F, ALL_TIDS, -100.0, budget=None)
    p.choose(F, ALL_TIDS, -100.0, budget=5_000_000)
    return p


def after_a_fall(to: int) -> tuple[TemporalPolicy, int]:
    """A settled policy whose budget just fell from 2 Mbit/s to ``to`` (at t=0), and its cap."""
    p = settled()
    p.choose(F, ALL_TIDS, -1.0, budget=2_000_000)
    return p, p.choose(F, ALL_TIDS, 0.0, budget=to)


def test_every_layer_while_the_full_rate_fits_or_nothing_is_known() -> None:
    p = TemporalPolicy()
    assert p.choose(F, ALL_TIDS, 0.0, budget=1_200_000) == ALL_TIDS
    assert p.choose(F, ALL_TIDS, 1.0, budget=None) == ALL_TIDS
    # A layer without temporal layers (or not measured yet) is never capped.
    assert p.choose(layer([]), ALL_TIDS, 2.0, budget=10_000) == ALL_TIDS
    assert p.choose(layer([0, 0, 0]), ALL_TIDS, 3.0, budget=10_000) == ALL_TIDS


def test_down_at_once_when_the_budget_falls() -> None:
    p = settled()
    assert p.choose(F, ALL_TIDS, 0.0, budget=2_000_000) == ALL_TIDS
    assert p.choose(F, ALL_TIDS, 1.0, budget=700_000) == 1
    assert p.choose(F, 1, 2.0, budget=500_000) == 0
    assert p.choose(F, 0, 3.0, budget=100_000) == 0  # TL0 is the floor
    assert after_a_fall(450_000)[1] == 0  # straight to TL0


def test_a_budget_that_stands_low_without_falling_is_not_a_reason() -> None:
    p = TemporalPolicy()
    # A new viewer's estimate falls from its first guess: not the link changing.
    assert p.choose(F, ALL_TIDS, 0.0, budget=900_000) == ALL_TIDS
    assert p.choose(F, ALL_TIDS, 1.0, budget=300_000) == ALL_TIDS
    for t in range(2, 10):  # however low, and however long
        assert p.choose(F, ALL_TIDS, float(t), budget=300_000 + 1000 * (t % 2)) == ALL_TIDS
    assert p.choose(F, ALL_TIDS, 10.0, budget=200_000) == 0  # a fall


def test_up_one_layer_after_the_budget_allowed_it_for_2_s() -> None:
    p, cap = after_a_fall(500_000)
    assert cap == 0
    # 500k: TL0+TL1 (600k) does not fit, and it is no more than 1.3x TL0: stays.
    assert p.choose(F, cap, 1.0, budget=500_000) == 0
    assert p.choose(F, cap, 9.0, budget=500_000) == 0
    # 700k fits TL0+TL1 with the 15 % margin: after 2 s of it, one layer up.
    assert p.choose(F, cap, 10.0, budget=700_000) == 0
    assert p.choose(F, cap, 11.0, budget=700_000) == 0
    cap = p.choose(F, cap, 12.0, budget=700_000)
    assert cap == 1  # one at a time
    assert p.probes == 0


def test_a_budget_well_above_what_is_sent_probes_and_backs_off() -> None:
    p, cap = after_a_fall(800_000)
    assert cap == 1
    # 800k >= 1.3 x 600k: the estimate may be bounded by what is sent. A probe after 2 s.
    assert p.choose(F, cap, 1.0, budget=800_000) == 1
    cap = p.choose(F, cap, 2.0, budget=800_000)
    assert cap == ALL_TIDS and p.probes == 1
    # The budget does not follow the full rate (1M): back after 2.5 s, next probe 4 s later.
    assert p.choose(F, cap, 3.0, budget=800_000) == ALL_TIDS
    cap = p.choose(F, cap, 4.5, budget=800_000)
    assert cap == 1 and p.failed_probes == 1
    assert p.choose(F, cap, 7.5, budget=800_000) == 1
    assert p.choose(F, cap, 8.5, budget=800_000) == ALL_TIDS  # 4 s after the failure
    # This time the budget follows (it rises with what is sent): kept.
    assert p.choose(F, ALL_TIDS, 9.5, budget=1_100_000) == ALL_TIDS
    assert p.choose(F, ALL_TIDS, 11.5, budget=1_300_000) == ALL_TIDS
    assert p.failed_probes == 1


def test_a_switch_applies_the_last_budget_to_the_new_layer() -> None:
    p = TemporalPolicy()
    p.choose(F, ALL_TIDS, 0.0, budget=500_000)
    assert p.on_switch(layer([150_000, 250_000, 400_000])) == ALL_TIDS
    assert p.on_switch(layer([300_000, 480_000, 800_000])) == 1
    assert p.on_switch(layer([])) == ALL_TIDS
