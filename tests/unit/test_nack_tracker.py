"""Upstream NACK retries: RTT-aware, bounded, forgetting what arrived."""

from edge.media.nack import DEFAULT, GIVE_UP, MAX_TRIES, NackTracker


def test_asks_again_after_the_interval_until_repaired() -> None:
    t = NackTracker()
    assert t.missing([10, 11], 0.0) == [10, 11]
    assert t.due(0.05) == []  # not yet: the default interval is 100 ms
    assert t.due(DEFAULT) == [10, 11]
    t.arrived(10, 0.15)
    assert list(t.pending) == [11]
    assert t.repaired == 1


def test_interval_follows_the_observed_repair_delay() -> None:
    t = NackTracker()
    t.missing([1], 0.0)
    t.arrived(1, 0.030)  # repaired 30 ms after the NACK
    assert abs(t.interval - 0.045) < 1e-9
    t.missing([2], 1.0)
    assert t.next_due == 1.0 + t.interval
    assert t.due(1.046) == [2]


def test_gives_up_after_max_tries_or_the_deadline() -> None:
    t = NackTracker()
    t.missing([5], 0.0)
    now = 0.0
    asked = 1
    while 5 in t.pending:
        now += DEFAULT
        asked += len(t.due(now))
    assert asked == MAX_TRIES
    assert t.abandoned == 1 and now < GIVE_UP
    t.missing([6], 10.0)
    t.due(10.0 + GIVE_UP + 0.01)
    assert 6 not in t.pending


def test_a_late_original_cancels_its_retries() -> None:
    t = NackTracker()
    t.missing([7, 8], 0.0)
    t.arrived(8, 0.01)  # reordered, not lost
    assert t.due(DEFAULT) == [7]
