"""Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01).

Three pieces, all pure (no clock reads, no I/O):

* :class:`TwccFeedback` is the FCI of an RTCP RTPFB fmt=15 packet: base
  sequence, reference time, feedback packet count and one receive delta per
  packet (``None`` for a packet reported as not received). ``bytes()`` gives
  the FCI without padding; :class:`edge.media.rtcp.TransportFeedback` wraps it
  in the RTCP header and pads with the P bit as libwebrtc does.
* :func:`parse_sequence` / :func:`sequence_extension` for the 16-bit
  transport-wide sequence number carried in the RTP header extension.
* :class:`TwccHistory`, the send side's record of (sequence -> send time,
  size) for the packets sent on one transport (the data plane fills it), and
  :class:`TwccRecorder`, which turns feedback into :class:`PacketResult` lists
  for the bandwidth estimator (:mod:`edge.media.bwe`).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Iterator, Sequence

__all__ = [
    "DELTA_TICK", "REFERENCE_TICK", "PacketResult", "TwccFeedback", "TwccHistory", "TwccRecorder",
    "parse_sequence", "sequence_extension",
]  # fmt: skip

DELTA_TICK = 250e-6  # seconds per receive-delta unit
REFERENCE_TICK = 0.064  # seconds per reference-time unit
_TICKS_PER_REFERENCE = 256  # 64 ms / 250 us

_HEAD = struct.Struct("!HHI")  # base sequence, status count, reference time << 8 | fb count
_CHUNK = struct.Struct("!H")
_LARGE = struct.Struct("!h")

# Packet status symbols (section 3.1.1).
NOT_RECEIVED = 0
SMALL_DELTA = 1
LARGE_DELTA = 2  # or negative
_RESERVED = 3

# Chunk capacities: a run-length chunk counts 13 bits, a status vector holds
# 14 one-bit or 7 two-bit symbols.
_MAX_RUN = 0x1FFF
_ONE_BIT_CAPACITY = 14
_TWO_BIT_CAPACITY = 7

_UNREPORTED, _LOST, _RECEIVED = 0, 1, 2  # TwccRecorder per-packet feedback state

_REFERENCE_MIN = -(1 << 23)
_REFERENCE_MAX = (1 << 23) - 1
_SEQ_MOD = 1 << 16
_REFERENCE_MOD = 1 << 24


def _symbol(delta: int | None) -> int:
    if delta is None:
        return NOT_RECEIVED
    if 0 <= delta <= 0xFF:
        return SMALL_DELTA
    if -0x8000 <= delta <= 0x7FFF:
        return LARGE_DELTA
    raise ValueError("TWCC receive delta is out of range")


def _encode_chunks(symbols: Sequence[int]) -> list[int]:
    """Encode status symbols into chunks, the way libwebrtc's sender does.

    Symbols accumulate while they still fit one chunk kind: any 7 fit a two-bit
    vector, 14 without a large delta fit a one-bit vector, and up to 8191 equal
    ones fit a run. When the next symbol does not fit, the pending ones are
    emitted (a run if all equal, a one-bit vector if 14, else the first 7 as a
    two-bit vector). Matching libwebrtc keeps re-serialized Chrome feedback
    byte-identical, which the known-answer test checks.
    """
    chunks: list[int] = []
    pending: list[int] = []
    all_same = True
    has_large = False

    def fits(symbol: int) -> bool:
        size = len(pending)
        if size < _TWO_BIT_CAPACITY:
            return True
        if size < _ONE_BIT_CAPACITY and not has_large and symbol != LARGE_DELTA:
            return True
        return size < _MAX_RUN and all_same and pending[0] == symbol

    for symbol in symbols:
        if pending and not fits(symbol):
            if all_same:
                chunks.append(_run_chunk(pending[0], len(pending)))
                pending = []
            elif len(pending) == _ONE_BIT_CAPACITY:
                chunks.append(_one_bit_chunk(pending))
                pending = []
            else:
                chunks.append(_two_bit_chunk(pending[:_TWO_BIT_CAPACITY]))
                pending = pending[_TWO_BIT_CAPACITY:]
            all_same = all(s == pending[0] for s in pending) if pending else True
            has_large = LARGE_DELTA in pending
        if pending and symbol != pending[0]:
            all_same = False
        has_large = has_large or symbol == LARGE_DELTA
        pending.append(symbol)
    if pending:
        if all_same:
            chunks.append(_run_chunk(pending[0], len(pending)))
        elif len(pending) <= _TWO_BIT_CAPACITY:
            chunks.append(_two_bit_chunk(pending))
        else:
            chunks.append(_one_bit_chunk(pending))
    return chunks


def _run_chunk(symbol: int, length: int) -> int:
    return (symbol << 13) | length


def _one_bit_chunk(symbols: Sequence[int]) -> int:
    chunk = 0x8000
    for i, symbol in enumerate(symbols):
        chunk |= symbol << (_ONE_BIT_CAPACITY - 1 - i)
    return chunk


def _two_bit_chunk(symbols: Sequence[int]) -> int:
    chunk = 0xC000
    for i, symbol in enumerate(symbols):
        chunk |= symbol << (2 * (_TWO_BIT_CAPACITY - 1 - i))
    return chunk


def _decode_chunk(chunk: int, wanted: int, out: list[int]) -> None:
    """Append at most ``wanted`` symbols from one chunk to ``out``."""
    if not chunk & 0x8000:
        out.extend([(chunk >> 13) & 0x3] * min(chunk & _MAX_RUN, wanted))
    elif not chunk & 0x4000:
        for i in range(min(_ONE_BIT_CAPACITY, wanted)):
            out.append((chunk >> (_ONE_BIT_CAPACITY - 1 - i)) & 0x1)
    else:
        for i in range(min(_TWO_BIT_CAPACITY, wanted)):
            out.append((chunk >> (2 * (_TWO_BIT_CAPACITY - 1 - i))) & 0x3)


@dataclass(slots=True)
class TwccFeedback:
    """The transport-cc FCI: one entry per packet from ``base_sequence`` on.

    ``deltas[i]`` is the receive delta of packet ``base_sequence + i`` in
    250 us ticks (from the previous received packet, or from the reference
    time for the first), or ``None`` when the packet was not received. Values
    0..255 travel as small deltas, others (negative or larger) as large ones.
    """

    base_sequence: int
    reference_time: int  # signed 24-bit, 64 ms units, in the receiver's clock
    feedback_count: int  # 8-bit, counts feedback packets sent on the transport
    deltas: list[int | None] = field(default_factory=list)

    @classmethod
    def parse(cls, fci: bytes) -> TwccFeedback:
        if len(fci) < _HEAD.size:
            raise ValueError("TWCC feedback is too short")
        base, count, reference = _HEAD.unpack_from(fci)
        if count == 0:
            raise ValueError("TWCC feedback has no packets")
        reference_time = reference >> 8
        if reference_time > _REFERENCE_MAX:
            reference_time -= _REFERENCE_MOD
        symbols: list[int] = []
        pos = _HEAD.size
        # Every chunk consumes two bytes, so this loop ends with the data.
        while len(symbols) < count:
            if pos + 2 > len(fci):
                raise ValueError("TWCC packet chunk is truncated")
            _decode_chunk(_CHUNK.unpack_from(fci, pos)[0], count - len(symbols), symbols)
            pos += 2
        deltas: list[int | None] = []
        for symbol in symbols:
            if symbol == NOT_RECEIVED:
                deltas.append(None)
            elif symbol == SMALL_DELTA:
                if pos + 1 > len(fci):
                    raise ValueError("TWCC receive delta is truncated")
                deltas.append(fci[pos])
                pos += 1
            elif symbol == LARGE_DELTA:
                if pos + 2 > len(fci):
                    raise ValueError("TWCC receive delta is truncated")
                deltas.append(_LARGE.unpack_from(fci, pos)[0])
                pos += 2
            else:
                raise ValueError("TWCC packet status symbol is reserved")
        # Senders that do not use the RTCP P bit pad with up to 3 zero octets.
        if len(fci) - pos > 3:
            raise ValueError("TWCC feedback has trailing data")
        return cls(base, reference_time, reference & 0xFF, deltas)

    def __bytes__(self) -> bytes:
        if not 0 <= self.base_sequence < _SEQ_MOD:
            raise ValueError("TWCC base sequence is out of range")
        if not _REFERENCE_MIN <= self.reference_time <= _REFERENCE_MAX:
            raise ValueError("TWCC reference time is out of range")
        if not 0 <= self.feedback_count <= 0xFF:
            raise ValueError("TWCC feedback count is out of range")
        if not 1 <= len(self.deltas) < _SEQ_MOD:
            raise ValueError("TWCC packet count is out of range")
        symbols = [_symbol(delta) for delta in self.deltas]
        reference = ((self.reference_time & 0xFFFFFF) << 8) | self.feedback_count
        parts = [_HEAD.pack(self.base_sequence, len(self.deltas), reference)]
        parts.extend(_CHUNK.pack(chunk) for chunk in _encode_chunks(symbols))
        for delta in self.deltas:
            if delta is not None:
                parts.append(bytes((delta,)) if 0 <= delta <= 0xFF else _LARGE.pack(delta))
        return b"".join(parts)

    @classmethod
    def from_arrivals(
        cls, base_sequence: int, arrivals: Sequence[float | None], feedback_count: int = 0
    ) -> TwccFeedback:
        """Build feedback from receive times (seconds, receiver clock) per packet.

        The reference time is the first arrival floored to 64 ms; deltas are
        rounded against the running total so quantization error never
        accumulates (at most half a tick per packet). Deltas beyond the 16-bit
        range raise ValueError: the receiver must split such feedback.
        """
        first = next((t for t in arrivals if t is not None), None)
        if first is None:
            raise ValueError("TWCC feedback needs at least one received packet")
        reference = math.floor(first / REFERENCE_TICK)
        # Wire value wraps; the delta base is the unwrapped reference.
        reference_time = ((reference - _REFERENCE_MIN) % _REFERENCE_MOD) + _REFERENCE_MIN
        current = reference * _TICKS_PER_REFERENCE
        deltas: list[int | None] = []
        for arrival in arrivals:
            if arrival is None:
                deltas.append(None)
                continue
            ticks = round(arrival / DELTA_TICK)
            deltas.append(ticks - current)
            current = ticks
        feedback = cls(base_sequence & 0xFFFF, reference_time, feedback_count & 0xFF, deltas)
        for delta in deltas:
            _symbol(delta)
        return feedback

    def received(self) -> Iterator[tuple[int, int]]:
        """(16-bit sequence, arrival in 250 us ticks since the receiver's epoch)."""
        ticks = self.reference_time * _TICKS_PER_REFERENCE
        for i, delta in enumerate(self.deltas):
            if delta is not None:
                ticks += delta
                yield (self.base_sequence + i) & 0xFFFF, ticks


def parse_sequence(value: bytes) -> int:
    """The transport-wide sequence number from the header extension value."""
    if len(value) != 2:
        raise ValueError("TWCC sequence extension length is invalid")
    return int.from_bytes(value, "big")


def sequence_extension(sequence: int) -> bytes:
    """The 2-byte header extension value for a transport-wide sequence number."""
    return (sequence & 0xFFFF).to_bytes(2, "big")


def _unwrap(value: int, last: int, modulus: int) -> int:
    """The integer congruent to ``value`` (mod ``modulus``) nearest to ``last``."""
    half = modulus // 2
    return last + ((value - last + half) % modulus) - half


@dataclass(frozen=True, slots=True)
class PacketResult:
    """One sent packet as reported by feedback.

    ``sequence`` is unwrapped (monotonic over the transport's life; the wire
    value is ``sequence & 0xFFFF``). ``arrival_time`` is in seconds of the
    receiver's clock, comparable only with other arrivals on the same
    transport; ``None`` when the receiver reported the packet lost.
    """

    sequence: int
    send_time: float
    arrival_time: float | None
    size: int


class TwccHistory:
    """What was sent on one transport, by unwrapped transport sequence: a ring of
    (sequence, send time, size). The data plane stamps and records each packet
    (``send``); the native plane has a C twin (``edge.media._native.TwccHistory``)
    with the same three members, filled inside its fan-out."""

    def __init__(self, capacity: int = 8192, first_sequence: int = 0) -> None:
        if capacity < 1:
            raise ValueError("TWCC recorder capacity must be positive")
        self._capacity = capacity
        self._ring: list[tuple[int, float, int] | None] = [None] * capacity
        self._next = first_sequence & 0xFFFF  # unwrapped next sequence to allocate
        self.highest: int | None = None  # highest unwrapped sequence recorded

    @property
    def capacity(self) -> int:
        return self._capacity

    def send(self, send_time: float, size: int) -> int:
        """Allocate the next 16-bit sequence for a packet and record it."""
        sequence = self._next
        self.store(sequence, send_time, size)
        return sequence & 0xFFFF

    def store(self, unwrapped: int, send_time: float, size: int) -> None:
        self._ring[unwrapped % self._capacity] = (unwrapped, send_time, size)
        if self.highest is None or unwrapped > self.highest:
            self.highest = unwrapped
            self._next = unwrapped + 1

    def lookup(self, unwrapped: int) -> tuple[int, float, int] | None:
        entry = self._ring[unwrapped % self._capacity]
        return entry if entry is not None and entry[0] == unwrapped else None


class TwccRecorder:
    """Send-side history of one transport's packets, keyed by transport sequence,
    and what feedback already said about each.

    Bounded to the history's capacity (a ring indexed by unwrapped sequence):
    feedback about packets older than that is ignored, as is feedback for
    sequences never sent. 16-bit sequence and 24-bit reference time wraps are
    unwrapped against the newest values seen. Each packet is reported at
    most once as lost and once as received, however often feedback repeats it.
    """

    def __init__(
        self, capacity: int = 8192, first_sequence: int = 0, history: TwccHistory | None = None
    ) -> None:
        self.history = history if history is not None else TwccHistory(capacity, first_sequence)
        self._capacity = self.history.capacity
        # What feedback already said about each slot, so a packet reported
        # twice (receivers re-send lost ones that turned up late) counts once.
        self._reported: list[int] = [_UNREPORTED] * self._capacity
        self._reported_seq: list[int] = [-1] * self._capacity
        self._reference: int | None = None  # last unwrapped reference time

    def send(self, send_time: float, size: int) -> int:
        """Allocate the next 16-bit sequence for a packet and record it."""
        return self.history.send(send_time, size)

    def record(self, sequence: int, send_time: float, size: int) -> None:
        """Record a packet whose 16-bit sequence was allocated elsewhere."""
        highest = self.history.highest
        last = highest if highest is not None else self.history._next  # type: ignore[attr-defined]
        self.history.store(_unwrap(sequence & 0xFFFF, last, _SEQ_MOD), send_time, size)

    def on_feedback(self, feedback: TwccFeedback) -> list[PacketResult]:
        """Results for the recorded packets the feedback covers, in sequence order."""
        highest = self.history.highest
        if highest is None:
            return []
        base = _unwrap(feedback.base_sequence, highest, _SEQ_MOD)
        reference = feedback.reference_time
        if self._reference is not None:
            reference = _unwrap(reference, self._reference, _REFERENCE_MOD)
        self._reference = reference
        ticks = reference * _TICKS_PER_REFERENCE
        lookup = self.history.lookup
        results: list[PacketResult] = []
        for i, delta in enumerate(feedback.deltas):
            arrival: float | None = None
            if delta is not None:
                ticks += delta
                arrival = ticks * DELTA_TICK
            entry = lookup(base + i)
            if entry is None:
                continue
            slot = (base + i) % self._capacity
            if self._reported_seq[slot] != base + i:
                # The ring slot holds a newer packet than the one reported on before.
                self._reported_seq[slot] = base + i
                self._reported[slot] = _UNREPORTED
            reported = self._reported[slot]
            # Report each packet once as lost and once as received at most; a
            # late "received" after "lost" still counts (it did arrive).
            if reported == _RECEIVED or (reported == _LOST and arrival is None):
                continue
            self._reported[slot] = _LOST if arrival is None else _RECEIVED
            results.append(PacketResult(base + i, entry[1], arrival, entry[2]))
        return results
