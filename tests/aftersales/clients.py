"""WebSocket clients and a configured node for the after-sales tests.

A client records every envelope it receives in arrival order; tests wait on
those envelopes (``wait_for``), never on the clock. The node is a real
``edge serve`` subprocess that loads the installed after-sales plugin (and no
other entry point) plus the test doubles of ``fake_commerce``.
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
Envelope = dict[str, Any]
API = "/v1/plugins/aftersales"
_ids = itertools.count(1)


def node_config(fake: dict[str, bool], aftersales: dict[str, Any] | None = None, timeout_ms: int = 250) -> str:
    """A TOML config file loading the test doubles; returns its path."""
    lines = ["[plugins]", 'load = ["tests.aftersales.fake_commerce"]', f"timeout_ms = {timeout_ms}", ""]
    lines += ["[plugins.fake_commerce]"]
    lines += [f"{k} = {'true' if v else 'false'}" for k, v in fake.items()]
    if aftersales:
        lines += ["", "[plugins.aftersales]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in aftersales.items()]
    path = Path(tempfile.mkdtemp(prefix="edge-aftersales-conf-")) / "edge.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def aftersales_node(config: str, data_dir: str | None = None) -> NodeProcess:
    env = {"EDGE_CONFIG": config, "EDGE_LOAD_PLUGINS": "aftersales"}
    if data_dir is not None:
        env["EDGE_NODE_DATA_DIR"] = data_dir
    return NodeProcess(env=env)


class Client:
    """A WebSocket message connection with its inbox."""

    def __init__(self, ws: ClientConnection, room: str, identity: str, role: str) -> None:
        self.ws = ws
        self.room = room
        self.identity = identity
        self.role = role
        self.queue: asyncio.Queue[Envelope | None] = asyncio.Queue()
        self.seen: list[Envelope] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def join(cls, node: NodeProcess, room: str, identity: str, role: str = "viewer") -> "Client":
        token = node.token(room, identity, role)
        ws = await connect(f"ws://127.0.0.1:{node.port}/v1/rooms/{room}/ws?token={token}", max_size=None)
        client = cls(ws, room, identity, role)
        await client.request("ping", {})  # registered in the room (joined) before the test goes on
        return client

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                envelope = json.loads(raw)
                self.seen.append(envelope)
                self.queue.put_nowait(envelope)
        except ConnectionClosed:
            pass
        finally:
            self.queue.put_nowait(None)

    async def send(self, type: str, data: Any = None) -> str:
        id = f"c-{next(_ids)}"
        await self.ws.send(json.dumps({"type": type, "id": id, "data": {} if data is None else data}))
        return id

    async def wait_for(
        self, type: str, match: Callable[[Envelope], bool] = lambda e: True, timeout: float = TIMEOUT
    ) -> Envelope:
        """Skip ahead to the first envelope of ``type`` that ``match``es."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.identity}: no {type} within {timeout} s; seen {self.seen[-8:]}")
            try:
                envelope = await asyncio.wait_for(self.queue.get(), remaining)
            except asyncio.TimeoutError:
                continue
            if envelope is None:
                raise AssertionError(f"{self.identity}: connection closed waiting for {type}")
            if envelope["type"] == type and match(envelope):
                return envelope

    async def request(self, type: str, data: Any) -> Envelope:
        """Send and return the reply to this message (whatever its type, ``error`` included)."""
        id = await self.send(type, data)
        return await self._next_reply(id, time.monotonic() + TIMEOUT)

    async def _next_reply(self, id: str, deadline: float) -> Envelope:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.identity}: no reply to {id}; seen {self.seen[-8:]}")
            try:
                envelope = await asyncio.wait_for(self.queue.get(), remaining)
            except asyncio.TimeoutError:
                continue
            if envelope is None:
                raise AssertionError(f"{self.identity}: connection closed waiting for a reply to {id}")
            if envelope["data"].get("reply_to") == id:
                return envelope

    async def ok(self, type: str, data: Any, answer: str) -> dict[str, Any]:
        """``request`` that must succeed; returns the reply's data."""
        envelope = await self.request(type, data)
        assert envelope["type"] == answer, envelope
        return envelope["data"]

    async def refused(self, type: str, data: Any, code: str) -> dict[str, Any]:
        """``request`` that must be refused with ``code``; returns the error's data."""
        envelope = await self.request(type, data)
        assert envelope["type"] == "error" and envelope["data"]["code"] == code, envelope
        return envelope["data"]

    def pending(self) -> list[Envelope]:
        out = []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item is not None:
                out.append(item)
        return out

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def close_all(*clients: Client) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def http(node: NodeProcess, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, node.url + API + path, headers=headers, timeout=10, **kw)


async def ahttp(node: NodeProcess, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
    return await asyncio.to_thread(http, node, method, path, token, **kw)


async def metrics(node: NodeProcess) -> dict[str, float]:
    return await asyncio.to_thread(node.metrics)


async def fake_events(node: NodeProcess) -> list[dict[str, Any]]:
    r = await asyncio.to_thread(
        httpx.get, node.url + "/v1/plugins/fake_commerce/events", headers=node.admin_headers(), timeout=10
    )
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


async def poll(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
    """``await fetch()`` until ``done(value)``: for state the node has no event for (metrics)."""
    deadline = time.monotonic() + timeout
    value = await fetch()
    while not done(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        value = await fetch()
    return value

