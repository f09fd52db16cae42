"""Clients of the commerce tests: real WebSockets and HTTP to a real `edge serve`.

A ``Shopper`` records every envelope it receives in arrival order; tests wait on
those envelopes (``wait_for``), never on the clock. Envelopes of other plugins
(chat's welcome, presence, likes) are simply skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..nodeproc import NodeProcess

TIMEOUT = 10.0
PREFIX = "/v1/plugins/commerce"

Envelope = dict[str, Any]
_ids = itertools.count(1)


def write_config(text: str) -> str:
    path = Path(tempfile.mkdtemp(prefix="edge-commerce-conf-")) / "edge.toml"
    path.write_text(text)
    return str(path)


class Shopper:
    """One WebSocket message connection and everything it received."""

    def __init__(self, ws: ClientConnection, room: str, identity: str, role: str) -> None:
        self.ws = ws
        self.room = room
        self.identity = identity
        self.role = role
        self.seen: list[Envelope] = []
        self._cursor = 0
        self._arrived = asyncio.Event()
        self._closed = False
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def join(
        cls, node: NodeProcess, room: str, identity: str, role: str = "viewer", region: str = ""
    ) -> "Shopper":
        token = node.token(room, identity, role, region=region)
        ws = await connect(f"ws://127.0.0.1:{node.port}/v1/rooms/{room}/ws?token={token}", max_size=None)
        shopper = cls(ws, room, identity, role)
        await shopper.ping()  # the connection is registered in the room (and greeted) now
        return shopper

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.seen.append(json.loads(raw))
                self._arrived.set()
        except ConnectionClosed:
            pass
        finally:
            self._closed = True
            self._arrived.set()

    async def send(self, type: str, data: Any = None, *, id: str | None = None) -> str:
        id = id or f"c-{next(_ids)}"
        await self.ws.send(json.dumps({"type": type, "id": id, "data": {} if data is None else data}))
        return id

    async def wait_for(
        self, type: str, match: Callable[[Envelope], bool] = lambda e: True, timeout: float = TIMEOUT
    ) -> Envelope:
        """The next envelope of ``type`` after the last one taken that ``match``es."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._cursor, len(self.seen)):
                envelope = self.seen[index]
                if envelope["type"] == type and match(envelope):
                    self._cursor = index + 1
                    return envelope
            if self._closed:
                raise AssertionError(f"{self.identity}: connection closed before a {type}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                types = [e["type"] for e in self.seen[self._cursor:]]
                raise AssertionError(f"{self.identity}: no {type} within {timeout} s (unread: {types})")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def answer(self, id: str, timeout: float = TIMEOUT) -> Envelope:
        """Whatever envelope answers the message ``id`` (reply or error)."""
        deadline = time.monotonic() + timeout
        while True:
            for envelope in self.seen:
                if envelope["data"].get("reply_to") == id:
                    return envelope
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                raise AssertionError(f"{self.identity}: no answer to {id} within {timeout} s")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def error(self, code: str, id: str) -> Envelope:
        envelope = await self.answer(id)
        assert envelope["type"] == "error" and envelope["data"]["code"] == code, envelope
        assert envelope["data"]["reason"], envelope
        return envelope

    async def ping(self) -> None:
        """A round trip: everything this connection sent before has been handled."""
        id = await self.send("ping")
        await self.answer(id)

    def count(self, type: str) -> int:
        return sum(1 for e in self.seen if e["type"] == type)

    async def place(self, sku: str, quantity: int = 1, key: str | None = None) -> Envelope:
        """``order.place`` and its answer (order.accepted, order.rejected or error)."""
        key = key or f"k-{next(_ids)}-{time.time_ns()}"
        id = await self.send("order.place", {"sku": sku, "quantity": quantity, "key": key})
        return await self.answer(id)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def close_all(*shoppers: Shopper) -> None:
    await asyncio.gather(*(s.close() for s in shoppers), return_exceptions=True)


class Api:
    """The REST API with one token."""

    def __init__(self, node: NodeProcess, room: str, identity: str, role: str, region: str = "") -> None:
        token = node.token(room, identity, role, region=region)
        self.client = httpx.AsyncClient(
            base_url=node.url + PREFIX, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        self.room = room

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path.format(room=self.room), params=params)

    async def post(self, path: str, body: Any = None, *, content: bytes | None = None) -> httpx.Response:
        if content is not None:
            return await self.client.post(path.format(room=self.room), content=content)
        return await self.client.post(path.format(room=self.room), json=body)

    async def patch(self, path: str, body: Any) -> httpx.Response:
        return await self.client.patch(path.format(room=self.room), json=body)

    async def delete(self, path: str) -> httpx.Response:
        return await self.client.delete(path.format(room=self.room))

    async def add(self, **product: Any) -> dict[str, Any]:
        response = await self.post("/rooms/{room}/products", product)
        assert response.status_code == 201, response.text
        return response.json()

    async def stats(self) -> dict[str, Any]:
        response = await self.get("/rooms/{room}/stats")
        assert response.status_code == 200, response.text
        return response.json()

    async def close(self) -> None:
        await self.client.aclose()


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert a problem+json answer with this status and code."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["type"].endswith(":" + code) and body["status"] == status and body["detail"], body
    return body
