"""VP8 temporal-layer dropping in the Forwarder (edge/media/forwarder.py).

An L1T3 stream as Chromium sends it (TIDs 0,2,1,2 repeating, TL0PICIDX per TL0
frame, Y on the frames that reference only TL0), frames of one to three
packets. What the viewer gets must be one stream with no sequence or PictureID
gaps, whatever is dropped and whatever arrives late.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from edge.media.forwarder import ALL_TIDS, MARKS, Forwarder
from edge.media.vp8 import parse_ids

PATTERN = (0, 2, 1, 2)


def descriptor(pic: int, tl0: int, tid: int, sync: bool, start: bool) -> bytes:
    """X=1 (S on a frame's first packet), I L T, 15-bit PictureID, TL0PICIDX, TID|Y."""
    return bytes([0x80 | (0x10 if start else 0), 0xE0]) + struct.pack("!HBB", 0x8000 | pic, tl0, tid << 6 | (0x20 if sync else 0))


@dataclass
class Packet:
    seq: int
    ts: int
    pic: int
    tid: int
    keyframe: bool
    payload: bytes
    marker: bool = False  # the frame's last packet


def l1t3(frames: int, *, seq0: int = 65500, pic0: int = 32700, sizes: tuple[int, ...] = (3, 1, 2, 1)) -> list[Packet]:
    out: list[Packet] = []
    seq, tl0 = seq0, 200
    for n in range(frames):
        tid = PATTERN[n % 4]
        if tid == 0 and n:
            tl0 = (tl0 + 1) & 0xFF
        # Y: TL2 right after TL0 and every TL1 reference only TL0 (libwebrtc's pattern).
        sync = n % 4 in (1, 2)
        count = sizes[n % len(sizes)]
        for k in range(count):
            payload = descriptor((pic0 + n) & 0x7FFF, tl0, tid, sync, k == 0) + bytes([n & 0xFF, k])
            out.append(Packet(seq & 0xFFFF, 3000 * n, (pic0 + n) & 0x7FFF, tid, n == 0, payload, k == count - 1))
            seq += 1
    return out


def send(f: Forwarder, packets: list[Packet]) -> list[tuple[int, int, int, int]]:
    """(out seq, out PictureID, frame number, TID) of each packet the forwarder passes."""
    got = []
    for p in packets:
        ids = parse_ids(p.payload)
        mapped = f.map(p.seq, p.ts, p.keyframe, 1.0, ids, p.marker)
        if mapped is None:
            continue
        body = f.vp8(p.payload, ids)  # type: ignore[arg-type]
        out_ids = parse_ids(body)
        assert out_ids is not None and out_ids.tid == p.tid
        got.append((mapped[0], out_ids.picture_id, body[-2], p.tid))
    return got


def continuous(values: list[int], bits: int) -> bool:
    return all((b - a) & ((1 << bits) - 1) == 1 for a, b in zip(values, values[1:]))


def forwarder(tid_target: int) -> Forwarder:
    f = Forwarder(video=True, clock_rate=90000)
    f.switch("f", 90000)
    f.tid_target = tid_target
    return f


def test_descriptor_fields_are_parsed() -> None:
    ids = parse_ids(descriptor(0x1234, 9, 2, True, True))
    assert ids is not None and (ids.picture_id, ids.tl0, ids.tid, ids.sync, ids.start) == (0x1234, 9, 2, True, True)
    ids = parse_ids(descriptor(5, 9, 1, False, False))
    assert ids is not None and (ids.tid, ids.sync, ids.start) == (1, False, False)
    assert parse_ids(bytes([0x90, 0xE0, 0x80, 0x05, 0x07])) is None  # the TID byte is missing


def test_all_layers_pass_untouched_by_default() -> None:
    packets = l1t3(40)
    got = send(forwarder(ALL_TIDS), packets)
    assert len(got) == len(packets)
    assert continuous([g[0] for g in got], 16)
    assert [g[1] for g in got] == [p.pic for p in packets]  # no rewrite needed


def test_each_cap_keeps_its_layers_with_continuous_numbers() -> None:
    packets = l1t3(41)
    for cap, frames in ((1, 21), (0, 11)):
        got = send(forwarder(cap), packets)
        assert all(g[3] <= cap for g in got)
        assert len({g[2] for g in got}) == frames
        assert continuous([g[0] for g in got], 16)
        pics = list(dict.fromkeys(g[1] for g in got))
        assert len(pics) == frames and continuous(pics, 15)


def test_down_at_a_frame_start_up_at_a_sync_frame() -> None:
    packets = l1t3(24)
    f = forwarder(ALL_TIDS)
    got = send(f, packets[:3])  # the keyframe (3 packets)
    f.tid_target = 0
    # The cap applies from the next frame's first packet: frame 1 (TL2) is dropped.
    got += send(f, packets[3:])
    frames = [g[2] for g in got]
    assert sorted(set(frames)) == [0, 4, 8, 12, 16, 20]
    # Back up to every layer: taken at the next Y frame (frame 21, TL2 after TL0).
    f2 = forwarder(0)
    first = send(f2, packets[: 3 + 1 + 2 + 1])  # frames 0-3
    f2.tid_target = ALL_TIDS
    rest = send(f2, packets[7:])
    assert {g[2] for g in first} == {0}
    assert [g[2] for g in rest][:4] == [4, 4, 4, 5]  # frame 4 (TL0), then frame 5 (TL2, Y)
    out = [g[0] for g in first + rest]
    assert continuous(out, 16)
    assert continuous(list(dict.fromkeys(g[1] for g in first + rest)), 15)


def test_up_waits_for_a_sync_frame() -> None:
    f = forwarder(1)
    packets = [p for p in l1t3(12, sizes=(1,))]
    # Strip Y from every frame: only a keyframe may then raise the layer.
    for p in packets:
        b = bytearray(p.payload)
        b[5] &= ~0x20
        p.payload = bytes(b)
    send(f, packets[:4])
    f.tid_target = ALL_TIDS
    got = send(f, packets[4:])
    assert {g[3] for g in got} == {0, 1}
    key = l1t3(1, seq0=(packets[-1].seq + 1), pic0=(packets[-1].pic + 1), sizes=(1,))[0]
    key.ts = 3000 * 12
    send(f, [key] + l1t3(2, seq0=key.seq, pic0=key.pic, sizes=(1,))[1:])
    assert f.tid == ALL_TIDS


def test_a_late_packet_takes_the_offset_before_later_drops() -> None:
    packets = l1t3(16)
    # Frame 0 (keyframe): packets 0-2; frame 1 (TL2, dropped): 3; frame 2 (TL1): 4-5.
    # The keyframe's last packet comes after the dropped frame and the next one's first.
    order = [0, 1, 3, 4, 2, *range(5, len(packets))]
    f = forwarder(1)
    got = send(f, [packets[i] for i in order])
    by_frame: dict[int, list[int]] = {}
    for seq, _, frame, _ in got:
        by_frame.setdefault(frame, []).append(seq)
    # The late keyframe packet fills its own place, before the dropped TL2 frame's shift.
    all_out = sorted(by_frame[0] + by_frame[2], key=lambda s: (s - by_frame[0][0]) & 0xFFFF)
    assert continuous(all_out, 16)


def test_a_lost_packet_inside_a_dropped_frame_leaves_no_hole() -> None:
    packets = l1t3(12, sizes=(1, 3, 1, 1))  # frame 1 (TL2) has 3 packets
    del packets[2]  # its middle packet never comes
    got = send(forwarder(1), packets)
    assert continuous([g[0] for g in got], 16)


def test_packets_older_than_the_remembered_drops_are_not_forwarded() -> None:
    packets = l1t3(4 * (MARKS + 4), sizes=(1,))
    f = forwarder(0)
    send(f, packets[1:])  # the first packet (keyframe) is late... and far too late
    first = packets[0]
    first.keyframe = False
    assert f.map(first.seq, first.ts, False, 1.0, parse_ids(first.payload)) is None


def test_a_late_packet_of_a_dropped_layer_leaves_one_hole_between_frames() -> None:
    packets = l1t3(8)
    # Frame 2's first packet overtakes frame 1 (TL2): frame 1 is known only too late.
    order = [0, 1, 2, 4, 3, *range(5, len(packets))]
    got = send(forwarder(1), [packets[i] for i in order])
    out = [g[0] for g in got]
    steps = [(b - a) & 0xFFFF for a, b in zip(out, out[1:])]
    assert steps.count(2) == 1 and set(steps) == {1, 2}
    assert steps.index(2) == 2  # between frame 0 and frame 2: no frame is cut


def test_a_lost_head_of_a_dropped_frame_leaves_no_hole() -> None:
    packets = l1t3(12, sizes=(1, 3, 1, 1))  # frame 1 (TL2) has 3 packets
    del packets[1]  # its first packet never comes: the gap follows a frame that ended
    got = send(forwarder(1), packets)
    assert continuous([g[0] for g in got], 16)


def test_a_gap_that_may_hold_a_kept_frames_tail_is_left_open() -> None:
    packets = l1t3(12, sizes=(2, 2, 1, 1))  # frame 0 (kept) and frame 1 (TL2) have 2 packets
    del packets[1:3]  # frame 0's last packet and frame 1's first: the gap is not only frame 1's
    f = forwarder(1)
    got = send(f, packets)
    out = [g[0] for g in got]
    steps = [(b - a) & 0xFFFF for a, b in zip(out, out[1:])]
    assert steps[0] == 3 and set(steps[1:]) == {1}  # frame 0's tail keeps its place
    late = l1t3(12, sizes=(2, 2, 1, 1))[1]  # ...and is forwarded there when it comes
    mapped = f.map(late.seq, late.ts, False, 1.0, parse_ids(late.payload), True)
    assert mapped is not None and mapped[0] == (out[0] + 1) & 0xFFFF
