"""Forwarder, RetransmitBuffer, KeyframeRequester, RateLimiter, ReceiveStats."""

import asyncio

import pytest

from edge.media.forwarder import Forwarder
from edge.media.keyframe import KeyframeRequester
from edge.media.retransmit import RetransmitBuffer, buffer_size
from edge.media.stats import ReceiveStats
from edge.messaging.ratelimit import RateLimiter


def test_video_waits_for_keyframe_then_is_continuous() -> None:
    f = Forwarder(video=True, clock_rate=90000)
    f.switch("p1", 90000)
    assert f.map(100, 1000, keyframe=False, now=0.0) is None
    s0, t0 = f.map(101, 1000, keyframe=True, now=0.0)
    s1, t1 = f.map(102, 4000, keyframe=False, now=0.033)
    assert (s1 - s0) & 0xFFFF == 1 and (t1 - t0) & 0xFFFFFFFF == 3000
    # an upstream gap stays a gap (the viewer NACKs it)
    s3, _ = f.map(105, 7000, keyframe=False, now=0.066)
    assert (s3 - s0) & 0xFFFF == 4


def test_switching_source_continues_sequence_and_time() -> None:
    f = Forwarder(video=True, clock_rate=90000)
    f.switch("host", 90000)
    f.map(10, 50, keyframe=True, now=1.0)
    last, last_ts = f.map(11, 3050, keyframe=False, now=1.033)
    f.switch("cohost", 90000)
    assert f.map(60000, 999999, keyframe=False, now=1.5) is None  # waits for a keyframe
    seq, ts = f.map(60001, 999999, keyframe=True, now=1.533)
    assert seq == (last + 1) & 0xFFFF
    assert (ts - last_ts) & 0xFFFFFFFF == int(0.5 * 90000)


def test_audio_needs_no_keyframe_and_wraps() -> None:
    f = Forwarder(video=False, clock_rate=48000)
    f.switch("mic", 48000)
    out = [f.map((65534 + i) & 0xFFFF, i * 960, keyframe=False, now=i * 0.02) for i in range(4)]
    seqs = [o[0] for o in out]
    assert all(((b - a) & 0xFFFF) == 1 for a, b in zip(seqs, seqs[1:]))


def test_retransmit_buffer() -> None:
    buf = RetransmitBuffer(8)
    for seq in range(20):
        buf.put(seq, bytes([seq]))
    assert buf.get(19) == bytes([19]) and buf.get(12) == bytes([12])
    assert buf.get(11) is None  # overwritten by 19
    assert buf.get(25) is None
    assert buffer_size(1000) == 1024 and buffer_size(1024) == 1024
    with pytest.raises(ValueError):
        RetransmitBuffer(1000)


async def test_keyframe_requests_are_throttled_and_folded() -> None:
    sent = asyncio.Event()
    count = 0

    def send() -> None:
        nonlocal count
        count += 1
        sent.set()

    k = KeyframeRequester(send, min_interval=0.2)
    assert k.request() is True
    sent.clear()
    for _ in range(1000):
        assert k.request() is False
    assert count == 1
    await asyncio.wait_for(sent.wait(), 2)  # one folded PLI when the interval ends
    assert count == 2 and k.requests == 1001 and k.sent == 2
    k.close()


def test_rate_limiter() -> None:
    limiter = RateLimiter(20, 30.0)
    assert all(limiter.check("v", now=0.0).allowed for _ in range(20))
    denied = limiter.check("v", now=0.0)
    assert not denied.allowed and denied.retry_after == pytest.approx(1.5)
    assert limiter.check("other", now=0.0).allowed
    assert limiter.check("v", now=1.6).allowed


def test_receive_stats_loss_and_report() -> None:
    stats = ReceiveStats(90000)
    missing = []
    for seq in [65530, 65531, 65533, 65534, 0, 1, 5]:
        missing += stats.add(seq, 0, 100, 0.0)
    assert missing == [65532, 65535, 2, 3, 4]
    assert stats.extended_max == 65536 + 5
    assert stats.lost == 5
    block = stats.report_block(1234, now=1.0)
    assert block.packets_lost == 5 and block.fraction_lost == (5 << 8) // 12


def test_late_packets_from_before_a_start_are_dropped() -> None:
    """Sequence numbers already sent are never reused (that would reuse SRTP nonces)."""
    f = Forwarder(video=True, clock_rate=90000)
    f.switch("host", 90000)
    f.map(10, 50, keyframe=True, now=1.0)
    f.map(11, 3050, keyframe=False, now=1.033)
    f.switch("cohost", 90000)
    start, _ = f.map(500, 9000, keyframe=True, now=1.5)
    # cohost packets reordered from before its keyframe would map onto the host's seqs
    assert f.map(499, 6000, keyframe=False, now=1.51) is None
    assert f.map(498, 6000, keyframe=False, now=1.51) is None
    assert f.map(501, 12000, keyframe=False, now=1.53)[0] == (start + 1) & 0xFFFF


def test_retransmit_buffer_counts_a_packet_nacked_once() -> None:
    from edge.media.retransmit import RetransmitBuffer

    buf = RetransmitBuffer(4)
    buf.put(10, b"a")
    assert buf.first_nack(10) and not buf.first_nack(10)
    assert not buf.first_nack(11)  # never stored
    buf.put(14, b"b")  # the slot of 10 now holds 14
    assert not buf.first_nack(10) and buf.first_nack(14)


def test_a_long_stream_is_never_cut_and_its_repairs_stay_fresh() -> None:
    """100 000 packets (past two 16-bit wraps) after one keyframe: every one is
    forwarded, in order, and a NACK for a recent packet is not judged stale."""
    from edge.media.forwarder import Forwarder
    from edge.media.rtp import seq_diff

    f = Forwarder(video=True, clock_rate=90000)
    f.switch(object(), 90000)
    first = f.map(1000, 0, True, 0.0)
    assert first is not None
    last = first[0]
    for i in range(1, 100_000):
        mapped = f.map((1000 + i) & 0xFFFF, i * 30, False, i * 0.001)
        assert mapped is not None, i
        assert seq_diff(mapped[0], last) == 1
        last = mapped[0]
        if i % 10_000 == 0:
            assert not f.stale((last - 5) & 0xFFFF)
    assert f.stale((last - 0x4000 - 1) & 0xFFFF)  # older than the trailing mark: not worth a resend
