"""WebSocket clients for the segments tests against a real node.

Each client reads every envelope into an inbox in arrival order; tests wait on
envelopes (``wait_for``), never on the clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any, Callable

from websockets.asyncio.client import ClientConnection, connect

from ..nodeproc import NodeProcess

TIMEOUT = 10.0
_ids = itertools.count(1)
Envelope = dict[str, Any]


class Client:
    def __init__(self, node: NodeProcess, room: str, identity: str, role: str) -> None:
        self.node, self.room, self.identity, self.role = node, room, identity, role
        self.queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self.seen: list[Envelope] = []
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def join(cls, node: NodeProcess, room: str, identity: str, role: str = "viewer") -> "Client":
        client = cls(node, room, identity, role)
        token = node.token(room, identity, role)
        client.ws = await connect(f"ws://127.0.0.1:{node.port}/v1/rooms/{room}/ws?token={token}")
        client._reader = asyncio.create_task(client._read())
        return client

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                envelope = json.loads(raw)
                self.seen.append(envelope)
                self.queue.put_nowait(envelope)
        except Exception:
            pass
        finally:
            self.queue.put_nowait(None)

    async def send(self, type: str, data: dict[str, Any] | None = None) -> str:
        assert self.ws is not None
        id = f"s-{next(_ids)}"
        await self.ws.send(json.dumps({"type": type, "id": id, "data": data or {}}))
        return id

    async def next(self, timeout: float = TIMEOUT) -> Envelope:
        try:
            envelope = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.identity}: no envelope within {timeout} s") from None
        if envelope is None:
            raise AssertionError(f"{self.identity}: connection closed")
        return envelope

    async def wait_for(
        self, type: str, match: Callable[[Envelope], bool] = lambda e: True, timeout: float = TIMEOUT
    ) -> Envelope:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.identity}: no {type} within {timeout} s; seen {self.types()}")
            envelope = await self.next(remaining)
            if envelope["type"] == type and match(envelope):
                return envelope

    async def request(self, type: str, data: dict[str, Any] | None = None) -> Envelope:
        """Send and wait for the answer to it: a reply carrying its id, or an error."""
        id = await self.send(type, data)
        return await self.wait_for_any(lambda e: e["data"].get("reply_to") == id)

    async def wait_for_any(self, match: Callable[[Envelope], bool], timeout: float = TIMEOUT) -> Envelope:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.identity}: nothing matching within {timeout} s; seen {self.types()}")
            envelope = await self.next(remaining)
            if match(envelope):
                return envelope

    async def do(self, type: str, data: dict[str, Any] | None = None) -> Envelope:
        """A fake.* request that must succeed (its ``fake.done``)."""
        answer = await self.request(type, data)
        assert answer["type"] == "fake.done", answer
        return answer

    def types(self) -> list[str]:
        return [e["type"] for e in self.seen]

    def received(self, type: str) -> list[Envelope]:
        return [e for e in self.seen if e["type"] == type]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.close() for c in clients))
