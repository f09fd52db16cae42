"""Message-connection clients for the chat tests: real WebSockets to a real node.

A client records every envelope it receives in arrival order; tests wait on
those envelopes (``next``, ``wait_for``), never on the clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import asyncio
import itertools
import json
import time
from typing import Any, Callable, Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..nodeproc import NodeProcess

TIMEOUT = 10.0
# Tick-driven room news, unrelated to any one client message.
BACKGROUND = frozenset({"presence", "likes.updated"})

_ids = itertools.count(1)

Envelope = dict[str, Any]


def ws_url(node: NodeProcess, room: str, token: str) -> str:
    return f"ws://127.0.0.1:{node.port}/v1/rooms/{room}/ws?token={token}"


class Inbox:
    """Envelopes in arrival order, awaited one at a time."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self.seen: list[Envelope] = []

    def put(self, raw: str | bytes | None) -> None:
        if raw is None:
            self.queue.put_nowait(None)
            return
        envelope = json.loads(raw)
        self.seen.append(envelope)
        self.queue.put_nowait(envelope)

    async def next(self, timeout: float = TIMEOUT, skip: frozenset[str] = frozenset()) -> Envelope:
        """The next envelope (not of a type in ``skip``)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                envelope = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise AssertionError(f"no envelope within {timeout} s") from None
            if envelope is None:
                raise AssertionError("connection closed")
            if envelope["type"] not in skip:
                return envelope

    async def wait_for(
        self, type: str, match: Callable[[Envelope], bool] = lambda e: True, timeout: float = TIMEOUT
    ) -> Envelope:
        """Skip ahead to the first envelope of ``type`` that ``match``es."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {type} within {timeout} s")
            envelope = await self.next(remaining)
            if envelope["type"] == type and match(envelope):
                return envelope

    def pending(self) -> list[Envelope]:
        """What has arrived and not been read yet (without waiting)."""
        out = []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is not None:
                out.append(item)
        return out


class MessageClient(ABC):
    """A message connection (WebSocket or data channel) with its inbox."""

    def __init__(self, room: str, identity: str, role: str) -> None:
        self.room = room
        self.identity = identity
        self.role = role
        self.inbox = Inbox()
        self.welcome: Envelope = {}
        self.history: Envelope = {}

    @abstractmethod
    async def transmit(self, raw: str | bytes) -> None:
        """Send one raw frame on this client's transport."""

    async def greeted(self, timeout: float = TIMEOUT) -> None:
        """Read the greeting every new connection gets first: welcome, chat.history."""
        self.welcome = await self.inbox.next(timeout)
        self.history = await self.inbox.next(timeout)
        assert self.welcome["type"] == "welcome", self.welcome
        assert self.history["type"] == "chat.history", self.history

    async def send(self, type: str, data: Any = None, *, id: str | None = None) -> str:
        """Send an envelope; returns its client id (for matching ``reply_to``)."""
        id = id or f"c-{next(_ids)}"
        await self.transmit(json.dumps({"type": type, "id": id, "data": {} if data is None else data}))
        return id

    async def send_raw(self, raw: str | bytes) -> None:
        await self.transmit(raw)

    async def say(self, text: str) -> Envelope:
        """Send a chat message and wait for its own ``chat.message`` to come back."""
        id = await self.send("chat.send", {"text": text})
        return await self.inbox.wait_for("chat.message", lambda e: e.get("id") == id)

    async def error(self, code: str, reply_to: str | None = None) -> Envelope:
        """Skip ahead to the next ``error`` (the one answering ``reply_to`` if
        given) and check its code. What others saw is checked with sentinels."""
        envelope = await self.inbox.wait_for(
            "error", lambda e: reply_to is None or e["data"].get("reply_to") == reply_to
        )
        assert envelope["data"]["code"] == code, envelope
        assert envelope["room"] == self.room and envelope["data"]["reason"], envelope
        return envelope

    @abstractmethod
    async def close(self) -> None:
        """Close this client's transport."""


class ChatClient(MessageClient):
    """A WebSocket message connection."""

    def __init__(self, ws: ClientConnection, room: str, identity: str, role: str) -> None:
        super().__init__(room, identity, role)
        self.ws = ws
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def join(cls, node: NodeProcess, room: str, identity: str, role: str = "viewer") -> "ChatClient":
        """Connect and read the greeting."""
        ws = await connect(ws_url(node, room, node.token(room, identity, role)), max_size=None)
        client = cls(ws, room, identity, role)
        await client.greeted()
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.inbox.put(raw)
        except ConnectionClosed:
            pass
        finally:
            self.inbox.put(None)

    async def transmit(self, raw: str | bytes) -> None:
        await self.ws.send(raw)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def join_all(node: NodeProcess, room: str, *who: tuple[str, str]) -> list[ChatClient]:
    return [await ChatClient.join(node, room, identity, role) for identity, role in who]


async def assert_next_is(clients: Sequence[MessageClient], type: str, match: Callable[[Envelope], bool]) -> None:
    """Each client's next envelope past room news is ``type`` and matches: a
    sentinel sent after something that must have been seen by no one."""
    for client in clients:
        envelope = await client.inbox.next(skip=BACKGROUND)
        assert envelope["type"] == type and match(envelope), (client.identity, envelope)


async def close_all(clients: Sequence[MessageClient]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
