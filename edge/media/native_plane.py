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
   extension block (mid, abs-send-time, audio level with the consumer's ids),
   the header rewrite, SRTP protect with the consumer's own context, the store
   into its retransmit ring, and the sends: packets are queued and written with
   ``sendmmsg``, one call per run of packets on the same socket (today each
   viewer has its own aioice socket, so a fan-out is one datagram per socket;
   with the planned one-port node a whole fan-out becomes one ``sendmmsg``);
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
from typing import TYPE_CHECKING, Any

from ..observability.logging import get_logger
from .dataplane import PythonDataPlane
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

__all__ = ["NativeConsumer", "NativeDataPlane", "NativeRetransmitView", "native_consumer_for"]


class NativeRetransmitView:
    """RetransmitBuffer's interface on a NativeConsumer's ring (slot.retransmit)."""

    __slots__ = ("native",)

    def __init__(self, native: Any) -> None:
        self.native = native

    def __len__(self) -> int:
        return int(self.native.ring_size)

    def put(self, sequence_number: int, packet: bytes) -> None:
        self.native.ring_put(sequence_number, packet)

    def get(self, sequence_number: int) -> bytes | None:
        return self.native.ring_get(sequence_number)  # type: ignore[no-any-return]


def _sockaddr(remote: Any) -> tuple[Any, ...]:
    """A remote (host, port) as a numeric sockaddr tuple the C side parses."""
    host, port = remote[0], int(remote[1])
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)
    return tuple(infos[0][4])


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
    view = NativeRetransmitView(native)
    slot.forwarder = native  # type: ignore[assignment]
    slot.retransmit = view  # type: ignore[assignment]
    consumer.forwarder = native
    consumer.retransmit = view
    return native


class NativeDataPlane:
    """``DataPlane`` on edge.media._native (see the module docstring)."""

    name = "native"

    def __init__(self) -> None:
        # producer -> (the consumer list the Fanout was built from, the Fanout)
        self._groups: dict[Any, tuple[list[Any], Any]] = {}

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
        )

    def retransmit(self, consumer: "Consumer", sequence_numbers: list[int]) -> int:
        native = consumer.slot.forwarder
        if not isinstance(native, NativeConsumer):
            # Never forwarded natively: its RetransmitBuffer is the Python one.
            return PythonDataPlane.retransmit(self, consumer, sequence_numbers)  # type: ignore[arg-type]
        return native.retransmit(sequence_numbers, not consumer.transport.closed)  # type: ignore[no-any-return]
