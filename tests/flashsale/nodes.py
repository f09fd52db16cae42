"""A real ``edge serve`` with the flash-sale plugin, and WebSocket buyers, for the end-to-end tests.

The node loads only the flash-sale plugin (``EDGE_LOAD_PLUGINS=flashsale``) from
its installed entry point, configured through a TOML file (``EDGE_CONFIG``). Its
database lives outside the node's data dir (``NodeProcess.stop`` removes that),
so a node started again on the same config finds the same ledger.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ..nodeproc import NodeProcess
from .redisproc import RedisServer

TIMEOUT = 20.0
API = "/v1/plugins/flashsale"
_ids = itertools.count(1)

Envelope = dict[str, Any]


def write_config(directory: Path, backend: str, redis: RedisServer | None = None, *,
                 plugins: dict[str, Any] | None = None, **extra: Any) -> Path:
    """A node config: ``[plugins]`` (the host's settings, e.g. timeout_ms) and ``[plugins.flashsale]``."""
    lines = ["[plugins]", *(f"{k} = {json.dumps(v)}" for k, v in (plugins or {}).items()),
             "[plugins.flashsale]", f'backend = "{backend}"', f'db_path = "{directory / "flashsale.db"}"',
             "reserve_rate = [100, 10]"]
    if redis is not None:
        lines += [f'redis_url = "{redis.url}"', f'redis_prefix = "e2e{next(_ids)}x{int(time.time()) % 100000}"',
                  "reconcile_interval_seconds = 0.2"]
    for key, value in extra.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path = directory / f"edge-{next(_ids)}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class FlashNode:
    """A node process plus the REST calls the tests make."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc = NodeProcess(env={"EDGE_CONFIG": str(config), "EDGE_LOAD_PLUGINS": "flashsale"})

    def start(self) -> "FlashNode":
        self.proc.start()
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:  # open (and, for Redis, reconciled) before HTTP says so
            r = httpx.get(self.proc.url + API + "/status", headers=self.proc.admin_headers(), timeout=5)
            if r.status_code == 200 and r.json()["ready"]:
                return self
            time.sleep(0.05)
        raise RuntimeError(f"flash sales did not become ready: {self.proc.log()}")

    def stop(self, sig: int | None = None) -> None:
        if sig is None:
            self.proc.stop()
        else:
            self.proc.stop(sig)

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def host(self, room: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.proc.token(room, "seller", "host")}

    def create_sale(self, room: str, **body: Any) -> dict[str, Any]:
        r = httpx.post(f"{self.proc.url}{API}/rooms/{room}/sales", headers=self.host(room), json=body, timeout=10)
        assert r.status_code == 201, r.text
        return r.json()

    def sale(self, room: str, sale_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.proc.url}{API}/rooms/{room}/sales/{sale_id}", headers=self.host(room), timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def orders(self, room: str, sale_id: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.proc.url}{API}/rooms/{room}/sales/{sale_id}/orders", headers=self.host(room),
                      timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["orders"]

    def ws_url(self, room: str, identity: str, role: str = "viewer") -> str:
        return f"ws://127.0.0.1:{self.proc.port}/v1/rooms/{room}/ws?token={self.proc.token(room, identity, role)}"


class Client:
    """One WebSocket participant: every envelope it receives, in order, with its arrival time."""

    def __init__(self, ws: ClientConnection, identity: str) -> None:
        self.ws = ws
        self.identity = identity
        self.seen: list[tuple[float, Envelope]] = []
        self._replies: dict[str, asyncio.Future[Envelope]] = {}
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def join(cls, node: FlashNode, room: str, identity: str, role: str = "viewer") -> "Client":
        ws = await connect(node.ws_url(room, identity, role), ping_interval=None, max_queue=None,
                           open_timeout=TIMEOUT)
        return cls(ws, identity)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                envelope = json.loads(raw)
                self.seen.append((time.monotonic(), envelope))
                reply_to = envelope.get("data", {}).get("reply_to")
                future = self._replies.pop(reply_to, None) if reply_to else None
                if future is not None and not future.done():
                    future.set_result(envelope)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
                    future.exception()  # whoever waits still gets it; nobody must
            self._replies.clear()
            self._changed.set()

    async def send(self, type: str, data: dict[str, Any]) -> Envelope:
        """Send one envelope and wait for the answer to it (``reply_to`` its id)."""
        future = await self.send_nowait(type, data)
        return await asyncio.wait_for(future, TIMEOUT)

    async def send_nowait(self, type: str, data: dict[str, Any]) -> "asyncio.Future[Envelope]":
        msg_id = f"m{next(_ids)}"
        future: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        try:
            await self.ws.send(json.dumps({"type": type, "id": msg_id, "data": data}))
        except ConnectionClosed:
            self._replies.pop(msg_id, None)
            raise ConnectionError("connection closed") from None
        return future

    async def reserve(self, sku: str, key: str, quantity: Any = 1) -> Envelope:
        return await self.send("sale.reserve", {"sku": sku, "quantity": quantity, "key": key})

    def of(self, type: str) -> list[tuple[float, Envelope]]:
        return [(t, e) for t, e in self.seen if e["type"] == type]

    async def wait_for(self, type: str, match: Callable[[Envelope], bool] = lambda e: True,
                       timeout: float = TIMEOUT) -> tuple[float, Envelope]:
        deadline = time.monotonic() + timeout
        while True:
            for t, e in self.seen:
                if e["type"] == type and match(e):
                    return t, e
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.identity}: no {type} within {timeout} s; saw "
                                     f"{[e['type'] for _, e in self.seen][-20:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


async def join_many(node: FlashNode, room: str, identities: list[str]) -> list[Client]:
    out: list[Client] = []
    for start in range(0, len(identities), 100):  # in waves, as a real crowd arrives
        out += await asyncio.gather(*(Client.join(node, room, i) for i in identities[start:start + 100]))
    return out


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
