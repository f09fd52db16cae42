"""Test plugins and an in-process node for the plugin hook tests.

``ProbePlugin`` implements every hook and records the arguments it is called
with. The node runs in the thread of Starlette's ``TestClient`` (or in the
test's own event loop under uvicorn), so the record is guarded by a condition
and tests wait on it with a bounded timeout instead of sleeping.

The module itself is also a plugin (its module-level ``edge_configure`` and
``edge_startup``), for the tests that load plugins with ``[plugins] load``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.app import create_app
from edge.auth import TokenAuthority
from edge.config import Config, load_config
from edge.messaging.envelope import MessageType
from edge.plugins import hookimpl
from edge.plugins.api import Edge, MessageContext

SECRET = "hook-probe-secret-0123456789abcdef"
AUTHORITY = TokenAuthority(SECRET)
WAIT = 5.0  # seconds any wait for a hook call may take before the test fails


class Recorder:
    """Hook calls as ``(hook, {arg: value})``, safe to read from another thread."""

    def __init__(self) -> None:
        self._calls: list[tuple[str, dict[str, Any]]] = []
        self._cond = threading.Condition()

    def add(self, hook: str, **kwargs: Any) -> None:
        with self._cond:
            self._calls.append((hook, kwargs))
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._calls.clear()

    def names(self) -> list[str]:
        with self._cond:
            return [hook for hook, _ in self._calls]

    def calls(self, hook: str) -> list[dict[str, Any]]:
        with self._cond:
            return [kwargs for name, kwargs in self._calls if name == hook]

    def wait_for(
        self,
        hook: str,
        count: int = 1,
        timeout: float = WAIT,
        where: Callable[[dict[str, Any]], bool] = lambda kwargs: True,
    ) -> list[dict[str, Any]]:
        """The matching calls once there are at least ``count`` of them."""

        def matching() -> list[dict[str, Any]]:
            return [kw for name, kw in self._calls if name == hook and where(kw)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                raise AssertionError(
                    f"{hook} called {len(matching())} times (wanted {count}) within {timeout} s; "
                    f"calls so far: {[name for name, _ in self._calls]}"
                )
            return matching()

    async def await_for(self, hook: str, count: int = 1, timeout: float = WAIT) -> list[dict[str, Any]]:
        """``wait_for`` from a coroutine running on the node's own loop."""
        return await asyncio.to_thread(self.wait_for, hook, count, timeout)


class ProbePlugin:
    """Implements every hook in edge/plugins/hookspecs.py and records its arguments.

    ``message_types`` is what ``edge_message_types`` returns; ``on_message`` and
    ``on_connection`` let a test act inside ``edge_message_received`` (it may
    return a coroutine: the host awaits it) and ``edge_connection_opened``.
    """

    def __init__(
        self,
        *,
        message_types: Iterable[MessageType] = (),
        on_message: Callable[[Edge, MessageContext], Any] | None = None,
        on_connection: Callable[..., None] | None = None,
    ) -> None:
        self.record = Recorder()
        self.message_types = list(message_types)
        self.on_message = on_message
        self.on_connection = on_connection

    @hookimpl
    def edge_configure(self, edge: Edge, config: dict[str, Any]) -> None:
        self.record.add("edge_configure", edge=edge, config=config)

    @hookimpl
    async def edge_startup(self, edge: Edge) -> None:
        await asyncio.sleep(0.01)  # really awaited: the node waits for this
        self.record.add("edge_startup", edge=edge, loop=asyncio.get_running_loop())

    @hookimpl
    async def edge_shutdown(self, edge: Edge) -> None:
        await asyncio.sleep(0.01)
        self.record.add("edge_shutdown", edge=edge)

    @hookimpl
    def edge_message_types(self, edge: Edge) -> list[MessageType]:
        self.record.add("edge_message_types", edge=edge)
        return list(self.message_types)

    @hookimpl
    def edge_room_created(self, edge: Edge, room: Any) -> None:
        self.record.add("edge_room_created", edge=edge, room=room)

    @hookimpl
    def edge_room_closed(self, edge: Edge, room: Any) -> None:
        self.record.add("edge_room_closed", edge=edge, room=room)

    @hookimpl
    def edge_participant_joined(self, edge: Edge, room: str, participant: Any) -> None:
        self.record.add("edge_participant_joined", edge=edge, room=room, participant=participant)

    @hookimpl
    def edge_participant_left(self, edge: Edge, room: str, participant: Any) -> None:
        self.record.add("edge_participant_left", edge=edge, room=room, participant=participant)

    @hookimpl
    def edge_connection_opened(self, edge: Edge, room: str, participant: Any, connection: Any) -> None:
        self.record.add(
            "edge_connection_opened", edge=edge, room=room, participant=participant, connection=connection
        )
        if self.on_connection is not None:
            self.on_connection(edge, room, participant, connection)

    @hookimpl
    def edge_session_started(self, edge: Edge, room: str, participant: Any, session: Any) -> None:
        self.record.add("edge_session_started", edge=edge, room=room, participant=participant, session=session)

    @hookimpl
    def edge_session_ended(self, edge: Edge, room: str, participant: Any, session: Any) -> None:
        self.record.add("edge_session_ended", edge=edge, room=room, participant=participant, session=session)

    @hookimpl
    def edge_quality_changed(
        self, edge: Edge, room: str, participant: Any, session: Any, quality: dict[str, Any], previous: dict[str, Any]
    ) -> None:
        self.record.add(
            "edge_quality_changed", edge=edge, room=room, participant=participant,
            session=session, quality=quality, previous=previous,
        )

    @hookimpl
    def edge_event(self, edge: Edge, name: str, data: dict[str, Any], source: str) -> None:
        self.record.add("edge_event", edge=edge, name=name, data=data, source=source)

    @hookimpl
    def edge_producer_added(self, edge: Edge, room: str, producer: Any) -> None:
        self.record.add("edge_producer_added", edge=edge, room=room, producer=producer)

    @hookimpl
    def edge_producer_removed(self, edge: Edge, room: str, producer: Any) -> None:
        self.record.add("edge_producer_removed", edge=edge, room=room, producer=producer)

    @hookimpl
    def edge_message_received(self, edge: Edge, message: MessageContext) -> Any:
        env = message.envelope
        self.record.add(
            "edge_message_received",
            edge=edge,
            message=message,
            # a snapshot: later hooks and the router may change the envelope
            seen={
                "type": env.type, "room": env.room, "id": env.id, "ts": env.ts,
                "data": dict(env.data), "sender": env.sender, "broadcast": message.broadcast,
            },
        )
        if self.on_message is not None:
            return self.on_message(edge, message)
        return None

    @hookimpl
    def edge_message_delivered(self, edge: Edge, envelope: Any, recipients: int) -> None:
        self.record.add("edge_message_delivered", edge=edge, envelope=envelope, recipients=recipients)

    @hookimpl
    def edge_http_routes(self, edge: Edge) -> list[Route]:
        self.record.add("edge_http_routes", edge=edge)

        async def calls(request: Request) -> Response:
            identity = edge.authenticate(request, ["admin"])
            return JSONResponse({"caller": identity.identity, "hooks": self.record.names()})

        return [Route("/calls", calls, methods=["GET"])]

    @hookimpl
    async def edge_tick(self, edge: Edge, now: float) -> None:
        self.record.add("edge_tick", edge=edge, now=now, at=time.time())


# The module as a plugin (``[plugins] load = ["tests.unit.hook_probe"]``) ------------

MODULE_RECORD = Recorder()


@hookimpl
def edge_configure(edge: Edge, config: dict[str, Any]) -> None:
    if config.get("refuse"):
        raise ValueError(f"refuse is set to {config['refuse']!r}")
    MODULE_RECORD.add("edge_configure", edge=edge, config=config)


@hookimpl
def edge_startup(edge: Edge) -> None:
    MODULE_RECORD.add("edge_startup", edge=edge)


# An in-process node ---------------------------------------------------------------


def node_config(data_dir: Path, plugins: dict[str, Any] | None = None, **env: str) -> Config:
    config = load_config(
        env={"EDGE_NODE_DATA_DIR": str(data_dir), "EDGE_AUTH_SECRET": SECRET, **env}
    )
    if plugins is not None:
        config.plugins = plugins  # what a [plugins] TOML section would give
    return config


def make_app(
    data_dir: Path, *plugins: tuple[str, object], config: dict[str, Any] | None = None
) -> Starlette:
    """A node built in-process with exactly these plugins (no entry points)."""
    return create_app(node_config(data_dir, config), load_entrypoints=False, plugins=list(plugins))


def token(room: str, identity: str, role: str, **kw: Any) -> str:
    return AUTHORITY.issue(room=room, identity=identity, role=role, **kw)


def ws_path(room: str, identity: str, role: str = "viewer", **kw: Any) -> str:
    return f"/v1/rooms/{room}/ws?token={token(room, identity, role, **kw)}"


def admin_headers() -> dict[str, str]:
    return {"Authorization": "Bearer " + token("*", "ops", "admin")}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus samples as {'name{labels}': value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def metric(client: Any, name: str, **labels: str) -> float:
    """One sample from the node's /metrics (read with an admin token); 0 if absent."""
    response = client.get("/metrics", headers=admin_headers())
    assert response.status_code == 200, response.text
    for key, value in parse_metrics(response.text).items():
        sample, _, rest = key.partition("{")
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if sample == name and found == labels:
            return value
    return 0.0


def send(ws: Any, type: str, data: dict[str, Any] | None = None, **extra: Any) -> None:
    ws.send_text(orjson.dumps({"type": type, "data": data or {}, **extra}).decode())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free port in the running loop; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.ensure_future(server.serve())
    try:
        deadline = time.monotonic() + 10.0
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn exited before it started")
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 10 s")
            await asyncio.sleep(0.01)  # uvicorn has no started event to await
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15.0)
