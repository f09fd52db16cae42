"""The message path: connection → validate → plugin chain → room fan-out.

Messages from one connection are handled one after another, so every
recipient sees a sender's messages in the order sent. A broadcast is encoded
once and handed to each connection's outbound queue; a slow connection loses
its own messages (counted), never anyone else's.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from ..auth import Identity
from ..observability.logging import get_logger
from ..plugins.api import ConnectionInfo, Edge, MessageContext, ParticipantInfo
from .envelope import (
    Envelope,
    EnvelopeError,
    MessageType,
    check_fields,
    error_envelope,
    now_ms,
    parse_envelope,
)
from .ratelimit import RateLimiter
from .wsframes import text_frame

if TYPE_CHECKING:
    from ..media.node import MediaNode
    from ..plugins.manager import PluginHost

log = get_logger("edge.messaging")

BUILTIN_TYPES = [MessageType(name="ping", default_rate=(30, 30.0), plugin="edge")]

_ids = itertools.count(1)


class Connection(Protocol):
    id: str
    kind: str  # "websocket" | "datachannel"
    room: str
    identity: Identity

    def send_text(self, text: str) -> bool:
        """Queue a text frame; False if it was dropped (connection slow or closed)."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection from the node's side."""


def new_connection_id(kind: str) -> str:
    return f"{kind[:2]}{next(_ids)}"


class MessageRouter:
    def __init__(
        self,
        node: "MediaNode",
        plugins: "PluginHost",
        edge: Edge,
        registry: CollectorRegistry,
    ) -> None:
        self.node = node
        self.plugins = plugins
        self.edge = edge
        self.rooms: dict[str, dict[str, Connection]] = {}
        # (room, identity) -> that participant's connections, so send_to is O(1).
        self._by_identity: dict[tuple[str, str], dict[str, Connection]] = {}
        self.types: dict[str, MessageType] = {}
        self._limits: dict[tuple[str, str], RateLimiter] = {}
        limits = node.config.limits
        self._conn_limit = RateLimiter(limits.messages_per_connection, limits.messages_window_seconds)
        self.messages = Counter(
            "edge_messages", "Client messages by type and outcome", ["type", "result"], registry=registry
        )
        self.deliveries = Counter(
            "edge_message_deliveries", "Envelopes handed to connections", registry=registry
        )
        self.dropped = Counter(
            "edge_messages_dropped", "Envelopes not delivered to a connection", ["reason"], registry=registry
        )
        self.connections = Gauge(
            "edge_message_connections", "Open message connections", ["kind"], registry=registry
        )
        self.fast_connections = Counter(
            "edge_ws_fastpath_connections",
            "WebSocket connections served by the frame-once fast path (wsframes.py)",
            registry=registry,
        )
        for message_type in BUILTIN_TYPES:
            self.types[message_type.name] = message_type

    def load_types(self) -> None:
        """Collect ``edge_message_types`` from the plugins (at start-up)."""
        for plugin, declared in self.plugins.collect("edge_message_types", edge=self.edge):
            if not isinstance(declared, (list, tuple)) or not all(
                isinstance(t, MessageType) for t in declared
            ):
                self.plugins.report_bad_result(plugin, "edge_message_types", "a list of MessageType")
                continue
            for message_type in declared:
                if message_type.name in self.types:
                    log.warning("message_type_duplicate", type=message_type.name)
                    continue
                self.types[message_type.name] = message_type

    # membership -------------------------------------------------------------------------

    def attach(self, conn: Connection) -> None:
        # Registered before the join events fire, so a plugin can greet it.
        self.rooms.setdefault(conn.room, {})[conn.id] = conn
        self._by_identity.setdefault((conn.room, conn.identity.identity), {})[conn.id] = conn
        self.connections.labels(conn.kind).inc()
        if getattr(conn, "transport", None) is not None:
            self.fast_connections.inc()
        room, participant = self.node.enter(conn.room, conn.identity)
        participant.connections[conn.id] = conn
        self.plugins.call(
            "edge_connection_opened",
            edge=self.edge,
            room=conn.room,
            participant=ParticipantInfo(participant.identity, participant.role, participant.region),
            connection=ConnectionInfo(conn.id, conn.kind, dict(getattr(conn, "params", {}))),
        )

    def detach(self, conn: Connection) -> None:
        members = self.rooms.get(conn.room)
        if members is None or members.pop(conn.id, None) is None:
            return
        if not members:
            del self.rooms[conn.room]
        key = (conn.room, conn.identity.identity)
        mine = self._by_identity.get(key)
        if mine is not None:
            mine.pop(conn.id, None)
            if not mine:
                del self._by_identity[key]
        self.connections.labels(conn.kind).dec()
        room = self.node.rooms.get(conn.room)
        if room is not None:
            participant = room.participants.get(conn.identity.identity)
            if participant is not None:
                self.node.leave(room, participant, conn.id)

    # inbound ------------------------------------------------------------------------------

    def _refuse(self, conn: Connection, kind: str, code: str, reason: str, reply_to: str | None = None) -> None:
        self.messages.labels(kind if kind in self.types else "_unknown", code).inc()
        conn.send_text(error_envelope(conn.room, code, reason, reply_to=reply_to).encode().decode())

    async def receive(self, conn: Connection, raw: str | bytes, *, binary: bool = False) -> None:
        if binary:
            self._refuse(conn, "_binary", "binary_not_supported", "send JSON text frames")
            return
        if not self._conn_limit.check(conn.id).allowed:
            self._refuse(conn, "_any", "rate_limited", "too many messages on this connection")
            return
        try:
            envelope = parse_envelope(raw, room=conn.room)
        except EnvelopeError as exc:
            self._refuse(conn, "_invalid", exc.code, exc.reason)
            return
        message_type = self.types.get(envelope.type)
        if message_type is None:
            self._refuse(conn, envelope.type, "unknown_type", f"unknown message type {envelope.type!r}", envelope.id)
            return
        identity = conn.identity
        if identity.role not in message_type.roles and identity.role != "admin":
            self._refuse(conn, envelope.type, "forbidden", f"role {identity.role!r} may not send {envelope.type}", envelope.id)
            return
        try:
            check_fields(message_type, envelope.data)
        except EnvelopeError as exc:
            self._refuse(conn, envelope.type, exc.code, exc.reason, envelope.id)
            return
        decision = self._limiter(message_type, identity.role).check((conn.room, identity.identity))
        if not decision.allowed:
            self._refuse(
                conn, envelope.type, "rate_limited",
                f"too many {envelope.type} messages; retry in {decision.retry_after:.1f} s", envelope.id,
            )
            return
        envelope.sender = {"identity": identity.identity, "role": identity.role}
        if envelope.type == "ping":
            conn.send_text(Envelope(type="pong", room=conn.room, data={"reply_to": envelope.id}, ts=now_ms()).encode().decode())
            self.messages.labels("ping", "ok").inc()
            return
        context = MessageContext(
            envelope=envelope,
            sender=ParticipantInfo(identity.identity, identity.role, identity.region),
            connection=conn.kind,
            connection_id=conn.id,
            broadcast=message_type.broadcast,
        )
        sent_type = envelope.type  # hooks may transform the envelope's type
        await self.plugins.message_received(self.edge, context)
        if context.rejected is not None:
            code, reason = context.rejected
            self._refuse(conn, sent_type, code, reason, envelope.id)
            return
        for reply in context.replies:
            conn.send_text(reply.encode().decode())
        self.messages.labels(sent_type, "ok").inc()
        if context.broadcast:
            self.broadcast(context.envelope)

    def _limiter(self, message_type: MessageType, role: str) -> RateLimiter:
        key = (message_type.name, role)
        limiter = self._limits.get(key)
        if limiter is None:
            limiter = self._limits[key] = RateLimiter(*message_type.rate_for(role))
        return limiter

    # outbound ------------------------------------------------------------------------------

    def broadcast(self, envelope: Envelope, exclude_identities: frozenset[str] = frozenset()) -> int:
        members = self.rooms.get(envelope.room)
        if not members:
            return 0
        payload = orjson.dumps(envelope.to_dict())  # encoded once for everyone
        text = payload.decode()
        frame: bytes | None = None  # and framed once for every WebSocket
        sent = dropped = 0
        for conn in list(members.values()):
            if exclude_identities and conn.identity.identity in exclude_identities:
                continue
            if getattr(conn, "transport", None) is not None:
                if frame is None:
                    frame = text_frame(payload)
                ok = conn.send_frame(frame)  # type: ignore[attr-defined]
            else:
                ok = conn.send_text(text)
            if ok:
                sent += 1
            else:
                dropped += 1
        if dropped:
            self.dropped.labels("slow_or_closed").inc(dropped)
        self.deliveries.inc(sent)
        self.plugins.call("edge_message_delivered", edge=self.edge, envelope=envelope, recipients=sent)
        return sent

    def send_to(self, envelope: Envelope, identity: str, connection_id: str | None = None) -> int:
        mine = self._by_identity.get((envelope.room, identity)) or {}
        if connection_id is not None:
            one = mine.get(connection_id)
            candidates = [one] if one is not None else []
        else:
            candidates = list(mine.values())
        text = envelope.encode().decode()
        sent = 0
        for conn in candidates:
            if conn.send_text(text):
                sent += 1
        self.deliveries.inc(sent)
        return sent

    def disconnect(self, room: str, identity: str, reason: str) -> int:
        mine = list((self._by_identity.get((room, identity)) or {}).values())
        for conn in mine:
            conn.close(4403, reason)
        return len(mine)

    def close_all(self) -> None:
        for members in list(self.rooms.values()):
            for conn in list(members.values()):
                conn.close(1001, "node shutting down")

    def describe(self) -> dict[str, Any]:
        return {room: len(members) for room, members in self.rooms.items()}
