"""Bandwidth estimator behaviour, on simulated time only (no wall-clock assertions)."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.media.bwe import (
    AcknowledgedBitrateEstimator,
    AimdRateControl,
    BandwidthEstimate,
    BandwidthUsage,
    BweConfig,
    GroupDelta,
    InterArrival,
    LossBasedControl,
    QueueDelay,
    RembEstimate,
    SendSideBandwidthEstimator,
    TrendlineEstimator,
)
from edge.media.twcc import PacketResult

from .bwe_sim import Link, Simulation


def raises(message: str):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


# --- building blocks ---------------------------------------------------------


def test_inter_arrival_groups_by_5ms_send_bursts():
    groups = InterArrival(0.005)
    deltas = []
    # Three bursts of 3 packets, 20 ms apart; arrivals 30 ms after send, with
    # the second burst 4 ms late (queueing).
    for burst, late in ((0, 0.0), (1, 0.004), (2, 0.004), (3, 0.004)):
        for i in range(3):
            send = burst * 0.020 + i * 0.001
            delta = groups.add(send, send + 0.030 + late, 100)
            if delta is not None:
                deltas.append(delta)
    # Group 2 completes when group 3 starts, and so on: 2 deltas from 4 groups.
    assert len(deltas) == 2
    assert deltas[0].send_delta == pytest.approx(0.020)
    assert deltas[0].arrival_delta == pytest.approx(0.024)
    assert deltas[0].size == 300
    assert deltas[1].arrival_delta == pytest.approx(0.020)


def test_inter_arrival_ignores_reordered_and_merges_queue_bursts():
    groups = InterArrival(0.005)
    assert groups.add(1.0, 2.0, 100) is None
    assert groups.add(0.5, 2.1, 100) is None  # sent before the group: ignored
    # Sent 10 ms later but arriving 1 ms after the last one: a burst released
    # by a queue (negative propagation delta), so it joins the group.
    assert groups.add(1.010, 2.001, 100) is None
    assert groups.add(1.050, 2.050, 100) is None  # new group
    delta = groups.add(1.100, 2.100, 100)
    assert delta is not None
    assert delta.send_delta == pytest.approx(0.040)  # 1.050 - 1.010
    assert delta.arrival_delta == pytest.approx(0.049)


def feed_trend(trend: TrendlineEstimator, extra_delay: float, count: int, start: float = 0.0):
    """Groups every 10 ms whose arrival spacing exceeds send spacing by ``extra_delay``."""
    states = []
    for i in range(count):
        states.append(trend.update(GroupDelta(0.010, 0.010 + extra_delay, start + i * 0.010, 1200)))
    return states


def test_trendline_detects_overuse_and_underuse():
    trend = TrendlineEstimator()
    assert set(feed_trend(trend, 0.0, 40)) == {BandwidthUsage.NORMAL}
    states = feed_trend(trend, 0.002, 40, start=0.4)  # queue grows 2 ms per 10 ms
    assert BandwidthUsage.OVERUSING in states
    # Overuse needs more than 10 ms over the threshold and two samples.
    first = states.index(BandwidthUsage.OVERUSING)
    assert first >= 1
    states = feed_trend(trend, -0.002, 60, start=0.8)  # draining
    assert states[-1] is BandwidthUsage.UNDERUSING


def test_trendline_threshold_adapts_and_stays_bounded():
    trend = TrendlineEstimator()
    assert trend.threshold == 12.5
    feed_trend(trend, 0.0, 200)  # flat: the threshold decays towards |trend| = 0
    assert trend.threshold == pytest.approx(6.0)
    # A steady trend settles the threshold on |modified trend| from either side:
    # 60 x slope x gain 4, i.e. 9.6 for 0.4 ms per 10 ms (k_down) and 16.8 for
    # 0.7 ms per 10 ms (k_up, within 15 of the threshold so it adapts).
    for extra, settled in ((0.0004, 9.6), (0.0007, 16.8)):
        trend = TrendlineEstimator()
        for i in range(2000):
            trend.update(GroupDelta(0.010, 0.010 + extra, i * 0.010, 1200))
        assert trend.threshold == pytest.approx(settled, rel=1e-6)
    # A spike far over the threshold (here 5 ms per 10 ms) does not drag it
    # along: it only adapts while the trend ramps up through the +15 band.
    trend = TrendlineEstimator()
    feed_trend(trend, 0.0, 30)
    feed_trend(trend, 0.005, 60, start=0.3)
    assert trend.modified_trend == pytest.approx(60 * 0.5 * 4, rel=0.01)
    assert trend.threshold < 20


def test_acknowledged_bitrate_needs_a_full_window():
    acked = AcknowledgedBitrateEstimator(0.5)
    for i in range(50):  # 1000 bytes every 10 ms = 800 kbit/s
        acked.add(i * 0.010, 1000)
    assert acked.bitrate is None  # only 490 ms seen
    for i in range(50, 200):
        acked.add(i * 0.010, 1000)
    assert acked.bitrate == pytest.approx(800_000, rel=0.03)


def test_aimd_multiplicative_increase_is_about_8_percent_per_second():
    aimd = AimdRateControl(BweConfig(start_bitrate=1_000_000))
    for i in range(41):  # 2 s of feedback every 50 ms, nothing acked yet
        aimd.update(BandwidthUsage.NORMAL, None, i * 0.05, 0.1)
    assert aimd.bitrate == pytest.approx(1_000_000 * 1.08**2, rel=0.01)


def test_aimd_decreases_to_beta_times_acked_then_goes_additive():
    aimd = AimdRateControl(BweConfig(start_bitrate=2_000_000))
    aimd.update(BandwidthUsage.NORMAL, 1_500_000, 0.0, 0.1)
    # Within one RTT of the last change a cut waits (unless throughput halved).
    aimd.update(BandwidthUsage.OVERUSING, 1_500_000, 0.05, 0.1)
    assert aimd.bitrate == 2_000_000
    aimd.update(BandwidthUsage.OVERUSING, 1_500_000, 0.15, 0.1)
    assert aimd.bitrate == pytest.approx(0.85 * 1_500_000)
    assert aimd.near_capacity
    before = aimd.bitrate
    for i in range(1, 21):  # 1 s of normal signal
        aimd.update(BandwidthUsage.NORMAL, 1_300_000, 0.15 + i * 0.05, 0.1)
    # Additive: roughly one packet per response time, far below 8 %.
    assert before < aimd.bitrate < before * 1.05


def test_aimd_cuts_at_once_when_throughput_collapses():
    aimd = AimdRateControl(BweConfig(start_bitrate=2_000_000))
    aimd.update(BandwidthUsage.NORMAL, 1_500_000, 0.0, 0.1)
    aimd.update(BandwidthUsage.OVERUSING, 900_000, 0.01, 0.1)
    assert aimd.bitrate == pytest.approx(0.85 * 900_000)


def test_aimd_never_runs_ahead_of_acked_throughput():
    aimd = AimdRateControl(BweConfig(start_bitrate=1_000_000))
    for i in range(200):
        aimd.update(BandwidthUsage.NORMAL, 400_000, i * 0.05, 0.1)
    assert aimd.bitrate == pytest.approx(1_000_000)  # limit 1.5 x 400k + 10k is below


def test_aimd_holds_while_underusing():
    aimd = AimdRateControl(BweConfig(start_bitrate=1_000_000))
    for i in range(20):
        aimd.update(BandwidthUsage.UNDERUSING, 1_000_000, i * 0.05, 0.1)
    assert aimd.bitrate == 1_000_000


def test_loss_is_measured_over_a_second():
    """Feedback every 100 ms reporting 50 % loss cuts once a second, not ten times."""
    loss = LossBasedControl(BweConfig(start_bitrate=1_000_000))
    for i in range(10):
        loss.update(10, 20, i * 0.1, 0.1)
    assert loss.loss is None and loss.bitrate == 1_000_000  # 0.9 s: not measured yet
    loss.update(10, 20, 1.0, 0.1)
    assert loss.loss == 0.5 and loss.bitrate == pytest.approx(750_000)
    for i in range(1, 10):
        loss.update(10, 20, 1.0 + i * 0.1, 0.1)
    assert loss.bitrate == pytest.approx(750_000)
    loss.update(10, 20, 2.0, 0.1)
    assert loss.bitrate == pytest.approx(750_000 * 0.75)


def test_loss_based_rules():
    config = BweConfig(start_bitrate=1_000_000, loss_interval=0.0)
    loss = LossBasedControl(config)
    loss.update(5, 10, 0.0, 0.1)  # fewer than 20 packets: not yet measured
    assert loss.bitrate == 1_000_000 and loss.loss is None
    loss.update(5, 10, 0.1, 0.1)  # 10 / 20 = 50 % lost
    assert loss.loss == 0.5
    assert loss.bitrate == pytest.approx(1_000_000 * (1 - 0.25))
    loss.update(10, 20, 0.2, 0.1)  # again, but within 300 ms + RTT of the last cut
    assert loss.bitrate == pytest.approx(750_000)
    loss.update(2, 40, 0.3, 0.1)  # 5 %: hold
    assert loss.bitrate == pytest.approx(750_000)
    loss.note_estimate(750_000, 0.3)
    loss.update(0, 40, 0.4, 0.1)  # 0 %: 8 % over the last second's minimum
    assert loss.bitrate == pytest.approx(1.08 * 750_000 + 1000)


def test_estimator_is_min_of_delay_and_loss_and_clamped():
    config = BweConfig(start_bitrate=100_000, min_bitrate=80_000, max_bitrate=120_000)
    bwe = SendSideBandwidthEstimator(config)
    assert bwe.bitrate == 100_000 and bwe.updated_at is None
    # Every packet lost, repeatedly: the loss-based rate halves but the
    # estimate stops at the configured minimum.
    for n in range(10):
        results = [PacketResult(n * 30 + i, n * 1.0, None, 1200) for i in range(30)]
        bwe.on_feedback(results, n * 1.0 + 0.05)
    assert bwe.loss == 1.0
    assert bwe.loss_based_bitrate == 80_000
    assert bwe.bitrate == 80_000
    assert bwe.updated_at == 9.05


def test_estimator_rtt_from_feedback_and_explicit():
    bwe = SendSideBandwidthEstimator()
    assert bwe.rtt == 0.1
    bwe.on_feedback([PacketResult(0, 1.0, 5.0, 100)], 1.2)
    assert bwe.rtt == pytest.approx(0.2)
    bwe.on_rtt(0.05)
    assert bwe.rtt == 0.05
    with raises("RTT must not be negative"):
        bwe.on_rtt(-1)


def test_config_validation():
    with raises("BWE bitrates must satisfy 0 < min <= start <= max"):
        BweConfig(start_bitrate=10, min_bitrate=20)
    with raises("BWE trendline window must be at least 2"):
        BweConfig(trendline_window=1)


@given(
    st.lists(
        st.lists(
            st.tuples(
                st.floats(0, 100, allow_nan=False),
                st.one_of(st.none(), st.floats(-100, 100, allow_nan=False)),
                st.integers(0, 1500),
            ),
            max_size=30,
        ),
        max_size=20,
    )
)
def test_any_feedback_keeps_estimate_in_bounds(feedbacks):
    """Arbitrary (even nonsensical) results never crash or escape [min, max]."""
    config = BweConfig()
    bwe = SendSideBandwidthEstimator(config)
    now = 0.0
    sequence = 0
    for packets in feedbacks:
        now += 0.05
        results = []
        for send, arrival, size in packets:
            results.append(PacketResult(sequence, send, arrival, size))
            sequence += 1
        estimate = bwe.on_feedback(results, now)
        assert config.min_bitrate <= estimate <= config.max_bitrate
        assert bwe.updated_at == now


def test_remb_and_twcc_share_one_interface():
    remb = RembEstimate(500_000)
    assert isinstance(remb, BandwidthEstimate)
    assert isinstance(SendSideBandwidthEstimator(), BandwidthEstimate)
    assert (remb.bitrate, remb.updated_at) == (500_000, None)
    remb.on_remb(1_234_000, 7.5)
    assert (remb.bitrate, remb.updated_at) == (1_234_000, 7.5)
    with raises("REMB bitrate must not be negative"):
        remb.on_remb(-1, 8.0)


# --- closed loop over a simulated bottleneck -----------------------------------
# The sender paces at the estimate (as a padding/probing sender would), so the
# estimate is what the link actually carries. Start 300 kbit/s, 25 ms one-way.

# Simulated seconds by which the estimate first reaches 75 % of capacity: the
# multiplicative increase is 8 %/s, so 300 kbit/s -> 3.75 Mbit/s takes ~33 s.
CONVERGENCE = {500_000: 10.0, 1_000_000: 25.0, 5_000_000: 45.0}


@pytest.mark.parametrize("capacity", sorted(CONVERGENCE))
@pytest.mark.parametrize(
    "delay, feedback_interval, frame_rate",
    [(0.025, 0.05, None), (0.1, 0.1, None), (0.025, 0.05, 30.0)],
    ids=["25ms-paced", "100ms-paced", "25ms-30fps-bursts"],
)
def test_converges_from_below_to_capacity(capacity, delay, feedback_interval, frame_rate):
    link = Link(capacity, delay=delay)
    sim = Simulation(link, feedback_interval=feedback_interval, frame_rate=frame_rate)
    sim.run_until(60.0)
    reached = sim.first_time_at_least(0.75 * capacity)
    assert reached is not None and reached <= CONVERGENCE[capacity]
    # From below: nothing above 125 % on the way up or after.
    assert max(e for _, e in sim.trace) <= 1.25 * capacity
    late = sim.estimates_between(50.0, 60.0)
    assert len(late) >= 10.0 / feedback_interval
    assert min(late) >= 0.75 * capacity
    assert max(late) <= 1.25 * capacity


@pytest.mark.parametrize("frame_rate", [None, 30.0], ids=["paced", "30fps-bursts"])
def test_step_down_then_up(frame_rate):
    sim = Simulation(Link(5_000_000), frame_rate=frame_rate)
    sim.run_until(60.0)
    assert sim.bwe.bitrate >= 0.75 * 5_000_000
    sim.link.capacity = 500_000
    sim.run_until(62.0)
    # Within 2 s of simulated time the estimate is below the new capacity...
    assert sim.bwe.bitrate < 500_000
    sim.run_until(80.0)
    # ...and settles near it rather than collapsing.
    settled = sim.estimates_between(70.0, 80.0)
    assert 0.6 * 500_000 <= min(settled) and max(settled) <= 1.25 * 500_000
    sim.link.capacity = 5_000_000
    sim.run_until(100.0)
    assert sim.bwe.bitrate >= 1_500_000  # climbing again (8 %/s from ~450k)
    sim.run_until(125.0)
    assert sim.bwe.bitrate >= 0.75 * 5_000_000


def test_random_loss_without_a_queue_does_not_cut_the_estimate():
    """20 % random loss on a fast link: measured, but nothing queues, so it is not
    congestion (it is what RED and NACK repair): the loss-based rate holds."""
    config = BweConfig(start_bitrate=1_000_000)
    sim = Simulation(Link(50_000_000, loss=0.20), config=config, seed=7)
    sim.run_until(20.0)
    assert sim.bwe.loss is not None and 0.1 < sim.bwe.loss < 0.3
    assert sim.bwe.queue_delay < config.congestion_queue_delay and not sim.bwe.congested
    assert sim.bwe.loss_based_bitrate >= 1_000_000


def test_the_same_loss_with_a_queue_cuts_it():
    """The loss-based rule itself: loss above 10 % cuts only while the path queues
    (or when it is so heavy, >= 50 %, that the link is as good as down)."""
    config = BweConfig(start_bitrate=1_000_000, loss_interval=0.0)
    queued = LossBasedControl(config)
    queued.update(5, 20, 0.0, 0.1, congested=True)
    assert queued.bitrate == pytest.approx(1_000_000 * (1 - 0.125))
    random = LossBasedControl(config)
    random.update(5, 20, 0.0, 0.1, congested=False)
    assert random.bitrate == 1_000_000
    random.update(15, 20, 1.0, 0.1, congested=False)  # 75 %: an outage
    assert random.bitrate == pytest.approx(1_000_000 * (1 - 0.375))


def test_queue_delay_is_the_delay_above_its_minimum():
    q = QueueDelay(window=30.0)
    for i in range(50):  # 20 ms propagation, 3 s clock offset, no queue
        q.add(i * 0.02, i * 0.02 + 3.02)
    assert q.delay == pytest.approx(0.0, abs=1e-9)
    for i in range(50, 53):  # a burst that queues 80 ms for a moment: hardly counts
        q.add(i * 0.02, i * 0.02 + 3.1)
    assert q.delay < 0.02
    for i in range(53, 200):  # a queue that stands for 3 s: counts in full
        q.add(i * 0.02, i * 0.02 + 3.1)
    assert q.delay == pytest.approx(0.08, abs=0.001)
    for i in range(100, 3000):  # a queue that stands longer than the window becomes the baseline
        q.add(i * 0.02, i * 0.02 + 3.1)
    assert q.delay == pytest.approx(0.0, abs=1e-9)


def test_one_percent_random_loss_does_not_reduce_it():
    config = BweConfig(start_bitrate=1_000_000)
    sim = Simulation(Link(50_000_000, loss=0.01), config=config, seed=7)
    previous = config.start_bitrate
    for second in range(1, 21):
        sim.run_until(float(second))
        assert sim.bwe.loss_based_bitrate >= previous
        previous = sim.bwe.loss_based_bitrate
    assert sim.bwe.bitrate > 2 * 1_000_000


def test_simulation_is_deterministic():
    runs = []
    for _ in range(2):
        sim = Simulation(Link(1_000_000, loss=0.02), seed=3)
        sim.run_until(10.0)
        runs.append(sim.trace)
    assert runs[0] == runs[1]
