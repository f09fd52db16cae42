"""The per-viewer playout-delay policy: edge/media/playout.py."""

from __future__ import annotations

import pytest

from edge.media.playout import PlayoutDelay, decode_playout_delay, encode_playout_delay


def test_a_clean_viewer_is_never_asked_for_a_delay() -> None:
    p = PlayoutDelay(800)
    for t in range(30):
        assert not p.update(0.0, 0.02, float(t))
    assert p.extension_value() is None and p.min_ms == 0


def test_loss_asks_for_a_repair_and_a_retry() -> None:
    p = PlayoutDelay(800)
    # RTT below browsers' 100 ms retry floor: a repair and two retries, 3 x 100 + 150.
    assert p.update(0.05, 0.01, 0.0)
    assert p.min_ms == 450
    assert decode_playout_delay(p.extension_value()) == (450, 10_000)  # type: ignore[arg-type]
    # A 150 ms RTT (3G): 3 x 150 + 150.
    assert PlayoutDelay(800).needed_ms(0.02, 0.15) == 600


def test_the_ceiling_caps_it_and_zero_disables() -> None:
    assert PlayoutDelay(300).needed_ms(0.2, 0.5) == 300
    off = PlayoutDelay(0)
    assert not off.update(0.3, 0.2, 0.0)
    assert off.extension_value() is None


def test_rises_at_once_falls_after_a_clean_spell() -> None:
    p = PlayoutDelay(800, release_after=10.0)
    p.update(0.05, 0.05, 0.0)
    assert p.min_ms == 450
    assert p.update(0.05, 0.2, 1.0) and p.min_ms == 750  # RTT grew: at once
    # Needing less (from t=2 on) lowers it only after 10 s of that.
    assert not p.update(0.05, 0.05, 2.0) and p.min_ms == 750
    assert not p.update(0.0, 0.05, 3.0)
    assert not p.update(0.0, 0.05, 11.9)
    assert p.update(0.0, 0.05, 12.0) and p.min_ms == 0
    # Released, but still sent (the browser keeps the last value it got).
    assert decode_playout_delay(p.extension_value()) == (0, 10_000)  # type: ignore[arg-type]


def test_loss_in_the_clean_spell_restarts_it() -> None:
    p = PlayoutDelay(800, release_after=5.0)
    p.update(0.05, 0.05, 0.0)
    p.update(0.0, 0.05, 1.0)
    p.update(0.05, 0.05, 4.0)  # lossy again: the spell starts over
    assert not p.update(0.0, 0.05, 5.0)
    assert not p.update(0.0, 0.05, 9.9)
    assert p.update(0.0, 0.05, 10.0)


def test_extension_encoding() -> None:
    assert encode_playout_delay(350, 10_000) == bytes([0x02, 0x33, 0xE8])
    assert decode_playout_delay(bytes([0x02, 0x33, 0xE8])) == (350, 10_000)
    with pytest.raises(ValueError):
        encode_playout_delay(50_000, 10_000)
    with pytest.raises(ValueError):
        decode_playout_delay(b"\x00\x00")


def test_a_new_viewer_starts_with_the_start_delay_and_a_clean_one_loses_it() -> None:
    p = PlayoutDelay(800, start_ms=355, release_after=10.0)
    assert p.min_ms == 350  # whole 10 ms units
    assert decode_playout_delay(p.extension_value()) == (350, 10_000)  # type: ignore[arg-type]
    assert not p.update(0.0, 0.01, 0.0)
    assert not p.update(0.0, 0.01, 9.9)
    assert p.update(0.0, 0.01, 10.0) and p.min_ms == 0
    # capped by the ceiling, off with it
    assert PlayoutDelay(200, start_ms=350).min_ms == 200
    assert PlayoutDelay(0, start_ms=350).extension_value() is None
