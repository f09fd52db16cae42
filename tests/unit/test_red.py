"""RED (RFC 2198) encoding for audio viewers: edge/media/red.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.media.red import (
    MAX_BLOCK_LENGTH,
    MAX_TIMESTAMP_OFFSET,
    RedEncoder,
    RedPolicy,
    RedSource,
    decode_red,
    encode_red,
    unused_payload_type,
)
from edge.media.rtp import RtpHeader, build_packet, serialize_extensions


def test_wire_format_matches_rfc_2198_example() -> None:
    # Two blocks: a redundant one 960 ticks earlier (3 bytes), then the primary.
    red = encode_red(111, 10_000, b"PRIMARY", [(10_000 - 960, b"old")])
    assert red[0] == 0x80 | 111  # F=1, block PT
    word = int.from_bytes(red[1:4], "big")
    assert word >> 10 == 960 and word & 0x3FF == 3  # offset, length
    assert red[4] == 111  # F=0: the primary's header
    assert red[5:] == b"oldPRIMARY"


@given(
    pt=st.integers(0, 127),
    ts=st.integers(0, 2**32 - 1),
    primary=st.binary(max_size=400),
    blocks=st.lists(
        st.tuples(st.integers(1, MAX_TIMESTAMP_OFFSET), st.binary(max_size=MAX_BLOCK_LENGTH)), max_size=3
    ),
)
def test_decode_gives_back_what_was_encoded(pt: int, ts: int, primary: bytes, blocks: list[tuple[int, bytes]]) -> None:
    redundant = [((ts - offset) & 0xFFFFFFFF, payload) for offset, payload in blocks]
    decoded = decode_red(encode_red(pt, ts, primary, redundant), ts)
    assert [(b.timestamp, b.payload) for b in decoded[:-1]] == redundant
    assert decoded[-1].payload == primary and decoded[-1].timestamp == ts
    assert all(b.payload_type == pt for b in decoded)


def test_blocks_out_of_reds_range_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_red(111, 100_000, b"p", [(100_000 - MAX_TIMESTAMP_OFFSET - 1, b"x")])
    with pytest.raises(ValueError):
        encode_red(111, 100_000, b"p", [(99_040, b"x" * (MAX_BLOCK_LENGTH + 1))])


@pytest.mark.parametrize("payload", [b"", b"\x80", b"\x80\x00\x00", b"\x80\x00\x00\x05\x6f"])
def test_malformed_red_is_an_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_red(payload, 0)


def _frames(encoder: RedEncoder, seqs: list[int]) -> list[list[tuple[int, bytes]]]:
    out = []
    for seq in seqs:
        red = encoder.encode(111, seq, seq * 960, f"frame{seq}".encode())
        out.append([(b.timestamp // 960, b.payload) for b in decode_red(red, seq * 960)])
    return out


def test_each_packet_carries_the_previous_distance_frames() -> None:
    frames = _frames(RedEncoder(2), [1, 2, 3, 4])
    assert frames[0] == [(1, b"frame1")]
    assert frames[1] == [(1, b"frame1"), (2, b"frame2")]
    assert frames[3] == [(2, b"frame2"), (3, b"frame3"), (4, b"frame4")]


def test_a_gap_upstream_carries_only_what_is_within_distance() -> None:
    # Packet 2 never reached the node: 3 carries 1 (two behind), 5 carries 3 only.
    frames = _frames(RedEncoder(2), [1, 3, 5])
    assert frames[1] == [(1, b"frame1"), (3, b"frame3")]
    assert frames[2] == [(3, b"frame3"), (5, b"frame5")]


def test_a_late_packet_carries_no_redundancy_from_its_future() -> None:
    frames = _frames(RedEncoder(2), [10, 11, 9, 12])
    assert frames[2] == [(9, b"frame9")]
    # and does not enter the history: 12 carries 10 and 11.
    assert frames[3] == [(10, b"frame10"), (11, b"frame11"), (12, b"frame12")]


def test_sequence_wrap_is_continuous() -> None:
    encoder = RedEncoder(2)
    for n, seq in enumerate([65534, 65535, 0]):
        red = encoder.encode(111, seq, 2**32 - 1920 + n * 960, bytes([n]))
    blocks = decode_red(red, 0)
    assert [(b.timestamp, b.payload) for b in blocks] == [(2**32 - 1920, b"\x00"), (2**32 - 960, b"\x01"), (0, b"\x02")]


def test_source_wraps_a_packet_keeping_its_header_and_extensions() -> None:
    ext = serialize_extensions({1: b"\x85", 3: b"0"})
    original = build_packet(
        marker=True, payload_type=111, sequence_number=7, timestamp=6720, ssrc=99,
        extension_block=ext, payload=b"opus!",
    )
    # The viewer's Opus PT (109) names the blocks, whatever the publisher's (111).
    source = RedSource(object(), 63, 109, 1, audio_level_id=1)
    header = RtpHeader.parse(original)
    wrapped = source.wrap(original, header.payload_offset, 0, 7, 6720)
    h = RtpHeader.parse(wrapped)
    assert (h.payload_type, h.sequence_number, h.timestamp, h.ssrc, h.marker) == (63, 7, 6720, 99, True)
    assert h.extensions == header.extensions
    blocks = decode_red(wrapped[h.payload_offset :], 6720)
    assert blocks[-1].payload == b"opus!" and blocks[-1].payload_type == 109


def test_unused_payload_type_avoids_the_producers() -> None:
    assert unused_payload_type({111, 0, 8}) == 63
    assert unused_payload_type({63, 111}) == 96


def test_distance_is_bounded() -> None:
    for bad in (-1, 4):
        with pytest.raises(ValueError):
            RedEncoder(bad)


def test_distance_zero_sends_the_primary_alone() -> None:
    encoder = RedEncoder(0)
    encoder.encode(111, 1, 960, b"a")
    red = encoder.encode(111, 2, 1920, b"b")
    assert red == bytes([111]) + b"b"


def test_policy_follows_loss_up_at_once_down_after_a_while() -> None:
    assert RedPolicy(2).distance == 0  # a new viewer: no redundancy until it loses
    policy = RedPolicy(2, start=1, release_after=10.0)
    assert policy.distance == 1
    assert policy.update(0.3, 0.0) and policy.distance == 2
    assert not policy.update(0.05, 1.0)  # needs 1 now: wait
    assert not policy.update(0.0, 10.9)
    assert policy.update(0.0, 11.0) and policy.distance == 0
    assert policy.update(0.02, 12.0) and policy.distance == 1
    # three from 20 % loss, where the configuration allows it
    assert RedPolicy(3).needed(0.3) == 3 and RedPolicy(3).needed(0.1) == 2
    # never above the configured maximum
    capped = RedPolicy(1, start=1)
    assert not capped.update(0.5, 0.0) and capped.distance == 1


def test_redundancy_never_takes_more_than_its_share_of_the_estimate() -> None:
    from edge.media.red import affordable

    # 32 kbit/s Opus: three copies need 96k, i.e. an estimate of 128k.
    assert affordable(32_000, 130_000) == 2
    assert affordable(32_000, 60_000) == 0  # 45k: one copy only
    assert affordable(32_000, 100_000) == 1
    assert affordable(32_000, None) is None and affordable(0, 300_000) is None
    policy = RedPolicy(2)
    assert policy.update(0.3, 0.0, ceiling=1) and policy.distance == 1
    assert not policy.update(0.3, 1.0, ceiling=1)
    assert policy.update(0.3, 2.0, ceiling=2) and policy.distance == 2
    # A crushed estimate (congestion) takes the redundancy back at once...
    assert policy.update(0.3, 3.0, ceiling=0) and policy.distance == 0
    # ...and an estimate that only just affords more again does not flip it back up.
    assert not policy.update(0.3, 3.1, ceiling=1, raise_ceiling=0) and policy.distance == 0
    assert policy.update(0.3, 3.2, ceiling=2, raise_ceiling=1) and policy.distance == 1
    assert affordable(32_000, 200_000, 0.8) == 2 and affordable(32_000, 130_000, 0.8) == 1
