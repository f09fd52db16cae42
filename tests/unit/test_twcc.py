import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.media.rtcp import Nack, ReceiverReport, TransportFeedback, UnknownRtcp, parse_rtcp
from edge.media.twcc import (
    DELTA_TICK,
    PacketResult,
    TwccFeedback,
    TwccRecorder,
    parse_sequence,
    sequence_extension,
)


def raises(message: str):
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


def fci(base: int, count: int, reference: int, fb_count: int, *rest: bytes) -> bytes:
    return struct.pack("!HHI", base, count, ((reference & 0xFFFFFF) << 8) | fb_count) + b"".join(rest)


def chunks(*values: int) -> bytes:
    return b"".join(struct.pack("!H", v) for v in values)


# --- known answers -----------------------------------------------------------

# A transport-cc packet captured from a browser session (as dissected by
# Wireshark): one run-length chunk of 9 small deltas, padded with the P bit.
CAPTURED = bytes.fromhex("afcd0007" "00000001" "dd586eb6" "00010009" "5e911000" "2009" "1c0c2c3800040008" "18" "01")


def test_captured_packet_known_answer():
    (packet,) = parse_rtcp(CAPTURED)
    assert packet == TransportFeedback(
        sender_ssrc=1,
        media_ssrc=0xDD586EB6,
        feedback=TwccFeedback(
            base_sequence=1,
            reference_time=6197520,
            feedback_count=0,
            deltas=[0x1C, 0x0C, 0x2C, 0x38, 0x00, 0x04, 0x00, 0x08, 0x18],
        ),
    )
    # Our encoder picks the same chunks and padding as the browser's.
    assert bytes(packet) == CAPTURED
    # Wireshark shows seq 1 at +7 ms, seq 4 at +14 ms after seq 3.
    arrivals = dict(packet.feedback.received())
    assert (arrivals[1] - 6197520 * 256) * DELTA_TICK == pytest.approx(0.007)
    assert (arrivals[4] - arrivals[3]) * DELTA_TICK == pytest.approx(0.014)


def test_rtpfb_fmt15_is_transport_feedback_not_nack():
    # Same RTPFB type 205, fmt 1 vs 15: each goes to its own class.
    nack = bytes(Nack(1, 2, [10]))
    packets = parse_rtcp(bytes(ReceiverReport(5)) + CAPTURED + nack)
    assert [type(p) for p in packets] == [ReceiverReport, TransportFeedback, Nack]
    assert isinstance(packets[1], TransportFeedback)
    assert packets[1].feedback.base_sequence == 1


def test_run_length_chunks():
    # In the draft's notation "0 00 0000011011101" is 221 packets not
    # received and "0 01 0000000011000" a run of 24 small deltas.
    data = fci(100, 221 + 24, 0, 0, chunks(0b0000000011011101, 0b0010000000011000), bytes(range(24)))
    feedback = TwccFeedback.parse(data)
    assert feedback.deltas == [None] * 221 + list(range(24))
    assert bytes(feedback) == data


def test_status_vector_chunks():
    # One-bit vector "1 0 10011100001000": received packets where the bit is set.
    one_bit = TwccFeedback.parse(fci(0, 14, 0, 0, chunks(0b1010011100001000), bytes(5)))
    assert one_bit.deltas == [0, None, None, 0, 0, 0, None, None, None, None, 0, None, None, None]
    # Two-bit vector "1 1 00 10 00 01 00 01 00": large (negative) and small deltas.
    two_bit_chunk = 0b1100100001000100
    data = fci(0, 7, 0, 0, chunks(two_bit_chunk), struct.pack("!hBB", -4, 9, 10))
    two_bit = TwccFeedback.parse(data)
    assert two_bit.deltas == [None, -4, None, 9, None, 10, None]
    assert bytes(two_bit) == data


def test_truncated_vector_takes_only_status_count():
    # A one-bit vector carries 14 symbols; only the first 3 are counted.
    feedback = TwccFeedback.parse(fci(7, 3, 0, 0, chunks(0xBFFF), b"\x01\x02\x03", b"\x00"))
    assert feedback.deltas == [1, 2, 3]


def test_reference_time_is_signed_24_bit():
    feedback = TwccFeedback.parse(fci(0, 1, -2, 9, chunks(0x2001), b"\x05"))
    assert feedback.reference_time == -2
    assert feedback.feedback_count == 9
    assert bytes(feedback) == fci(0, 1, -2, 9, chunks(0x2001), b"\x05")


# --- encoder chunk choice (libwebrtc's greedy rules) ---------------------------


@pytest.mark.parametrize(
    "deltas, expected",
    [
        ([1] * 20, [0x2014]),  # one run
        ([None] * 3 + [1] * 3, [0xC000 | 0b00000001010100]),  # 6 mixed: two-bit, padded
        ([1, None] * 7, [0x8000 | 0b10101010101010]),  # 14 mixed small: one-bit
        ([1, None] * 7 + [1], [0x8000 | 0b10101010101010, 0x2001]),
        ([300] + [1] * 7, [0xC000 | 0b10010101010101, 0x2001]),  # large forces two-bit
        ([1] * 10 + [None], [0x8000 | 0b11111111110000]),  # 11 mixed: one-bit
    ],
)
def test_encoder_chunks(deltas, expected):
    data = bytes(TwccFeedback(0, 0, 0, deltas))
    assert data[8 : 8 + 2 * len(expected)] == chunks(*expected)
    assert TwccFeedback.parse(data).deltas == deltas


def test_long_run_splits_at_8191():
    feedback = TwccFeedback(0, 0, 0, [None] * 8192)
    assert bytes(feedback)[8:] == chunks(0x1FFF, 0x0001)
    assert TwccFeedback.parse(bytes(feedback)) == feedback


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00" * 7, "TWCC feedback is too short"),
        (fci(0, 0, 0, 0), "TWCC feedback has no packets"),
        (fci(0, 1, 0, 0), "TWCC packet chunk is truncated"),
        (fci(0, 15, 0, 0, chunks(0x200E)), "TWCC packet chunk is truncated"),
        (fci(0, 1, 0, 0, chunks(0x2001)), "TWCC receive delta is truncated"),
        (fci(0, 1, 0, 0, chunks(0x4001), b"\x01"), "TWCC receive delta is truncated"),
        (fci(0, 1, 0, 0, chunks(0x6001), b"\x01\x01"), "TWCC packet status symbol is reserved"),
        (fci(0, 1, 0, 0, chunks(0x2001), b"\x01", bytes(4)), "TWCC feedback has trailing data"),
        # A run of zero length advances nothing but must not loop forever.
        (fci(0, 1, 0, 0, chunks(0x2000) * 100), "TWCC packet chunk is truncated"),
    ],
)
def test_parse_errors(data, message):
    with raises(message):
        TwccFeedback.parse(data)


def test_parse_errors_surface_through_parse_rtcp():
    data = bytes(UnknownRtcp(205, 15, struct.pack("!II", 1, 2) + fci(0, 0, 0, 0)))
    with raises("TWCC feedback has no packets"):
        parse_rtcp(data)
    with raises("RTCP feedback length is invalid"):
        parse_rtcp(bytes(UnknownRtcp(205, 15, b"\x00\x00\x00\x01")))


@pytest.mark.parametrize(
    "feedback, message",
    [
        (TwccFeedback(0x10000, 0, 0, [1]), "TWCC base sequence is out of range"),
        (TwccFeedback(0, 1 << 23, 0, [1]), "TWCC reference time is out of range"),
        (TwccFeedback(0, 0, 256, [1]), "TWCC feedback count is out of range"),
        (TwccFeedback(0, 0, 0, []), "TWCC packet count is out of range"),
        (TwccFeedback(0, 0, 0, [0x8000]), "TWCC receive delta is out of range"),
        (TwccFeedback(0, 0, 0, [-0x8001]), "TWCC receive delta is out of range"),
    ],
)
def test_serialize_errors(feedback, message):
    with raises(message):
        bytes(feedback)


# --- properties --------------------------------------------------------------

feedbacks = st.builds(
    TwccFeedback,
    st.integers(0, 0xFFFF),
    st.integers(-(1 << 23), (1 << 23) - 1),
    st.integers(0, 255),
    st.lists(
        st.one_of(st.none(), st.integers(0, 255), st.integers(-0x8000, 0x7FFF)),
        min_size=1,
        max_size=300,
    ),
)


@given(feedbacks)
def test_round_trip_property(feedback):
    assert TwccFeedback.parse(bytes(feedback)) == feedback
    packet = TransportFeedback(3, 4, feedback)
    data = bytes(packet)
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [packet]
    # Serializing what we parsed is stable (canonical encoding).
    assert bytes(TwccFeedback.parse(bytes(feedback))) == bytes(feedback)


@given(st.binary(max_size=200))
def test_random_fci_only_value_error(data):
    try:
        feedback = TwccFeedback.parse(data)
    except ValueError:
        return
    assert 1 <= len(feedback.deltas) <= 0xFFFF


@given(st.integers(0, 0xFFFF), st.integers(1, 2000), st.binary(min_size=2, max_size=200))
def test_random_chunks_only_value_error(base, count, body):
    try:
        TwccFeedback.parse(fci(base, count, 0, 0, body))
    except ValueError:
        pass


@given(st.lists(st.one_of(st.none(), st.floats(0, 5)), min_size=1, max_size=100))
def test_from_arrivals_quantization_does_not_accumulate(arrivals):
    if all(a is None for a in arrivals):
        with raises("TWCC feedback needs at least one received packet"):
            TwccFeedback.from_arrivals(0, arrivals)
        return
    # Sorted arrivals keep every delta within the 16-bit range here.
    ordered = sorted(a for a in arrivals if a is not None)
    it = iter(ordered)
    arrivals = [None if a is None else next(it) for a in arrivals]
    feedback = TwccFeedback.parse(bytes(TwccFeedback.from_arrivals(65530, arrivals)))
    got = dict(feedback.received())
    for i, arrival in enumerate(arrivals):
        seq = (65530 + i) & 0xFFFF
        if arrival is None:
            assert seq not in got
        else:
            assert abs(got[seq] * DELTA_TICK - arrival) <= DELTA_TICK / 2 + 1e-9


# --- header extension --------------------------------------------------------


def test_sequence_extension():
    assert sequence_extension(0x1234) == b"\x12\x34"
    assert sequence_extension(0x10001) == b"\x00\x01"
    assert parse_sequence(b"\xff\xfe") == 0xFFFE
    with raises("TWCC sequence extension length is invalid"):
        parse_sequence(b"\x01")
    with raises("TWCC sequence extension length is invalid"):
        parse_sequence(b"\x01\x02\x03")


# --- recorder ----------------------------------------------------------------


def test_recorder_results_with_loss_and_unknown_packets():
    recorder = TwccRecorder()
    sent = [recorder.send(1.0 + i * 0.01, 1000 + i) for i in range(5)]
    assert sent == [0, 1, 2, 3, 4]
    # Packet 2 lost; the feedback also covers 5 and 6, never sent: ignored.
    arrivals = [2.0, 2.01, None, 2.05, 2.06, 2.07, 2.08]
    results = recorder.on_feedback(TwccFeedback.from_arrivals(0, arrivals))
    assert [(r.sequence, r.send_time, r.size) for r in results] == [
        (0, 1.0, 1000), (1, 1.01, 1001), (2, 1.02, 1002), (3, 1.03, 1003), (4, 1.04, 1004)
    ]  # fmt: skip
    assert results[2].arrival_time is None
    received = [r.arrival_time for r in results if r.arrival_time is not None]
    assert received == pytest.approx([2.0, 2.01, 2.05, 2.06], abs=DELTA_TICK)


def test_recorder_reports_each_packet_once():
    recorder = TwccRecorder()
    for i in range(4):
        recorder.send(i * 0.01, 100)
    first = recorder.on_feedback(TwccFeedback.from_arrivals(0, [1.0, None, 1.02]))
    assert [(r.sequence, r.arrival_time is None) for r in first] == [(0, False), (1, True), (2, False)]
    # The receiver repeats 1 (still lost) and 2, then reports 3.
    again = recorder.on_feedback(TwccFeedback.from_arrivals(1, [None, 1.02, 1.03]))
    assert [r.sequence for r in again] == [3]
    # Packet 1 turns up late: reported once more, now as received.
    late = recorder.on_feedback(TwccFeedback.from_arrivals(1, [1.05, 1.02, 1.03]))
    assert [(r.sequence, r.arrival_time is None) for r in late] == [(1, False)]
    assert recorder.on_feedback(TwccFeedback.from_arrivals(0, [1.0, 1.05, 1.02, 1.03])) == []


def test_recorder_sequence_wrap():
    recorder = TwccRecorder(first_sequence=65534)
    assert [recorder.send(i, 100) for i in range(4)] == [65534, 65535, 0, 1]
    results = recorder.on_feedback(TwccFeedback.from_arrivals(65535, [1.0, 1.1, 1.2]))
    assert [r.sequence & 0xFFFF for r in results] == [65535, 0, 1]
    # Unwrapped sequences keep increasing across the wrap.
    assert [r.sequence for r in results] == [65535, 65536, 65537]
    assert [r.send_time for r in results] == [1, 2, 3]


def test_recorder_external_sequences_and_bound():
    recorder = TwccRecorder(capacity=4)
    for seq in range(65530, 65536):
        recorder.record(seq, float(seq - 65530), 10)
    for seq in range(0, 4):
        recorder.record(seq, 6.0 + seq, 10)
    # Only the last 4 packets are kept; older feedback finds nothing.
    old = recorder.on_feedback(TwccFeedback.from_arrivals(65530, [1.0] * 6))
    assert old == []
    new = recorder.on_feedback(TwccFeedback.from_arrivals(0, [9.0, 9.1, 9.2, 9.3]))
    assert [r.send_time for r in new] == [6.0, 7.0, 8.0, 9.0]


def test_recorder_reference_time_wrap():
    recorder = TwccRecorder()
    recorder.send(0.0, 100)
    recorder.send(0.1, 100)
    top = (1 << 23) - 1  # the last positive 24-bit reference
    first = recorder.on_feedback(TwccFeedback(0, top, 0, [0]))
    second = recorder.on_feedback(TwccFeedback(1, -(1 << 23), 1, [0]))  # wrapped: one tick later
    assert first[0].arrival_time is not None and second[0].arrival_time is not None
    assert second[0].arrival_time - first[0].arrival_time == pytest.approx(0.064)


def test_recorder_without_packets_and_bad_capacity():
    assert TwccRecorder().on_feedback(TwccFeedback(0, 0, 0, [1])) == []
    with raises("TWCC recorder capacity must be positive"):
        TwccRecorder(capacity=0)


def test_packet_result_fields():
    result = PacketResult(1, 0.5, None, 1200)
    assert (result.sequence, result.send_time, result.arrival_time, result.size) == (1, 0.5, None, 1200)


@given(
    st.integers(0, 0xFFFF),
    st.lists(st.one_of(st.none(), st.floats(0.0, 0.05)), min_size=1, max_size=200),
    st.integers(1, 50),
)
def test_recorder_property(first, gaps, chunk):
    """Any run of sent packets, any loss, fed back in pieces: each result matches."""
    recorder = TwccRecorder(first_sequence=first)
    sent = [recorder.send(i * 0.001, 100 + i) for i in range(len(gaps))]
    assert sent == [(first + i) & 0xFFFF for i in range(len(gaps))]
    arrivals: list[float | None] = []
    clock = 10.0
    for gap in gaps:
        if gap is None:
            arrivals.append(None)
        else:
            clock += gap
            arrivals.append(clock)
    results = []
    for start in range(0, len(arrivals), chunk):
        piece = arrivals[start : start + chunk]
        if all(a is None for a in piece):
            continue  # a receiver cannot send feedback without an arrival
        feedback = TwccFeedback.from_arrivals(first + start, piece)
        results.extend(recorder.on_feedback(TwccFeedback.parse(bytes(feedback))))
    by_index = {r.sequence - first: r for r in results}
    for i, arrival in enumerate(arrivals):
        if i not in by_index:
            # Only all-lost pieces go unreported.
            piece_start = i - i % chunk
            assert all(a is None for a in arrivals[piece_start : piece_start + chunk])
            continue
        result = by_index[i]
        assert (result.send_time, result.size) == (i * 0.001, 100 + i)
        if arrival is None:
            assert result.arrival_time is None
        else:
            assert result.arrival_time == pytest.approx(arrival, abs=DELTA_TICK / 2 + 1e-9)


# --- libwebrtc's serialized-size expectations ---------------------------------
# libwebrtc's transport_feedback_unittest.cc builds feedback for given received
# sequence numbers and receive times and checks the packet size (rounded up to
# 32-bit words; its header is 20 bytes, a chunk 2, a small delta 1, a large 2).
# The same inputs must give the same sizes here, which pins the chunk choice.
# Times are in ms; the default is 1 ms per sequence number.

_SIXTY_FOUR = 64.0  # 256 ticks: one tick past the largest small delta


def _libwebrtc_case(received, times=None, per_seq=1.0):
    if times is None:
        # libwebrtc's GenerateReceiveTimestamps: seq x delta, +65536 x delta per wrap.
        times, offset, last = [], 0.0, received[0]
        for seq in received:
            if seq < last:
                offset += 0x10000 * per_seq
            last = seq
            times.append(offset + seq * per_seq)
    base = received[0]
    count = ((received[-1] - base) & 0xFFFF) + 1
    arrivals = [None] * count
    for seq, ms in zip(received, times):
        arrivals[(seq - base) & 0xFFFF] = ms / 1000
    return TransportFeedback(0, 0, TwccFeedback.from_arrivals(base, arrivals))


def _words(size: int) -> int:
    return (size + 3) // 4 * 4


_SPLIT_TIMES = [1.0]
for _i in range(1, 22):
    _SPLIT_TIMES.append(_SPLIT_TIMES[-1] + (_SIXTY_FOUR if _i == 8 else 1.0))


@pytest.mark.parametrize(
    "packet, expected",
    [
        (_libwebrtc_case([1, 2, 7, 8, 9, 10, 13]), 20 + 2 + 7),  # OneBitVector
        (_libwebrtc_case([1, 2, 7, 8, 9, 10, 13, 14]), 20 + 2 + 8),  # FullOneBitVector
        (_libwebrtc_case([65533, 65534, 65535, 0, 1, 2]), 20 + 2 + 6),  # WrapReceived
        (_libwebrtc_case([65533, 65534, 1, 2]), 20 + 2 + 4),  # WrapMissing
        (_libwebrtc_case([1, 2, 6, 7], per_seq=_SIXTY_FOUR), 20 + 2 + 4 * 2),  # TwoBitVector
        (_libwebrtc_case([1, 2, 6, 7, 8], per_seq=_SIXTY_FOUR), 20 + 4 + 5 * 2),  # TwoBitVectorFull
        (_libwebrtc_case([1, 2, 6, 7, 8], [2, 1, 4, 3, 3 + _SIXTY_FOUR]), 20 + 2 + 3 * 2 + 1),
        (_libwebrtc_case([0, 8191 + 14], [1, 2]), 20 + 3 * 2 + 2),  # MaxRle
        (_libwebrtc_case([0, 29], [1, 2]), 20 + 3 * 2 + 2),  # MinRle
        (_libwebrtc_case([0, 6], [0, _SIXTY_FOUR]), 20 + 2 + 1 + 2),  # OneToTwoBitVector
        (_libwebrtc_case([0, 7], [0, _SIXTY_FOUR]), 20 + 4 + 1 + 2),  # ...SimpleSplit
        (_libwebrtc_case(list(range(22)), _SPLIT_TIMES), 20 + 3 * 2 + 21 + 2),  # ...Split
    ],
)
def test_libwebrtc_sizes(packet, expected):
    data = bytes(packet)
    assert len(data) == _words(expected)
    assert parse_rtcp(data) == [packet]


def test_libwebrtc_max_rle_chunks():
    # "1-bit vector (1 received + 13 dropped), RLE of max length, then the rest".
    data = bytes(_libwebrtc_case([0, 8191 + 14], [1, 2]).feedback)
    assert data[8:14] == chunks(0x8000 | 1 << 13, 0x1FFF, 0x2001)
