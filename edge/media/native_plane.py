"""The native data plane: the PythonDataPlane's work per packet, in C (native/).

``NativeDataPlane`` has the interface of ``PythonDataPlane`` (edge/media/dataplane.py)
and produces byte-identical packets (tests/native proves it against the Python
plane with pylibsrtp). It needs the extension ``edge.media._native``, built by
``pip install`` from native/ (a C compiler, Python headers, OpenSSL's libcrypto
headers: Debian gcc, python3-dev, libssl-dev); importing this module raises
ImportError when it is missing, and ``create_dataplane("native")`` then falls
back to the Python plane with a warning.

What runs where
---------------
``forward()`` does, per ingress packet, a dict lookup and one C call:
``Fanout.forward`` (native/edge_native.c), which

1. with the GIL: checks each consumer's ``transport.closed`` and, for a
   consumer about to start from nothing, draws its random origins from
   Python's ``random`` exactly as ``Forwarder._rebase`` would (same calls, same
   order, so a seeded ``random`` gives identical streams in both planes);
2. without the GIL, per consumer: the Forwarder mapping, the PT map, the
   extension block (mid, abs-send-time, audio level, playout delay with the
   consumer's ids; for a viewer that negotiated transport-cc, the next
   transport-wide sequence from its ``TwccHistory`` (native/twcc.c), recorded
   with the send time as ``TwccHistory.send`` does in the Python plane),
   the header rewrite, SRTP protect with the consumer's own context, the store
   into its retransmit ring, and the sends: packets are queued and written with
   ``sendmmsg``, one call per run of packets on the same socket (the same
   socket inode, as each NativeConsumer holds its own dup()): on the node's one
   UDP port (edge/transport/udpmux.py, the default) a whole fan-out of up to 64
   viewers is one ``sendmmsg``; with ``udp_mux = false`` each viewer has its own
   aioice socket and gets a call of its own (``Fanout.send_calls`` counts them);
3. with the GIL: ``consumer.packets += 1`` and ``consumer.bytes += len`` as
   the Python plane does (straight into the ``__slots__`` members).

``retransmit()`` is one C call too: the ring lookups and one ``sendmmsg`` for
the whole NACK, without the GIL.

State ownership
---------------
A ``NativeConsumer`` belongs to a ConsumerSlot (one per outgoing SSRC), not to a
Consumer: the slot's Forwarder and RetransmitBuffer outlive the Consumers that
come and go in the slot (a co-host replacing the host), and so must its SRTP
context, whose rollover counter continues with the sequence numbers. When the
native plane first forwards to a slot it creates the NativeConsumer from the
slot's state (current Forwarder values, SSRC, mid and extension ids, ring size)
and its transport (``srtp_keys()``: profile and tx key+salt; ``egress_route()``:
socket fd, which the NativeConsumer dup()s, and remote address), and then
**replaces** ``slot.forwarder`` and ``consumer.forwarder`` with it. The
NativeConsumer implements the Forwarder interface (``video``, ``clock_rate``,
``source``, ``seq_offset``, ``ts_offset``, ``last_seq``, ``last_ts``,
``last_wall``, ``started``, ``waiting_for_keyframe``, ``switch()``, ``map()``) on
its C state, so there is one copy of the mapping state, no sync per packet, and
whatever the control plane reads or calls (``started`` and ``ts_offset`` for
SRs, ``switch()`` on attach, ``waiting_for_keyframe``) is the state the C code
uses. ``slot.retransmit`` likewise becomes a view on the native ring
(``get``/``put``/``len``).

SRTP ownership
--------------
Once the native plane protects a slot's RTP with its own SRTP context, nothing
else may protect RTP for that SSRC: two contexts would each keep their own
packet index and replay window for it (and, with GCM, could reuse a nonce).
That holds by construction: the node's aiortc senders never run
(``EdgePeerConnection``) and a process runs one data plane. RTCP (the SRs of
``PublisherSession._sender_report``) still goes through aiortc's
``_tx_srtp.protect_rtcp``: SRTCP has its own index, carried in each packet
(E flag + 31-bit SRTCP index), separate from the RTP packet index, and the
receiver keeps separate replay state for SRTP and SRTCP, so the native RTP
context and aiortc's RTCP context of the same SSRC never collide.

Ingress (native/srtp_rx.c, native/rtp_parse.c, native/ingress.c)
------------------------------------------------------------------
``NativeDataPlane.srtp_receiver`` is the transports' ``srtp_receiver_factory``
(set by MediaNode.create_session): once a transport connects, its inbound SRTP
and SRTCP are unprotected by a ``SrtpReceiver`` keyed with ``srtp_rx_keys()``
instead of aiortc's pylibsrtp session: same bytes out, same packets refused
with the same messages (libsrtp 2.7's per-SSRC streams, index estimation,
1024-packet replay window, SRTCP's 128-entry window), the crypto without the
GIL. Its ``SrtpError`` subclasses ``pylibsrtp.Error``, so aiortc's receive loop
and ``_CountingSrtp`` (``on_drop("srtp")`` / ``on_drop("srtcp")``) treat a
refusal exactly as before. ``counters()`` sums the receivers' counters and
``consumer_counters()`` the live native consumers' (protect errors, EAGAIN
drops, send errors, retransmissions) for /metrics.

``rtp_parser(sections)`` gives a ``RtpParser`` whose ``parse(data)`` does
``RtpHeader.parse`` + the extension lookups + ``codecs.is_keyframe`` in one C
call (``RtpParser.parse`` below says what it returns), and ``serve_nacks``
answers a viewer's generic NACKs from the native rings without building
Python objects per sequence number.

Differences from the Python plane (only on failure paths)
----------------------------------------------------------
* A packet SRTP refuses (its index is more than the replay window, 1024, behind
  the newest sent) or whose extension block cannot be encoded is skipped for
  that consumer and counted (``NativeConsumer.protect_errors``); pylibsrtp
  raises out of the whole ``forward()`` instead.
* A full socket buffer (EAGAIN) drops the datagram (``NativeConsumer.eagain``);
  asyncio's transport would queue it. The packet is in the ring: a NACK repairs it.
* The native plane has no 1356-byte limit (pylibsrtp's buffer).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ..observability.logging import get_logger
from .dataplane import PythonDataPlane
from ..transport.webrtc import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_REPAIRED_RID,
    EXT_RID,
    EXT_TRANSPORT_CC,
    MediaSection,
)
from .rtp import RtpHeader, abs_send_time

try:
    from . import _native
except ImportError as exc:  # pragma: no cover - exercised by create_dataplane
    raise ImportError(
        "the native data plane extension edge.media._native is not built "
        f"({exc}); reinstall the project (pip install -e .) with gcc, python3-dev "
        "and libssl-dev present"
    ) from exc

if TYPE_CHECKING:
    from .consumer import Consumer
    from .producer import Producer

log = get_logger("edge.media")

NativeConsumer = _native.NativeConsumer
Fanout = _native.Fanout
SrtpReceiver = _native.SrtpReceiver
TwccHistory = _native.TwccHistory
RtpParser = _native.RtpParser
SrtpError = _native.SrtpError

__all__ = [
    "NackOutcome",
    "NativeConsumer",
    "NativeDataPlane",
    "NativeRetransmitView",
    "RtpParser",
    "SrtpReceiver",
    "native_consumer_for",
    "rtp_parser",
    "serve_nacks",
]


def rtp_parser(sections: Iterable[MediaSection]) -> Any:
    """A RtpParser for a publisher's negotiated m-lines (one BUNDLE: one id per URI).

    ``parser.parse(data)`` returns the tuple
    ``(payload_offset, padding_length, marker, payload_type, sequence_number,
    timestamp, ssrc, mid, rid, repaired_rid, abs_send_time, transport_cc,
    audio_level, keyframe)``: the first seven as ``RtpHeader``'s fields; ``mid``,
    ``rid``, ``repaired_rid`` as str (UTF-8, errors replaced) or None;
    ``abs_send_time`` and ``transport_cc`` as int (the value big-endian) or None;
    ``audio_level`` as the raw extension bytes (what ``forward`` passes on) or
    None; ``keyframe`` = ``codecs.is_keyframe(codec of payload_type,
    data[payload_offset:])``. Malformed packets raise ValueError with
    ``RtpHeader.parse``'s message.
    """
    ids: dict[str, int] = {}
    codecs: dict[int, str] = {}
    for section in sections:
        for uri, ext_id in section.extensions.items():
            ids.setdefault(uri, ext_id)
        for codec in section.codecs:
            codecs.setdefault(codec.payload_type, codec.name)
    return RtpParser(
        mid_id=ids.get(EXT_MID, 0),
        rid_id=ids.get(EXT_RID, 0),
        repaired_rid_id=ids.get(EXT_REPAIRED_RID, 0),
        abs_send_time_id=ids.get(EXT_ABS_SEND_TIME, 0),
        transport_cc_id=ids.get(EXT_TRANSPORT_CC, 0),
        audio_level_id=ids.get(EXT_AUDIO_LEVEL, 0),
        codecs=codecs,
    )


@dataclass(slots=True)
class NackOutcome:
    """What serve_nacks did with one RTCP compound from a viewer.

    ``malformed``: the compound does not frame (nothing was served; drop it as
    ``malformed_rtcp``). ``others``: it holds packets besides generic NACKs,
    which the caller still has to handle (parse it and skip the Nacks).
    The counts are the sums ViewerSession.on_rtcp feeds its metrics with.
    """

    malformed: bool
    others: bool
    received: int = 0  # sequence numbers asked for (nack_received)
    throttled: int = 0  # beyond the consumers' budgets (nack_throttled)
    served: int = 0  # re-sent from the rings (nack_served)
    missed: int = 0  # asked within budget, no longer in the ring (nack_missed)
    stale: int = 0  # from before the latest keyframe: not served, not budgeted (nack_stale)


def serve_nacks(data: bytes, consumers: Sequence["Consumer"], now: float = 0.0) -> NackOutcome:
    """Serve a viewer's generic NACKs (RFC 4585) in one C call, GIL released.

    ``data`` is the viewer's unprotected RTCP compound, ``consumers`` the
    viewer's current consumers (``slot.consumer`` of each slot). For each NACK,
    in order, naming a consumer's SSRC: its sequence numbers (PID, then the BLP
    bits) are counted in ``consumer.nack_requests``, those of sent packets NACKed
    for the first time in ``consumer.nacked_packets``; those from before the
    latest keyframe sent are dropped (not served, not budgeted); at most
    ``consumer.nack_budget`` of them (the first ones) are re-sent from the
    slot's ring with sendmmsg and taken off the budget, the rest are
    throttled; ``consumer.retransmitted`` gets what was re-sent. The same
    semantics as ViewerSession.on_rtcp with the Python plane.
    """
    natives = []
    for consumer in consumers:
        native = consumer.slot.forwarder
        natives.append(native if isinstance(native, NativeConsumer) else None)
    status, per = _native.serve_nacks(
        data,
        [consumer.slot.ssrc for consumer in consumers],
        natives,
        [consumer.nack_budget for consumer in consumers],
        [not consumer.transport.closed for consumer in consumers],
        now,
    )
    if status < 0:
        return NackOutcome(malformed=True, others=False)
    outcome = NackOutcome(malformed=False, others=status == 1)
    for consumer, (requested, throttled, served, first, stale) in zip(consumers, per):
        if not requested:
            continue
        # As the Python path: requests from before the latest keyframe are
        # neither served nor taken off the budget nor counted as missed.
        asked = requested - stale - throttled
        consumer.nack_requests += requested
        consumer.nacked_packets += first
        consumer.nack_budget -= asked
        consumer.retransmitted += served
        outcome.received += requested
        outcome.throttled += throttled
        outcome.served += served
        outcome.missed += asked - served
        outcome.stale += stale
    return outcome


class NativeRetransmitView:
    """RetransmitBuffer's interface on a NativeConsumer's ring (slot.retransmit)."""

    __slots__ = ("native",)

    def __init__(self, native: Any) -> None:
        self.native = native

    def __len__(self) -> int:
        return int(self.native.ring_size)

    def put(self, sequence_number: int, packet: bytes) -> None:
        self.native.ring_put(sequence_number, packet)

    def first_nack(self, sequence_number: int) -> bool:
        # Only the Python NACK path asks, which the native plane does not take
        # (serve_nacks counts first NACKs in C): any stored packet counts.
        return self.native.ring_get(sequence_number) is not None

    def get(self, sequence_number: int) -> bytes | None:
        return self.native.ring_get(sequence_number)  # type: ignore[no-any-return]


def _sockaddr(remote: Any) -> tuple[Any, ...]:
    """A remote (host, port) as a numeric sockaddr tuple the C side parses."""
    host, port = remote[0], int(remote[1])
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)
    return tuple(infos[0][4])


# The Forwarder's temporal-layer state (edge/media/forwarder.py), copied over as it is.
TEMPORAL_STATE = (
    "tid", "tid_target", "in_last", "in_dropped", "in_end", "drop_pic", "pic_in_last", "seq_marks", "pic_marks", "marks_lost",
)


def native_consumer_for(consumer: "Consumer") -> Any:
    """The NativeConsumer of the consumer's slot, created on first use.

    Creating it takes the slot over: ``slot.forwarder``, ``consumer.forwarder``,
    ``slot.retransmit`` and ``consumer.retransmit`` become the native state.
    """
    slot = consumer.slot
    current = slot.forwarder
    if isinstance(current, NativeConsumer):
        if consumer.forwarder is not current:
            consumer.forwarder = current
            consumer.retransmit = slot.retransmit
        return current
    transport = consumer.transport
    keys = transport.srtp_keys()
    fd, remote = transport.egress_route()
    native = NativeConsumer(
        ssrc=slot.ssrc,
        profile=int(keys["profile"]),
        key=bytes(keys["tx"]),
        fd=fd,
        address=_sockaddr(remote),
        video=bool(current.video),
        clock_rate=int(current.clock_rate),
        ring_size=len(slot.retransmit),
        mid=slot.section.mid.encode(),
        mid_id=slot.mid_id or 0,
        abs_send_time_id=slot.ast_id or 0,
        audio_level_id=slot.level_id or 0,
    )
    # The Python Forwarder's state so far (switch() on attach set source/started).
    native.source = current.source
    native.seq_offset = current.seq_offset
    native.ts_offset = current.ts_offset
    native.last_seq = current.last_seq
    native.last_ts = current.last_ts
    native.last_wall = current.last_wall
    native.started = current.started
    native.floor_seq = current.floor_seq
    native.key_seq = current.key_seq
    native.vp8_sync = current.vp8_sync
    native.pic_offset = current.pic_offset
    native.tl0_offset = current.tl0_offset
    native.last_pic = current.last_pic
    native.last_tl0 = current.last_tl0
    for name in TEMPORAL_STATE:
        setattr(native, name, getattr(current, name))
    if slot.playout_delay is not None and slot.pd_id:
        native.set_playout_delay(slot.pd_id, slot.playout_delay)
    if slot.twcc is not None and slot.twcc_id:
        native.set_twcc(slot.twcc_id, slot.twcc)
    if slot.rtx_ssrc is not None:
        table = bytearray(b"\xff" * 128)
        for pt, rtx_pt in slot.rtx_pt.items():
            table[pt & 0x7F] = rtx_pt
        native.set_rtx(slot.rtx_ssrc, slot.rtx_seq, bytes(table))
    view = NativeRetransmitView(native)
    slot.forwarder = native  # type: ignore[assignment]
    slot.retransmit = view  # type: ignore[assignment]
    consumer.forwarder = native
    consumer.retransmit = view
    return native


# counters() names -> the SrtpReceiver / NativeConsumer attribute summed into them.
_RECEIVER_COUNTERS = (
    ("srtp_unprotected", "rtp_ok"),
    ("srtp_unprotect_failed", "rtp_failed"),
    ("srtcp_unprotected", "rtcp_ok"),
    ("srtcp_unprotect_failed", "rtcp_failed"),
)
_CONSUMER_COUNTERS = (
    ("protect_errors", "protect_errors"),
    ("eagain_drops", "eagain"),
    ("send_errors", "send_errors"),
    ("retransmitted", "retransmitted"),
)
_COUNTERS = tuple(name for name, _ in _RECEIVER_COUNTERS)


class NativeDataPlane:
    """``DataPlane`` on edge.media._native (see the module docstring)."""

    name = "native"

    def __init__(self) -> None:
        # producer -> (the consumer list the Fanout was built from, the Fanout)
        self._groups: dict[Any, tuple[list[Any], Any]] = {}
        # (transport, its SrtpReceiver) while the transport is open; then their
        # counts move to _retired so the counters stay monotonic.
        self._receivers: list[tuple[Any, Any]] = []
        self._retired: dict[str, int] = dict.fromkeys(_COUNTERS, 0)

    def twcc_history(self) -> Any:
        """A viewer's transport-wide send history, stamped inside the C fan-out."""
        return TwccHistory()

    def rtp_parser(self, sections: Iterable[MediaSection]) -> Any:
        """The RtpParser PublisherSession.on_rtp uses for its known streams."""
        return rtp_parser(sections)

    def serve_nacks(self, data: bytes, consumers: Sequence["Consumer"], now: float = 0.0) -> NackOutcome:
        """A viewer's NACKs served from the rings (ViewerSession.on_rtcp calls this);
        ``now`` is the send time RTX repairs are recorded with for TWCC."""
        return serve_nacks(data, consumers, now)

    def srtp_receiver(self, profile: int, key: bytes, transport: Any = None) -> Any:
        """An inbound SRTP/SRTCP session for a transport (its srtp_receiver_factory)."""
        receiver = SrtpReceiver(profile, key)
        self._prune()
        self._receivers.append((transport, receiver))
        return receiver

    def _prune(self) -> None:
        keep = []
        for transport, receiver in self._receivers:
            if transport is not None and getattr(transport, "closed", False):
                for name, attr in _RECEIVER_COUNTERS:
                    self._retired[name] += getattr(receiver, attr)
            else:
                keep.append((transport, receiver))
        self._receivers = keep

    def counters(self) -> dict[str, int]:
        """Ingress totals since start, monotonic (edge_native_ingress_packets)."""
        self._prune()
        totals = dict(self._retired)
        for _, receiver in self._receivers:
            for name, attr in _RECEIVER_COUNTERS:
                totals[name] += getattr(receiver, attr)
        return totals

    def consumer_counters(self) -> dict[str, int]:
        """Egress event sums over the live native consumers (a gauge: slots come and go)."""
        totals = dict.fromkeys((name for name, _ in _CONSUMER_COUNTERS), 0)
        seen: set[int] = set()
        for consumers, _ in self._groups.values():
            for consumer in consumers:
                native = consumer.slot.forwarder
                if isinstance(native, NativeConsumer) and id(native) not in seen:
                    seen.add(id(native))
                    for name, attr in _CONSUMER_COUNTERS:
                        totals[name] += getattr(native, attr)
        return totals

    def fanout(self, producer: "Producer") -> Any:
        """The producer's Fanout, rebuilt when its consumer list changed."""
        group = self._groups.get(producer)
        if group is None or group[0] != producer.consumers:
            group = self._rebuild(producer)
        return group[1]

    def _rebuild(self, producer: "Producer") -> tuple[list[Any], Any]:
        # Give back the sockets (our dup()s) of consumers that left with their
        # transport, now rather than when the cyclic GC frees the slot.
        stale = [p for p in self._groups if getattr(p, "closed", False)]
        gone = [c for p in stale for c in self._groups.pop(p)[0]]
        previous = self._groups.get(producer)
        if previous is not None:
            gone += [c for c in previous[0] if c not in producer.consumers]
        for consumer in gone:
            native = consumer.slot.forwarder
            if isinstance(native, NativeConsumer) and getattr(consumer.transport, "closed", False):
                native.close()
        entries = []
        for consumer in producer.consumers:
            try:
                native = native_consumer_for(consumer)
            except Exception as exc:  # a transport that is gone or not ready
                log.warning(
                    "native_consumer_unavailable", consumer=consumer.id, error=str(exc) or type(exc).__name__
                )
                continue
            entries.append((native, consumer, consumer.transport, consumer.pt_map))
        group = (list(producer.consumers), Fanout(entries))
        self._groups[producer] = group
        return group

    def forward(
        self, producer: "Producer", data: bytes, header: RtpHeader, keyframe: bool, now: float
    ) -> int:
        offset = header.payload_offset
        length = len(data) - header.padding_length - offset
        if length <= 0:  # padding-only probe packets carry nothing for a viewer
            return 0
        group = self._groups.get(producer)
        if group is None or group[0] != producer.consumers:
            group = self._rebuild(producer)
        level_id = producer.audio_level_id
        return group[1].forward(  # type: ignore[no-any-return]
            data,
            header.marker,
            header.payload_type,
            header.sequence_number,
            header.timestamp,
            offset,
            length,
            keyframe,
            abs_send_time(now) if producer.video else None,
            header.extensions.get(level_id) if level_id else None,
            now,
            getattr(producer, "vp8", False),
        )

    def forward_parsed(self, producer: "Producer", data: bytes, parsed: tuple[Any, ...], now: float) -> int:
        """``forward()`` with a ``RtpParser.parse`` tuple instead of an RtpHeader.

        The keyframe flag is the tuple's; its audio level is the value of the
        parser's audio-level id, which must be the producer's
        (``rtp_parser(sections)`` takes both from the same m-lines).
        """
        offset, padding, marker, payload_type, seq, timestamp = parsed[:6]
        length = len(data) - padding - offset
        if length <= 0:  # padding-only probe packets carry nothing for a viewer
            return 0
        group = self._groups.get(producer)
        if group is None or group[0] != producer.consumers:
            group = self._rebuild(producer)
        return group[1].forward(  # type: ignore[no-any-return]
            data,
            marker,
            payload_type,
            seq,
            timestamp,
            offset,
            length,
            parsed[13],
            abs_send_time(now) if producer.video else None,
            parsed[12] if producer.audio_level_id else None,
            now,
            getattr(producer, "vp8", False),
        )

    def retransmit(self, consumer: "Consumer", sequence_numbers: list[int], now: float | None = None) -> int:
        native = consumer.slot.forwarder
        if not isinstance(native, NativeConsumer):
            # Never forwarded natively: its RetransmitBuffer is the Python one.
            return PythonDataPlane.retransmit(self, consumer, sequence_numbers, now)  # type: ignore[arg-type]
        return native.retransmit(  # type: ignore[no-any-return]
            sequence_numbers, not consumer.transport.closed, time.time() if now is None else now
        )
