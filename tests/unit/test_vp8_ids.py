"""VP8 PictureID / TL0PICIDX continuity across layer switches: edge/media/vp8.py."""

from __future__ import annotations

import struct

from edge.media.forwarder import Forwarder
from edge.media.vp8 import parse_ids


def vp8(picture_id: int, tl0: int | None = None, long: bool = True) -> bytes:
    """A VP8 payload descriptor (X, I[, L]) and a byte of payload."""
    ext = 0x80 | (0x40 if tl0 is not None else 0)
    out = bytes([0x90, ext])
    out += struct.pack("!H", 0x8000 | picture_id) if long else bytes([picture_id & 0x7F])
    if tl0 is not None:
        out += bytes([tl0])
    return out + b"\x9d"


def ids_of(payload: bytes) -> tuple[int, int | None]:
    ids = parse_ids(payload)
    assert ids is not None
    return ids.picture_id, ids.tl0 if ids.tl0_at >= 0 else None


def test_parse_finds_both_fields_and_refuses_truncation() -> None:
    assert ids_of(vp8(0x1234, 7)) == (0x1234, 7)
    assert ids_of(vp8(0x55, None, long=False)) == (0x55, None)
    assert parse_ids(b"\x10\x00") is None  # no X bit
    assert parse_ids(bytes([0x90, 0x80, 0x81])) is None  # 15-bit PictureID cut short
    assert parse_ids(bytes([0x90, 0xC0, 0x05])) is None  # TL0PICIDX missing
    only_tid = parse_ids(bytes([0x90, 0x20, 0x40]))  # only a TID: temporal dropping needs it
    assert only_tid is not None and only_tid.tid == 1 and only_tid.picture_id_at < 0
    assert parse_ids(bytes([0x90, 0x00, 0x40])) is None  # none of the three


def test_a_switch_continues_the_numbers_of_the_previous_source() -> None:
    f = Forwarder(video=True, clock_rate=90000)
    f.switch("h", 90000)
    sent = []
    # Layer h: PictureIDs 30000.. (near the 15-bit wrap), TL0PICIDX 250..
    for n in range(4):
        payload = vp8((32766 + n) & 0x7FFF, (254 + n) & 0xFF)
        assert f.map(100 + n, 3000 * n, n == 0, 1.0 + n / 15) is not None
        sent.append(ids_of(f.vp8(payload, parse_ids(payload))))  # type: ignore[arg-type]
    assert sent == [(32766, 254), (32767, 255), (0, 0), (1, 1)]  # untouched: the first source
    # Switch to layer q, whose encoder numbers from somewhere else entirely.
    f.switch("q", 90000)
    for n in range(3):
        payload = vp8(1000 + n, 77 + n)
        assert f.map(5000 + n, 9000 * n, n == 0, 2.0 + n / 15) is not None
        sent.append(ids_of(f.vp8(payload, parse_ids(payload))))  # type: ignore[arg-type]
    assert sent[4:] == [(2, 2), (3, 3), (4, 4)]


def test_packets_of_one_picture_keep_one_number_and_a_7_bit_id_stays_7_bit() -> None:
    f = Forwarder(video=True, clock_rate=90000)
    f.switch("a", 90000)
    f.map(1, 0, True, 1.0)
    first = vp8(100, long=False)
    f.vp8(first, parse_ids(first))  # type: ignore[arg-type]
    f.switch("b", 90000)
    out = []
    for seq, pic in ((10, 5), (11, 5), (12, 6)):  # two packets of picture 5, then 6
        payload = vp8(pic, long=False)
        f.map(seq, pic * 3000, seq == 10, 2.0)
        rewritten = f.vp8(payload, parse_ids(payload))  # type: ignore[arg-type]
        assert len(rewritten) == len(payload)
        out.append(ids_of(rewritten)[0])
    assert out == [101, 101, 102]
