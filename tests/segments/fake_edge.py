"""A stand-in for the ``Edge`` facade, to drive the segments plugin's hooks
directly with a clock the test controls (days pass in microseconds).

It records what the plugin sends and emits; a viewer "has a connection" when
the test says so (``connected``), which decides whether ``send_to`` reaches
anyone, as on the node.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from edge.plugins.api import ConnectionInfo, ParticipantInfo, SessionInfo
from edge_segments.plugin import SegmentsPlugin

T0 = 1_750_000_000.0
DAY = 86400.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class FakeEdge:
    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self.metrics_registry = CollectorRegistry()
        self.services: dict[str, Any] = {}
        self.sent: list[tuple[str, str, str, dict[str, Any]]] = []  # (room, identity, type, data)
        self.broadcasts: list[tuple[str, str, dict[str, Any]]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.connected: set[tuple[str, str]] = set()
        self.here: dict[str, list[ParticipantInfo]] = {}

    def data_dir(self, plugin: str) -> Path:
        path = self._data_dir / "plugins" / plugin
        path.mkdir(parents=True, exist_ok=True)
        return path

    def logger(self, plugin: str) -> Any:
        import structlog

        return structlog.get_logger(f"test.{plugin}")

    def provide(self, name: str, service: Any) -> None:
        if name in self.services and self.services[name] is not service:
            raise ValueError(f"service {name!r} is already provided")
        self.services[name] = service

    def service(self, name: str) -> Any:
        return self.services.get(name)

    def emit(self, name: str, data: dict[str, Any], *, source: str) -> None:
        self.events.append((name, data))

    def send_to(
        self, room: str, identity: str, type: str, data: dict[str, Any], *, connection: str | None = None
    ) -> int:
        if (room, identity) not in self.connected:
            return 0
        self.sent.append((room, identity, type, data))
        return 1

    def broadcast(self, room: str, type: str, data: dict[str, Any], *, exclude: Any = ()) -> int:
        self.broadcasts.append((room, type, data))
        return 1

    def participants(self, room: str) -> list[ParticipantInfo]:
        return list(self.here.get(room, []))

    # test helpers -------------------------------------------------------------------------

    def to(self, identity: str, type: str | None = None) -> list[dict[str, Any]]:
        return [d for _, i, t, d in self.sent if i == identity and (type is None or t == type)]


class Harness:
    """A started plugin on a ``FakeEdge`` with a test clock."""

    def __init__(self, data_dir: Path, config: dict[str, Any] | None = None, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.edge = FakeEdge(data_dir)
        self.plugin = SegmentsPlugin(clock=self.clock)
        self.plugin.edge_configure(self.edge, config or {})
        self.plugin.edge_startup(self.edge)
        self._sessions = 0

    async def settle(self) -> None:
        """Let the notification tasks the plugin started run."""
        while self.plugin.tasks:
            await asyncio.gather(*list(self.plugin.tasks))

    def join(self, room: str, identity: str, connect: bool = True) -> None:
        participant = ParticipantInfo(identity, "viewer")
        if connect:
            self.edge.connected.add((room, identity))
        self.edge.here.setdefault(room, []).append(participant)
        self.plugin.edge_participant_joined(self.edge, room, participant)
        if connect:
            connection = ConnectionInfo(f"c-{identity}", "websocket")
            self.plugin.edge_connection_opened(self.edge, room, participant, connection)

    def leave(self, room: str, identity: str) -> None:
        self.edge.connected.discard((room, identity))
        self.edge.here[room] = [p for p in self.edge.here.get(room, []) if p.identity != identity]
        self.plugin.edge_participant_left(self.edge, room, ParticipantInfo(identity, "viewer"))

    def watch(self, room: str, identity: str, seconds: float) -> None:
        """A WHEP session that starts now and plays ``seconds`` (the clock moves on)."""
        self._sessions += 1
        participant = ParticipantInfo(identity, "viewer")
        start = self.clock()
        session = SessionInfo(f"s{self._sessions}", "whep", room, identity, start - 0.2, start)
        self.plugin.edge_session_started(self.edge, room, participant, session)
        end = self.clock.advance(seconds)
        ended = SessionInfo(session.id, "whep", room, identity, start - 0.2, start, end, "delete")
        self.plugin.edge_session_ended(self.edge, room, participant, ended)

    def event(self, name: str, **data: Any) -> None:
        data.setdefault("at", self.clock())
        self.plugin.edge_event(self.edge, name, data, "commerce")

    def tick(self) -> None:
        self.plugin.edge_tick(self.edge, self.clock())

    async def stop(self) -> None:
        await self.settle()
        await self.plugin.edge_shutdown(self.edge)
