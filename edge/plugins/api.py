"""What a plugin sees of the node: the ``Edge`` facade and small info records.

Plugins get copies (``RoomInfo``, ``ParticipantInfo``, ``ProducerInfo``), never
the media objects, so a plugin cannot reach the packet path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..errors import AuthError, ForbiddenError
from ..messaging.envelope import Envelope, now_ms
from ..observability.logging import get_logger

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.requests import Request

    from ..auth import Identity, TokenAuthority
    from ..config import Config
    from ..media.node import MediaNode
    from ..messaging.router import MessageRouter


@dataclass(frozen=True, slots=True)
class RoomInfo:
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    identity: str
    role: str
    region: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    id: str
    kind: str  # "websocket" | "datachannel"
    # The WebSocket URL's query parameters (the token removed), e.g. ?currency=MXN&ref=ana
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    kind: str  # "whip" | "whep"
    room: str
    participant: str
    started_at: float  # when the offer was answered (epoch seconds)
    connected_at: float | None  # when media could flow
    ended_at: float | None = None
    reason: str = ""

    @property
    def media_seconds(self) -> float:
        if self.connected_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.connected_at)


@dataclass(frozen=True, slots=True)
class ProducerInfo:
    id: str
    room: str
    kind: str
    source: str
    participant: str


@dataclass(slots=True)
class MessageContext:
    """One client message travelling through ``edge_message_received``."""

    envelope: Envelope
    sender: ParticipantInfo
    connection: str  # "websocket" | "datachannel"
    connection_id: str = ""  # the sending connection (for edge.send_to(..., connection=...))
    broadcast: bool = False
    rejected: tuple[str, str] | None = None
    replies: list[Envelope] = field(default_factory=list)

    @property
    def room(self) -> str:
        return self.envelope.room

    def reply(self, type: str, data: dict[str, Any] | None = None) -> None:
        """Send an envelope back to the sender only (after the hook chain)."""
        payload = dict(data or {})  # never touch the plugin's own dict
        if self.envelope.id is not None:
            payload.setdefault("reply_to", self.envelope.id)
        self.replies.append(Envelope(type=type, room=self.envelope.room, data=payload, ts=now_ms()))

    def reject(self, code: str, reason: str) -> None:
        """Refuse the message: the sender gets an ``error`` envelope with ``code``."""
        self.rejected = (code, reason)


class Edge:
    """The plugin-facing handle passed to every hook as ``edge``."""

    def __init__(
        self,
        *,
        config: "Config",
        node: "MediaNode",
        authority: "TokenAuthority",
        registry: "CollectorRegistry",
    ) -> None:
        self.config = config
        self._node = node
        self._authority = authority
        self.metrics_registry = registry
        self.router: MessageRouter | None = None  # set once the router exists
        self.plugins: Any = None  # the PluginHost, set by the app
        self._services: dict[str, Any] = {}

    @property
    def node_name(self) -> str:
        return self.config.node.name

    @property
    def region(self) -> str:
        return self.config.node.region

    def data_dir(self, plugin: str) -> Path:
        """A directory of the plugin's own under the node's data dir."""
        path = self.config.data_path / "plugins" / plugin
        path.mkdir(parents=True, exist_ok=True)
        return path

    def plugin_config(self, name: str) -> dict[str, Any]:
        section = self.config.plugins.get(name, {})
        return dict(section) if isinstance(section, dict) else {}

    def logger(self, plugin: str) -> Any:
        return get_logger(f"edge.plugin.{plugin}")

    # services: how plugins use each other ------------------------------------------------

    def provide(self, name: str, service: Any) -> None:
        """Offer an object to other plugins under ``name`` (e.g. in ``edge_startup``)."""
        if name in self._services and self._services[name] is not service:
            raise ValueError(f"service {name!r} is already provided")
        self._services[name] = service

    def service(self, name: str) -> Any | None:
        """Another plugin's service, or None when that plugin is not loaded."""
        return self._services.get(name)

    def emit(self, name: str, data: dict[str, Any], *, source: str) -> None:
        """Publish a domain event to every plugin's ``edge_event`` (fire-and-forget)."""
        if self.plugins is not None:
            self.plugins.call("edge_event", edge=self, name=name, data=data, source=source)

    # rooms --------------------------------------------------------------------------

    def rooms(self) -> list[str]:
        return list(self._node.rooms)

    def participants(self, room: str) -> list[ParticipantInfo]:
        r = self._node.rooms.get(room)
        if r is None:
            return []
        return [ParticipantInfo(p.identity, p.role, p.region) for p in r.participants.values()]

    def viewer_count(self, room: str) -> int:
        r = self._node.rooms.get(room)
        return 0 if r is None else r.role_counts.get("viewer", 0)

    def participant_count(self, room: str) -> int:
        r = self._node.rooms.get(room)
        return 0 if r is None else len(r.participants)

    # messages -------------------------------------------------------------------------

    def broadcast(
        self, room: str, type: str, data: dict[str, Any], *, exclude: Iterable[str] = ()
    ) -> int:
        """Send an envelope to every message connection in ``room``; returns how many."""
        assert self.router is not None
        env = Envelope(type=type, room=room, data=data, ts=now_ms())
        return self.router.broadcast(env, exclude_identities=frozenset(exclude))

    def send_to(
        self, room: str, identity: str, type: str, data: dict[str, Any], *, connection: str | None = None
    ) -> int:
        """Send an envelope to one participant's connections in ``room`` (or only
        to the connection with id ``connection``)."""
        assert self.router is not None
        env = Envelope(type=type, room=room, data=data, ts=now_ms())
        return self.router.send_to(env, identity, connection)

    def disconnect(self, room: str, identity: str, reason: str) -> int:
        """Close a participant's message connections in ``room`` (moderation)."""
        assert self.router is not None
        return self.router.disconnect(room, identity, reason)

    # HTTP helpers for plugin routes ----------------------------------------------------------

    def authenticate(
        self, request: "Request", roles: Iterable[str], room: str | None = None
    ) -> "Identity":
        """The caller's identity, or a 401/403 problem response raised as ``Problem``."""
        from ..api.problem import Problem

        try:
            identity = self._authority.from_authorization(request.headers.get("authorization"))
        except AuthError as exc:
            raise Problem(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
        try:
            identity.require(room, frozenset(roles))
        except ForbiddenError as exc:
            raise Problem(403, "forbidden", str(exc)) from None
        return identity
