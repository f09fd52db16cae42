"""UdpMux: one UDP port for every WebRTC transport of the node.

Without it, aioice gives every peer connection a socket of its own on an
ephemeral port, so an operator has to open a whole port range and the native
data plane sends on one socket per viewer. With it (``[media] udp_mux = true``,
the default) the node binds ``[media] udp_port`` (7881) once on each of
``[media] ice_addresses``, every transport's only host candidate is that
address:port, and a firewall needs one rule: UDP 7881 in.

Design (aiortc 1.16.0 / aioice 0.13.0 private API, pinned like webrtc.py):

* Full ICE stays aioice's. Each aioice ``Connection`` of the node's peer
  connections is *adopted* (``UdpMux.adopt``): its ``get_component_candidates``
  is replaced on the instance so that gathering makes, per mux socket, a
  ``MuxProtocol`` (an aioice ``StunProtocol``) whose transport is a thin
  ``MuxTransport`` over the shared socket instead of a socket of its own. aioice
  then runs its checks, nomination and consent freshness unchanged over the
  shared socket; it does not know the socket is shared. Full ICE rather than
  ICE-lite because it is what aioice does (no second state machine to write and
  test), and it keeps consent freshness, which ICE-lite would give up; browsers
  and aiortc clients both connect as they did.
* The adopted connection's local ufrag becomes 16 random characters (aioice
  draws 4), so ufrags are unique among the node's transports: they are the key
  of the demux.
* Demux (``MuxEndpoint.datagram_received``), by RFC 7983 first byte:
  - not STUN (DTLS 20-63, SRTP/SRTCP 128-191, anything else): by remote
    address, to the connection that address authenticated for (one dict
    lookup, straight into aioice's ``Connection.data_received``: DTLS still runs
    in Python in aiortc). An unknown address is dropped and counted.
  - STUN request: by the local ufrag in USERNAME ("local:remote"); unknown ufrag
    is dropped and counted. A request whose MESSAGE-INTEGRITY checks with that
    connection's password binds its source address to the connection (the last
    authenticated request wins: a remote address re-used by a new session moves
    to it, and the old session, hearing nothing, is reaped). aioice answers it.
  - STUN response: by transaction id (the mux records each request its
    protocols send), so checks answered before the peer's own checks arrive,
    and consent responses, reach their connection.
* A transport's close (aioice closes its protocols) removes its ufrag, its
  addresses and its transactions from the demux, so an address or ufrag never
  outlives its session.
* Egress: ``MuxTransport.sendto`` is the shared asyncio transport's own
  ``sendto``; ``WebRtcTransport.egress_route()`` returns the shared socket's fd,
  so the native plane's fan-out to N viewers on one socket is one ``sendmmsg``.

Many peers behind one address (a NAT) have different ports, hence different
keys. Two sessions from one remote address *and* port at the same time cannot
be told apart by a port-sharing server; the newest authenticated one gets the
address. With ``udp_mux = false`` nothing here is used and aioice makes a socket
per peer connection, as before.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import string
from typing import Any, Callable

import aioice.ice
from aioice import stun
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol

from ..errors import ConfigError

DEFAULT_PORT = 7881
# The kernel caps these at net.core.{r,w}mem_max; one socket carries every peer.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
UFRAG_LENGTH = 16
_UFRAG_CHARS = string.ascii_letters + string.digits

DROP_REASONS = (
    "unknown_address",  # not STUN, from an address no transport authenticated
    "unknown_ufrag",  # STUN request for no live transport
    "unknown_transaction",  # STUN response to no pending request
    "malformed_stun",  # first byte says STUN, the parse says no
    "unroutable_stun",  # STUN indication, or a request without USERNAME
)


class MuxTransport:
    """What a MuxProtocol has instead of a socket: the shared one, and a close that detaches."""

    __slots__ = ("sendto", "_endpoint", "_protocol")

    def __init__(self, endpoint: "MuxEndpoint", protocol: "MuxProtocol") -> None:
        # The shared transport's bound sendto: no extra call per egress packet.
        self.sendto: Callable[[bytes, Any], None] = endpoint.transport.sendto
        self._endpoint = endpoint
        self._protocol = protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._endpoint.transport.get_extra_info(name, default)

    def close(self) -> None:
        # aioice closes each protocol of a connection it closes: detach from the
        # demux (never close the shared socket) and finish aioice's close.
        self._endpoint.detach(self._protocol)
        self._protocol.connection_lost(None)


class MuxProtocol(StunProtocol):
    """aioice's per-candidate protocol, on a mux socket."""

    def __init__(self, connection: Connection, endpoint: "MuxEndpoint") -> None:
        super().__init__(connection)
        self.endpoint = endpoint
        self.addresses: set[tuple[Any, ...]] = set()
        self.transport = MuxTransport(endpoint, self)  # type: ignore[assignment]

    async def request(
        self,
        request: stun.Message,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> tuple[stun.Message, tuple[str, int]]:
        # Responses come back on the shared socket: route them by transaction id.
        txid = request.transaction_id
        self.endpoint.transactions[txid] = self
        try:
            return await super().request(request, addr, integrity_key, retransmissions)
        finally:
            if self.endpoint.transactions.get(txid) is self:
                del self.endpoint.transactions[txid]


class MuxEndpoint(asyncio.DatagramProtocol):
    """One bound socket of the mux (one per ICE address) and its demux tables."""

    def __init__(self, mux: "UdpMux", host: str, port: int) -> None:
        self.mux = mux
        self.host = host
        self.port = port
        self.ipv6 = ":" in host
        self.transport: asyncio.DatagramTransport = None  # type: ignore[assignment]
        self.by_address: dict[tuple[Any, ...], MuxProtocol] = {}
        self.by_ufrag: dict[str, MuxProtocol] = {}
        self.transactions: dict[bytes, MuxProtocol] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that left: not the node's problem.
        self.mux.errors += 1

    # per datagram ------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:  # type: ignore[override]
        if self.ipv6:
            addr = (addr[0], addr[1])
        if data and data[0] > 3:  # not STUN (RFC 7983): DTLS, SRTP, SRTCP
            protocol = self.by_address.get(addr)
            if protocol is None:
                self.mux.drop("unknown_address")
                return
            protocol.receiver.data_received(data, 1)
            return
        self._stun(data, addr)

    def _stun(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            message = stun.parse_message(data)
        except Exception:  # ValueError, struct.error: whatever it is, it is not ours
            self.mux.drop("malformed_stun")
            return
        cls = message.message_class
        if cls == stun.Class.REQUEST:
            username = message.attributes.get("USERNAME")
            if not username:
                self.mux.drop("unroutable_stun")
                return
            protocol = self.by_ufrag.get(username.partition(":")[0])
            if protocol is None:
                self.mux.drop("unknown_ufrag")
                return
            connection = protocol.receiver
            if message.check_message_integrity(connection.local_password.encode("utf8")):
                self._learn(addr, protocol)
            # aioice authenticates again and answers (401 if the check above failed).
            connection.request_received(message, addr, protocol)  # type: ignore[arg-type]
        elif cls in (stun.Class.RESPONSE, stun.Class.ERROR):
            protocol = self.transactions.get(message.transaction_id)
            transaction = protocol.transactions.get(message.transaction_id) if protocol else None
            if transaction is None:
                self.mux.drop("unknown_transaction")
                return
            transaction.response_received(message, addr)  # type: ignore[arg-type]
        else:
            self.mux.drop("unroutable_stun")

    def _learn(self, addr: tuple[Any, ...], protocol: MuxProtocol) -> None:
        previous = self.by_address.get(addr)
        if previous is protocol:
            return
        if previous is not None:
            previous.addresses.discard(addr)
        self.by_address[addr] = protocol
        protocol.addresses.add(addr)

    # transports coming and going ----------------------------------------------

    def attach(self, connection: Connection, component: int) -> MuxProtocol:
        ufrag = connection.local_username
        taken = self.by_ufrag.get(ufrag)
        if taken is not None and taken.receiver is not connection:
            raise ValueError(f"ICE ufrag {ufrag!r} is already in use on the UDP mux")
        protocol = MuxProtocol(connection, self)
        protocol.local_candidate = Candidate(
            foundation=candidate_foundation("host", "udp", self.host),
            component=component,
            transport="udp",
            priority=candidate_priority(component, "host"),
            host=self.host,
            port=self.port,
            type="host",
        )
        self.by_ufrag[ufrag] = protocol
        return protocol

    def detach(self, protocol: MuxProtocol) -> None:
        ufrag = protocol.receiver.local_username
        if self.by_ufrag.get(ufrag) is protocol:
            del self.by_ufrag[ufrag]
        for addr in protocol.addresses:
            if self.by_address.get(addr) is protocol:
                del self.by_address[addr]
        protocol.addresses.clear()
        for txid in list(protocol.transactions):
            if self.transactions.get(txid) is protocol:
                del self.transactions[txid]


class UdpMux:
    """The node's one WebRTC UDP port, on each ICE address (see the module docstring)."""

    def __init__(
        self,
        addresses: list[str] | None,
        port: int = DEFAULT_PORT,
        on_drop: Callable[[str], None] = lambda reason: None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"[media] udp_port must be 0-65535, got {port}")
        chosen = list(addresses) if addresses else aioice.ice.get_host_addresses(True, True)
        if not chosen:
            raise ConfigError("[media] ice_addresses is empty and the host has no usable address")
        for host in chosen:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                raise ConfigError(f"[media] ice_addresses: {host!r} is not an IP address") from None
            if ip.is_unspecified:
                raise ConfigError(
                    f"[media] ice_addresses: {host} is not an address a peer can reach; "
                    "list the node's addresses"
                )
        self.addresses = chosen
        self.requested_port = port
        self.port = port
        self.endpoints: list[MuxEndpoint] = []
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.on_drop = on_drop  # the node counts these in edge_dropped_packets{reason}
        self.errors = 0
        self._sockets: list[socket.socket] = []
        self._started = False

    # lifecycle -----------------------------------------------------------------

    def bind(self) -> None:
        """Bind the port on every address now (idempotent); ConfigError says which failed."""
        if self._sockets:
            return
        port = self.requested_port
        sockets: list[socket.socket] = []
        try:
            for host in self.addresses:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                sockets.append(sock)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    raise ConfigError(
                        f"cannot bind the WebRTC UDP port {host}:{port} ([media] udp_port, "
                        f"EDGE_MEDIA_UDP_PORT): {exc.strerror or exc}"
                    ) from None
                sock.setblocking(False)
                # udp_port = 0: the first address picks a free port, the others share it.
                port = sock.getsockname()[1]
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self._sockets = sockets
        self.port = port

    async def start(self) -> None:
        """Bind (if not yet) and start receiving on the event loop."""
        if self._started:
            return
        self.bind()
        loop = asyncio.get_running_loop()
        for host, sock in zip(self.addresses, self._sockets):
            endpoint = MuxEndpoint(self, host, self.port)
            await loop.create_datagram_endpoint(lambda e=endpoint: e, sock=sock)  # type: ignore[misc]
            self.endpoints.append(endpoint)
        self._started = True

    def close(self) -> None:
        for endpoint in self.endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()
        self.endpoints.clear()
        if not self._started:
            for sock in self._sockets:
                sock.close()
        self._sockets = []
        self._started = False

    # transports ----------------------------------------------------------------

    def adopt(self, connection: Connection) -> None:
        """Make an aioice Connection (not yet gathered) gather on the mux only."""
        ufrag = "".join(secrets.choice(_UFRAG_CHARS) for _ in range(UFRAG_LENGTH))
        # 95 bits: a clash never happens in practice, but the demux needs them unique.
        while any(ufrag in e.by_ufrag for e in self.endpoints):
            ufrag = "".join(secrets.choice(_UFRAG_CHARS) for _ in range(UFRAG_LENGTH))
        connection._local_username = ufrag

        async def get_component_candidates(
            component: int, addresses: list[str], timeout: int = 5
        ) -> list[Candidate]:
            if not self._started:
                raise ConnectionError("the UDP mux is not started")
            protocols = [
                e.attach(connection, component)
                for e in self.endpoints
                if (":" in e.host and connection._use_ipv6) or (":" not in e.host and connection._use_ipv4)
            ]
            connection._protocols += protocols
            return [p.local_candidate for p in protocols]

        connection.get_component_candidates = get_component_candidates  # type: ignore[method-assign]

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        self.on_drop(reason)

    # introspection -------------------------------------------------------------

    @property
    def transports(self) -> int:
        return sum(len(e.by_ufrag) for e in self.endpoints)

    @property
    def remote_addresses(self) -> int:
        return sum(len(e.by_address) for e in self.endpoints)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "mux",
            "port": self.port,
            "addresses": list(self.addresses),
            "transports": self.transports,
            "remote_addresses": self.remote_addresses,
            "dropped": dict(self.dropped),
            "socket_errors": self.errors,  # ICMP errors (e.g. port unreachable from a peer that left)
        }
