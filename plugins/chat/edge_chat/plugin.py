"""The chat plugin's hook implementations: wiring between edge and the room state.

Registered through the ``edge`` entry point as ``chat``; its config section is
``[plugins.chat]``. Everything it sends goes through the ``Edge`` facade.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from edge.plugins import hookimpl
from edge.plugins.api import ConnectionInfo, Edge, MessageContext, ParticipantInfo, RoomInfo

from .config import ChatConfig, parse_config
from .handlers import HANDLERS
from .messages import message_types
from .state import ChatRooms, RoomState


class ChatPlugin:
    def __init__(self) -> None:
        self.config = ChatConfig()
        self.rooms = ChatRooms(self.config.history_size)

    @hookimpl
    def edge_configure(self, edge: Edge, config: dict[str, Any]) -> None:
        self.config = parse_config(config)
        self.rooms = ChatRooms(self.config.history_size)

    @hookimpl
    def edge_message_types(self, edge: Edge) -> list[Any]:
        return message_types(self.config)

    # room lifecycle ------------------------------------------------------------------

    @hookimpl
    def edge_room_closed(self, edge: Edge, room: RoomInfo) -> None:
        self.rooms.drop(room.name)

    @hookimpl
    def edge_participant_joined(self, edge: Edge, room: str, participant: ParticipantInfo) -> None:
        state = self.rooms.get(room)
        # Deferred to the end of this event-loop step, so a newcomer's own
        # connection is greeted (welcome, chat.history) before any presence.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._presence(edge, room, state, time.monotonic())
        else:
            loop.call_soon(self._deferred_presence, edge, room, state)

    @hookimpl
    def edge_participant_left(self, edge: Edge, room: str, participant: ParticipantInfo) -> None:
        state = self.rooms.find(room)
        if state is not None:
            self._presence(edge, room, state, time.monotonic())

    @hookimpl
    def edge_connection_opened(
        self, edge: Edge, room: str, participant: ParticipantInfo, connection: ConnectionInfo
    ) -> None:
        state = self.rooms.get(room)
        welcome = {"text": self.config.welcome_text, "room": room, "viewers": edge.viewer_count(room)}
        edge.send_to(room, participant.identity, "welcome", welcome, connection=connection.id)
        history = {"messages": state.recent()}
        edge.send_to(room, participant.identity, "chat.history", history, connection=connection.id)

    # messages ------------------------------------------------------------------------

    @hookimpl
    def edge_message_received(self, edge: Edge, message: MessageContext) -> None:
        kind = message.envelope.type
        handler = HANDLERS.get(kind)
        if handler is None:
            return
        state = self.rooms.get(message.room)
        handler(state, self.config, message, time.time())
        if kind == "like" and message.rejected is None:
            self._likes(edge, message.room, state, time.monotonic())

    @hookimpl
    def edge_tick(self, edge: Edge, now: float) -> None:
        mono = time.monotonic()
        for room, state in self.rooms.items():
            state.expire(now)
            self._likes(edge, room, state, mono)
            self._presence(edge, room, state, mono)

    # coalesced broadcasts ---------------------------------------------------------------

    def _likes(self, edge: Edge, room: str, state: RoomState, now: float) -> None:
        update = state.likes.take(now)
        if update is not None:
            edge.broadcast(room, "likes.updated", update)

    def _deferred_presence(self, edge: Edge, room: str, state: RoomState) -> None:
        # Outside the plugin host's call, so isolate it here.
        try:
            self._presence(edge, room, state, time.monotonic())
        except Exception:
            edge.logger("chat").exception("presence_failed", room=room)

    def _presence(self, edge: Edge, room: str, state: RoomState, now: float) -> None:
        if not state.presence.ready(now):
            return
        update = state.presence.take(edge.viewer_count(room), edge.participant_count(room), now)
        if update is not None:
            edge.broadcast(room, "presence", update)


plugin = ChatPlugin()
