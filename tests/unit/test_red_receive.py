"""A publisher's RED unwrapped at ingress (edge/media/red_receive.py)."""

from __future__ import annotations

import pytest

from edge.media.red import encode_red
from edge.media.red_receive import RedReceiver
from edge.media.rtp import RtpHeader, build_packet, serialize_extensions

OPUS, RED = 111, 63


def red_packet(seq: int, ts: int, frames: dict[int, bytes], distance: int = 1, marker: bool = False) -> bytes:
    """What Chromium sends: frame ``seq`` as primary and up to ``distance`` earlier ones."""
    earlier = [((ts - 960 * k) & 0xFFFFFFFF, frames[seq - k]) for k in range(distance, 0, -1) if seq - k in frames]
    payload = encode_red(OPUS, ts, frames[seq], earlier)
    return build_packet(
        marker=marker, payload_type=RED, sequence_number=seq & 0xFFFF, timestamp=ts, ssrc=0x1234,
        extension_block=serialize_extensions({1: b"\x30"}), payload=payload,
    )


def unwrap(rx: RedReceiver, data: bytes) -> list[tuple[int, int, int, bytes, bool]]:
    out = []
    for packet in rx.unwrap(data, RtpHeader.parse(data)):
        h = RtpHeader.parse(packet)
        assert h.ssrc == 0x1234 and h.extensions.get(1) == b"\x30"
        out.append((h.payload_type, h.sequence_number, h.timestamp, packet[h.payload_offset :], h.marker))
    return out


FRAMES = {n: bytes([n]) * (20 + n) for n in range(100, 120)}


def test_each_red_packet_becomes_its_opus_packet() -> None:
    rx = RedReceiver({OPUS})
    got = [unwrap(rx, red_packet(n, 960 * n, FRAMES, marker=n == 100)) for n in range(100, 105)]
    assert got == [[(OPUS, n, 960 * n, FRAMES[n], n == 100)] for n in range(100, 105)]
    assert rx.recovered == 0 and rx.packets == 5


def test_a_lost_packet_is_rebuilt_from_the_next_ones_redundancy() -> None:
    rx = RedReceiver({OPUS})
    unwrap(rx, red_packet(100, 96000, FRAMES, distance=2))
    # 101 and 102 are lost; 103 carries 101 and 102 again (distance 2).
    got = unwrap(rx, red_packet(103, 96000 + 3 * 960, FRAMES, distance=2))
    assert [(g[1], g[2], g[3]) for g in got] == [
        (101, 96000 + 960, FRAMES[101]),
        (102, 96000 + 1920, FRAMES[102]),
        (103, 96000 + 2880, FRAMES[103]),
    ]
    assert rx.recovered == 2
    # With distance 1 only the newest missing packet comes back.
    rx = RedReceiver({OPUS})
    unwrap(rx, red_packet(100, 0, FRAMES))
    got = unwrap(rx, red_packet(103, 3 * 960, FRAMES))
    assert [g[1] for g in got] == [102, 103]


def test_nothing_is_rebuilt_when_the_spacing_does_not_say_where_it_goes() -> None:
    rx = RedReceiver({OPUS})
    unwrap(rx, red_packet(100, 0, FRAMES))
    # A DTX pause: the timestamps jumped by more than the sequence gap says.
    packet = red_packet(102, 5000, FRAMES)
    assert [g[1] for g in unwrap(rx, packet)] == [102]
    # A late packet (older than the newest) is passed on as it is.
    assert [g[1] for g in unwrap(rx, red_packet(101, 960, FRAMES))] == [101]


def test_blocks_of_another_payload_type_and_empty_primaries_are_skipped() -> None:
    rx = RedReceiver({OPUS})
    odd = encode_red(13, 960, b"", [(0, b"cn")])  # comfort noise, not a codec of the producer
    data = build_packet(marker=False, payload_type=RED, sequence_number=1, timestamp=960, ssrc=0x1234, extension_block=b"", payload=odd)
    assert rx.unwrap(data, RtpHeader.parse(data)) == []


@pytest.mark.parametrize("payload", [b"", b"\x80\x00", b"\xef\x00\x00\x10"])
def test_malformed_red_is_refused(payload: bytes) -> None:
    rx = RedReceiver({OPUS})
    data = build_packet(marker=False, payload_type=RED, sequence_number=1, timestamp=0, ssrc=1, extension_block=b"", payload=payload)
    with pytest.raises(ValueError):
        rx.unwrap(data, RtpHeader.parse(data))
