"""The native ingress parsers == the Python ones they replace.

* ``RtpParser.parse`` (native/rtp_parse.c) against ``RtpHeader.parse`` +
  ``codecs.is_keyframe``: random valid packets (CSRCs, one-byte and two-byte
  extension blocks with the wanted ids among others, duplicates, id 15,
  padding) give the same fields and extension values; malformed ones (and
  random bytes, and mutations of valid ones) the same ValueError message.
* ``is_keyframe`` over VP8 descriptors and H.264 NAL / STAP-A / FU-A shapes and
  random payloads.
* ``serve_nacks`` against ViewerSession.on_rtcp's NACK handling on
  ``rtcp.parse_rtcp``: same per-consumer counts under the budget, and the
  sinks receive exactly the ring packets the Python plane would re-send.
"""

from __future__ import annotations

import socket
import struct
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.media import codecs, rtcp
from edge.media.rtp import RtpHeader

MID, RID, RRID, AST, TWCC, LEVEL = 1, 10, 11, 3, 5, 14
CODECS = {96: "vp8", 102: "h264", 111: "opus", 98: "vp9"}


def parser() -> Any:
    from edge.media import _native

    return _native.RtpParser(
        mid_id=MID, rid_id=RID, repaired_rid_id=RRID, abs_send_time_id=AST,
        transport_cc_id=TWCC, audio_level_id=LEVEL, codecs=CODECS,
    )


def python_parse(data: bytes) -> tuple[Any, ...]:
    try:
        h = RtpHeader.parse(data)
    except ValueError as exc:
        return ("ValueError", str(exc))
    ext = h.extensions

    def text(i: int) -> str | None:
        return ext[i].decode(errors="replace") if i in ext else None

    def number(i: int) -> int | None:
        return int.from_bytes(ext[i], "big") if i in ext and len(ext[i]) <= 8 else None

    codec = CODECS.get(h.payload_type, "")
    return (
        h.payload_offset, h.padding_length, h.marker, h.payload_type, h.sequence_number,
        h.timestamp, h.ssrc, text(MID), text(RID), text(RRID), number(AST), number(TWCC),
        ext.get(LEVEL), codecs.is_keyframe(codec, data[h.payload_offset :]),
    )


def native_parse(p: Any, data: bytes) -> tuple[Any, ...]:
    try:
        return tuple(p.parse(data))
    except ValueError as exc:
        return ("ValueError", str(exc))


# --- payloads ---------------------------------------------------------------------

@st.composite
def vp8_payloads(draw: st.DrawFn) -> bytes:
    first = draw(st.integers(0, 255))
    out = bytes([first])
    if first & 0x80:
        ext = draw(st.integers(0, 255))
        out += bytes([ext])
        if ext & 0x80:
            out += draw(st.sampled_from([b"\x12", b"\x92\x34"]))
        if ext & 0x40:
            out += draw(st.binary(min_size=1, max_size=1))
        if ext & 0x30:
            out += draw(st.binary(min_size=1, max_size=1))
    return out + draw(st.binary(max_size=12))


@st.composite
def h264_payloads(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["single", "stap", "fu", "random"]))
    if kind == "single":
        return bytes([draw(st.integers(0, 255))]) + draw(st.binary(max_size=10))
    if kind == "fu":
        return bytes([0x60 | 28, draw(st.integers(0, 255))]) + draw(st.binary(max_size=10))
    if kind == "stap":
        out = bytes([0x60 | 24])
        for _ in range(draw(st.integers(0, 4))):
            nal = bytes([draw(st.integers(0, 255))]) + draw(st.binary(max_size=6))
            size = draw(st.sampled_from([len(nal), len(nal), 0, len(nal) + 3]))
            out += struct.pack("!H", size) + nal
        return out + draw(st.binary(max_size=2))
    return draw(st.binary(max_size=20))


payloads = st.one_of(vp8_payloads(), h264_payloads(), st.binary(max_size=30))


@given(codec=st.sampled_from(["vp8", "h264", "opus", "vp9", "av1"]), payload=payloads)
@settings(max_examples=2000, deadline=None)
def test_keyframe_detection_matches_codecs(codec: str, payload: bytes) -> None:
    from edge.media import _native

    assert _native.is_keyframe(codec, payload) is codecs.is_keyframe(codec, payload)


# --- RTP headers ------------------------------------------------------------------

ids = st.sampled_from([MID, RID, RRID, AST, TWCC, LEVEL, 2, 4, 7, 15, 0])


@st.composite
def extension_blocks(draw: st.DrawFn) -> bytes:
    form = draw(st.sampled_from(["one", "one", "two", "two", "other", "raw"]))
    body = b""
    if form == "one":
        for _ in range(draw(st.integers(0, 5))):
            if draw(st.integers(0, 5)) == 0:
                body += b"\x00"  # padding
                continue
            value = draw(st.one_of(st.text(max_size=6).map(str.encode), st.binary(min_size=1, max_size=16)))[:16] or b"x"
            body += bytes([(draw(ids) << 4) | (len(value) - 1)]) + value
        profile = 0xBEDE
    elif form == "two":
        for _ in range(draw(st.integers(0, 5))):
            value = draw(st.binary(max_size=20))
            body += bytes([draw(st.one_of(ids, st.integers(0, 255))), len(value)]) + value
        profile = 0x1000 | draw(st.integers(0, 15))
    elif form == "other":
        body = draw(st.binary(max_size=12))
        profile = draw(st.integers(0, 0xFFFF))
    else:
        return draw(st.binary(max_size=16))  # a block of any shape
    if draw(st.integers(0, 3)):
        body += bytes(-len(body) % 4)
        return struct.pack("!HH", profile, len(body) // 4) + body
    # a length field that does not match the elements
    return struct.pack("!HH", profile, draw(st.integers(0, 8))) + body


@st.composite
def rtp_packets(draw: st.DrawFn) -> bytes:
    csrcs = draw(st.integers(0, 15)) if draw(st.integers(0, 4)) == 0 else 0
    block = draw(extension_blocks()) if draw(st.integers(0, 3)) else b""
    padding = draw(st.integers(0, 8)) if draw(st.integers(0, 3)) == 0 else 0
    first = (draw(st.sampled_from([2] * 8 + [1, 3])) << 6) | csrcs | (0x10 if block else 0) | (0x20 if padding else 0)
    head = struct.pack(
        "!BBHII", first, (draw(st.booleans()) << 7) | draw(st.sampled_from([96, 102, 111, 98, 0, 127])),
        draw(st.integers(0, 65535)), draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)),
    )
    head += draw(st.binary(min_size=4 * csrcs, max_size=4 * csrcs))
    payload = draw(payloads)
    tail = b""
    if padding:
        tail = bytes(padding - 1) + bytes([draw(st.sampled_from([padding, padding, 0, 255]))])
    return head + block + payload + tail


@given(packet=rtp_packets(), cut=st.integers(0, 60), flip=st.integers(0, 200))
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_header_parse_matches_rtpheader(packet: bytes, cut: int, flip: int) -> None:
    p = parser()
    assert native_parse(p, packet) == python_parse(packet)
    truncated = packet[: max(0, len(packet) - cut)]
    assert native_parse(p, truncated) == python_parse(truncated)
    if flip < len(packet):
        mutated = packet[:flip] + bytes([packet[flip] ^ 0x5A]) + packet[flip + 1 :]
        assert native_parse(p, mutated) == python_parse(mutated)


@given(data=st.binary(max_size=120))
@settings(max_examples=3000, deadline=None)
def test_random_bytes_never_crash_and_parse_alike(data: bytes) -> None:
    assert native_parse(parser(), data) == python_parse(data)


def test_parser_without_ids_or_codecs_and_bad_arguments() -> None:
    import pytest

    from edge.media import _native

    packet = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + b"\xbe\xde\x00\x01\x10x\x00\x00" + b"\x10\x00\x00"
    assert _native.RtpParser().parse(packet) == (20, 0, False, 96, 1, 2, 3, None, None, None, None, None, None, False)
    assert _native.RtpParser(mid_id=1, codecs={96: "vp8"}).parse(packet)[7::6] == ("x", True)
    with pytest.raises(ValueError):
        _native.RtpParser(mid_id=256)
    with pytest.raises(ValueError):
        _native.RtpParser(codecs={128: "vp8"})


# --- NACKs ------------------------------------------------------------------------

SSRCS = [0x1111, 0x2222, 0x3333]


@st.composite
def compounds(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["nack", "nack", "nack", "rr", "pli"]))
        media = draw(st.sampled_from(SSRCS + [0x9999]))
        if kind == "nack":
            lost = draw(st.lists(st.integers(0, 65535) | st.integers(0, 40), max_size=40))
            parts.append(bytes(rtcp.Nack(sender_ssrc=1, media_ssrc=media, lost=lost)))
        elif kind == "pli":
            parts.append(bytes(rtcp.Pli(sender_ssrc=1, media_ssrc=media)))
        else:
            parts.append(bytes(rtcp.ReceiverReport(ssrc=1, reports=[])))
    data = b"".join(parts)
    mutation = draw(st.sampled_from(["none", "none", "none", "cut", "flip"]))
    if mutation == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mutation == "flip" and data:
        pos = draw(st.integers(0, len(data) - 1))
        data = data[:pos] + bytes([data[pos] ^ (1 << draw(st.integers(0, 7)))]) + data[pos + 1 :]
    return data


def reference_nacks(data: bytes, rings: list[dict[int, bytes]], budgets: list[int]) -> Any:
    """ViewerSession.on_rtcp's NACK path with the Python plane's retransmit."""
    try:
        packets = rtcp.parse_rtcp(data)
    except ValueError:
        return None
    per = [[0, 0, 0, 0, 0] for _ in rings]  # requested, throttled, served, first NACKs, stale
    sent: list[list[bytes]] = [[] for _ in rings]
    nacked: list[set[int]] = [set() for _ in rings]
    budgets = list(budgets)
    for packet in packets:
        if not isinstance(packet, rtcp.Nack) or packet.media_ssrc not in SSRCS:
            continue
        k = SSRCS.index(packet.media_ssrc)
        asked = packet.lost
        per[k][0] += len(asked)
        for seq in asked:  # RetransmitBuffer.first_nack
            if seq in rings[k] and seq not in nacked[k]:
                nacked[k].add(seq)
                per[k][3] += 1
        if len(asked) > budgets[k]:
            per[k][1] += len(asked) - budgets[k]
            asked = asked[: budgets[k]]
        budgets[k] -= len(asked)
        for seq in asked:
            if seq in rings[k]:
                sent[k].append(rings[k][seq])
                per[k][2] += 1
    return [tuple(x) for x in per], sent


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


@given(data=compounds(), budgets=st.lists(st.integers(0, 60), min_size=3, max_size=3), fill=st.data())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_serve_nacks_matches_the_python_path(data: bytes, budgets: list[int], fill: st.DataObject) -> None:
    from edge.media import _native

    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in SSRCS]
    try:
        natives, rings = [], []
        for ssrc, sink in zip(SSRCS, sinks):
            sink.bind(("127.0.0.1", 0))
            sink.setblocking(False)
            nc = _native.NativeConsumer(
                ssrc=ssrc, profile=1, key=bytes(30), fd=sender.fileno(), address=sink.getsockname(),
                video=True, clock_rate=90000, ring_size=64,
            )
            ring = {}
            for seq in fill.draw(st.lists(st.integers(0, 65535) | st.integers(0, 40), max_size=30)):
                packet = struct.pack("!HI", seq, ssrc) + bytes(seq % 7)
                nc.ring_put(seq, packet)
                ring = {s: p for s, p in ring.items() if (s & 63) != (seq & 63)}
                ring[seq] = packet
            natives.append(nc)
            rings.append(ring)
        status, per = _native.serve_nacks(data, SSRCS, natives, budgets, [True] * 3)
        expected = reference_nacks(data, rings, budgets)
        if status == -1:
            assert expected is None  # malformed for C means malformed for parse_rtcp
            assert all(not drain(s) for s in sinks)
            return
        if expected is None:
            # Only the Python decoders of other packet types saw the problem:
            # the caller parses the compound (status 1) and drops it then.
            assert status == 1
            return
        counts, sent = expected
        assert per == counts
        assert [drain(s) for s in sinks] == sent
        assert status == (1 if any(not isinstance(p, rtcp.Nack) for p in rtcp.parse_rtcp(data)) else 0)
    finally:
        sender.close()
        for s in sinks:
            s.close()


def test_serve_nacks_wrapper_keeps_the_consumer_books() -> None:
    """native_plane.serve_nacks updates nack_requests / nack_budget / retransmitted
    and sums what ViewerSession feeds its metrics with."""
    from edge.media import _native
    from edge.media.native_plane import serve_nacks

    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    try:
        nc = _native.NativeConsumer(
            ssrc=0x1111, profile=1, key=bytes(30), fd=sender.fileno(), address=sink.getsockname(),
            video=True, clock_rate=90000, ring_size=64,
        )
        for seq in range(10, 20):
            nc.ring_put(seq, b"p%d" % seq)
        consumer = SimpleNamespace(
            slot=SimpleNamespace(ssrc=0x1111, forwarder=nc), nack_budget=5, nack_requests=0,
            nacked_packets=0, retransmitted=0, transport=SimpleNamespace(closed=False),
        )
        other = SimpleNamespace(
            slot=SimpleNamespace(ssrc=0x2222, forwarder=object()), nack_budget=5, nack_requests=0,
            nacked_packets=0, retransmitted=0, transport=SimpleNamespace(closed=False),
        )
        data = bytes(rtcp.Nack(1, 0x1111, [8, 9, 10, 11, 12, 13, 14])) + bytes(rtcp.Nack(1, 0x2222, [1, 2]))
        outcome = serve_nacks(data, [consumer, other])  # type: ignore[list-item]
        assert (outcome.malformed, outcome.others) == (False, False)
        assert (outcome.received, outcome.throttled, outcome.served, outcome.missed) == (9, 2, 3, 4)
        assert (consumer.nack_requests, consumer.nack_budget, consumer.retransmitted) == (7, 0, 3)
        assert (other.nack_requests, other.nack_budget, other.retransmitted) == (2, 3, 0)
        # Loss is packets NACKed: 10..14 were sent (8 and 9 never were); other has no ring.
        assert (consumer.nacked_packets, other.nacked_packets) == (5, 0)
        assert drain(sink) == [b"p10", b"p11", b"p12"]
        assert nc.retransmitted == 3
        assert serve_nacks(b"\x81\xcd\x00\x09", [consumer]).malformed  # type: ignore[list-item]
        mixed = bytes(rtcp.Pli(1, 0x1111)) + bytes(rtcp.Nack(1, 0x1111, [15]))
        assert serve_nacks(mixed, [consumer]).others  # type: ignore[list-item]
        # A repeated NACK (the viewer asks again until it arrives) is not new loss...
        consumer.nack_budget = 5
        serve_nacks(bytes(rtcp.Nack(1, 0x1111, [10, 11, 16])), [consumer])  # type: ignore[list-item]
        assert consumer.nacked_packets == 7  # 15 (above) and 16 are new
        # ...until the slot holds a new packet under that sequence number.
        nc.ring_put(10 + 64, b"p74")
        serve_nacks(bytes(rtcp.Nack(1, 0x1111, [74])), [consumer])  # type: ignore[list-item]
        assert consumer.nacked_packets == 8
        # A keyframe started at 14: 12 and 13 are stale, neither served nor budgeted nor missed.
        nc.key_seq = 14
        consumer.nack_budget = 5
        drain(sink)
        outcome = serve_nacks(bytes(rtcp.Nack(1, 0x1111, [12, 13, 14, 15])), [consumer])  # type: ignore[list-item]
        assert (outcome.received, outcome.served, outcome.throttled, outcome.missed) == (4, 2, 0, 0)
        assert consumer.nack_budget == 3
        assert drain(sink) == [b"p14", b"p15"]
    finally:
        sender.close()
        sink.close()
