"""A plugin cannot take the node down: errors, slowness, garbage, bad config, order.

The calling rules of edge/plugins/manager.py (and docs/plugins.md, "How hooks
are called"), checked through a node built in-process with misbehaving plugins.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Generator

import pytest
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from edge.app import create_app
from edge.config import load_config
from edge.errors import ConfigError
from edge.messaging.envelope import MessageType
from edge.plugins import hookimpl
from edge.plugins.api import Edge, MessageContext

from .hook_probe import SECRET, ProbePlugin, Recorder, admin_headers, make_app, metric, send, ws_path

CHAT = MessageType(name="chat.send", fields={"text": str}, required=frozenset({"text"}), broadcast=True)


class Boom:
    """Every kind of call raises: sync in the chain, sync fire-and-forget, async awaited."""

    @hookimpl
    def edge_message_received(self, edge: Edge, message: MessageContext) -> None:
        raise RuntimeError("boom in the chain")

    @hookimpl
    def edge_room_created(self, edge: Edge, room: Any) -> None:
        raise RuntimeError("boom in the media plane")

    @hookimpl
    async def edge_tick(self, edge: Edge, now: float) -> None:
        raise RuntimeError("boom in a tick")


def test_raising_hook_is_logged_counted_and_isolated(tmp_path: Path) -> None:
    probe = ProbePlugin(message_types=[CHAT])
    # registered last, so called first: the probe after it still runs
    app = make_app(tmp_path, ("probe", probe), ("boom", Boom()))
    with capture_logs() as logs, TestClient(app) as client:
        with client.websocket_connect(ws_path("r-boom", "alice")) as alice, \
                client.websocket_connect(ws_path("r-boom", "bob")) as bob:
            send(alice, "chat.send", {"text": "still here"}, id="b1")
            got = bob.receive_json()
            assert (got["type"], got["data"], got["id"]) == ("chat.send", {"text": "still here"}, "b1")
            assert alice.receive_json()["id"] == "b1"
            [seen] = probe.record.calls("edge_message_received")
            assert seen["seen"]["data"] == {"text": "still here"}
            # the room hook raised in boom, and the probe heard of the room anyway
            [room] = probe.record.calls("edge_room_created")
            assert room["room"].name == "r-boom"
            send(alice, "chat.send", {"text": "again"}, id="b2")
            assert bob.receive_json()["id"] == "b2"
            assert alice.receive_json()["id"] == "b2"
            probe.record.wait_for("edge_tick")
            deadline = time.monotonic() + 5
            while metric(client, "edge_plugin_errors_total", plugin="boom", hook="edge_tick") < 1:
                assert time.monotonic() < deadline, "the raising async edge_tick was not counted"
                time.sleep(0.05)  # the counter has no event to wait on
            errors = {
                hook: metric(client, "edge_plugin_errors_total", plugin="boom", hook=hook)
                for hook in ("edge_message_received", "edge_room_created")
            }
            assert errors == {"edge_message_received": 2.0, "edge_room_created": 1.0}
            assert metric(client, "edge_plugin_errors_total", plugin="probe", hook="edge_message_received") == 0
    failed = [e for e in logs if e["event"] == "plugin_hook_failed"]
    assert failed, "no plugin_hook_failed log line"
    assert all(e["plugin"] == "boom" and e["log_level"] == "error" for e in failed)
    assert {e["hook"] for e in failed} >= {"edge_message_received", "edge_room_created", "edge_tick"}
    chain = [e for e in failed if e["hook"] == "edge_message_received"]
    assert len(chain) == 2 and "boom in the chain" in chain[0]["error"]


class Slow:
    def __init__(self) -> None:
        self.record = Recorder()

    @hookimpl
    async def edge_message_received(self, edge: Edge, message: MessageContext) -> None:
        self.record.add("started", text=message.envelope.data.get("text"))
        try:
            await asyncio.sleep(5)  # far over the budget
        except asyncio.CancelledError:
            self.record.add("cancelled", which="edge_message_received")
            raise
        message.envelope.data["text"] = "too late"  # never happens

    @hookimpl
    async def edge_connection_opened(self, edge: Edge, room: str, participant: Any, connection: Any) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            self.record.add("cancelled", which="edge_connection_opened")
            raise


def test_slow_async_hook_is_cancelled_and_the_message_goes_on(tmp_path: Path) -> None:
    slow = Slow()
    probe = ProbePlugin(message_types=[CHAT])
    app = make_app(tmp_path, ("probe", probe), ("slow", slow), config={"timeout_ms": 100})
    assert app.state.ctx.plugins.budget == pytest.approx(0.1)
    with capture_logs() as logs, TestClient(app) as client:
        with client.websocket_connect(ws_path("r-slow", "alice")) as alice, \
                client.websocket_connect(ws_path("r-slow", "bob")) as bob:
            # fire-and-forget: the connection is served while the slow hook runs
            send(alice, "ping", id="p1")
            assert alice.receive_json()["type"] == "pong"
            start = time.monotonic()
            send(alice, "chat.send", {"text": "on time"}, id="s1")
            got = bob.receive_json()
            elapsed = time.monotonic() - start
            assert (got["data"], got["id"]) == ({"text": "on time"}, "s1")
            assert elapsed < 2.0, f"the message waited {elapsed:.2f} s for a 0.1 s budget"
            assert alice.receive_json()["id"] == "s1"
            # the slow implementation was cancelled, the next one in the chain ran
            slow.record.wait_for("cancelled", where=lambda kw: kw["which"] == "edge_message_received")
            assert probe.record.calls("edge_message_received")[0]["seen"]["data"] == {"text": "on time"}
            slow.record.wait_for("cancelled", 2, where=lambda kw: kw["which"] == "edge_connection_opened")
            timeouts = {
                hook: metric(client, "edge_plugin_timeouts_total", plugin="slow", hook=hook)
                for hook in ("edge_message_received", "edge_connection_opened")
            }
            assert timeouts == {"edge_message_received": 1.0, "edge_connection_opened": 2.0}
            assert metric(client, "edge_plugin_errors_total", plugin="slow", hook="edge_message_received") == 0
    timed_out = [e for e in logs if e["event"] == "plugin_hook_timeout"]
    assert {(e["plugin"], e["hook"]) for e in timed_out} == {
        ("slow", "edge_message_received"), ("slow", "edge_connection_opened"),
    }
    assert all(e["budget_s"] == pytest.approx(0.1) for e in timed_out)


class GarbageTypes:
    @hookimpl
    def edge_message_types(self, edge: Edge) -> Any:
        return "chat.send"  # not a list of MessageType


class GarbageRoutes:
    @hookimpl
    def edge_http_routes(self, edge: Edge) -> Any:
        return {"/x": lambda request: None}  # not a list of routes


def _node_still_works(app: Any, probe: ProbePlugin) -> None:
    with TestClient(app) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get(
            "/v1/plugins/probe/calls", headers=admin_headers()
        ).status_code == 200
        with client.websocket_connect(ws_path("r-garbage", "alice")) as ws:
            send(ws, "chat.send", {"text": "fine"}, id="g1")
            got = ws.receive_json()
            assert (got["type"], got["data"]) == ("chat.send", {"text": "fine"})


def test_message_types_returning_garbage_does_not_break_the_node(tmp_path: Path) -> None:
    probe = ProbePlugin(message_types=[CHAT])
    app = make_app(tmp_path, ("probe", probe), ("garbage", GarbageTypes()))
    assert set(app.state.ctx.router.types) == {"ping", "chat.send"}
    _node_still_works(app, probe)


def test_http_routes_returning_garbage_does_not_break_the_node(tmp_path: Path) -> None:
    probe = ProbePlugin(message_types=[CHAT])
    app = make_app(tmp_path, ("probe", probe), ("garbage", GarbageRoutes()))
    _node_still_works(app, probe)


class Picky:
    @hookimpl
    def edge_configure(self, edge: Edge, config: dict[str, Any]) -> None:
        if not isinstance(config.get("greeting"), str):
            raise ValueError(f"greeting must be a string, got {config.get('greeting')!r}")


def test_plugin_refusing_its_config_stops_the_node(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^\[plugins\.picky\]: greeting must be a string, got 42$"):
        make_app(tmp_path, ("probe", ProbePlugin()), ("picky", Picky()), config={"picky": {"greeting": 42}})
    # the same plugin with a good section starts
    app = make_app(tmp_path, ("picky", Picky()), config={"picky": {"greeting": "hi"}})
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200


def test_module_plugin_refusing_its_config_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'[node]\ndata_dir = "{tmp_path}"\n[auth]\nsecret = "{SECRET}"\n'
        '[plugins]\nload = ["tests.unit.hook_probe"]\n[plugins.hook_probe]\nrefuse = "yes"\n'
    )
    with pytest.raises(ConfigError, match=r"\[plugins\.hook_probe\]: refuse is set to 'yes'"):
        create_app(load_config(path, env={}), load_entrypoints=False)


def test_unloadable_plugin_module_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tests.unit.no_such_plugin"):
        make_app(tmp_path, config={"load": ["tests.unit.no_such_plugin"]})


# order -------------------------------------------------------------------------------------


def _ordered(name: str, log: Recorder, **opts: bool) -> object:
    class Ordered:
        @hookimpl(**opts)
        def edge_message_received(self, edge: Edge, message: MessageContext) -> None:
            log.add("chain", plugin=name, text=message.envelope.data.get("text"))
            if name == "first":
                if message.envelope.data["text"] == "reject":
                    message.reject("not_allowed", "first said no")
                else:
                    message.envelope.data["text"] += " +first"

        @hookimpl(**opts)
        def edge_room_created(self, edge: Edge, room: Any) -> None:
            log.add("room", plugin=name)

    return Ordered()


def test_order_tryfirst_trylast_and_reject_stops_the_chain(tmp_path: Path) -> None:
    log = Recorder()
    probe = ProbePlugin(message_types=[CHAT])
    app = make_app(
        tmp_path,
        ("probe", probe),
        ("last", _ordered("last", log, trylast=True)),
        ("m1", _ordered("m1", log)),
        ("first", _ordered("first", log, tryfirst=True)),
        ("m2", _ordered("m2", log)),
    )
    # tryfirst, then the most recently registered first, then trylast
    expected = ["first", "m2", "m1", "probe", "last"]
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-order", "alice")) as alice, \
                client.websocket_connect(ws_path("r-order", "bob")) as bob:
            assert [c["plugin"] for c in log.calls("room")] == [p for p in expected if p != "probe"]
            send(alice, "chat.send", {"text": "hi"}, id="o1")
            got = bob.receive_json()
            assert got["data"] == {"text": "hi +first"}
            assert alice.receive_json()["id"] == "o1"
            chain = log.calls("chain")
            assert [c["plugin"] for c in chain] == [p for p in expected if p != "probe"]
            # later plugins see the envelope as the earlier ones left it
            assert [c["text"] for c in chain] == ["hi", "hi +first", "hi +first", "hi +first"]
            assert probe.record.calls("edge_message_received")[0]["seen"]["data"] == {"text": "hi +first"}

            log.clear()
            send(alice, "chat.send", {"text": "reject"}, id="o2")
            err = alice.receive_json()
            assert err["type"] == "error"
            assert err["data"] == {"code": "not_allowed", "reason": "first said no", "reply_to": "o2"}
            assert [c["plugin"] for c in log.calls("chain")] == ["first"]  # nobody after it
            assert len(probe.record.calls("edge_message_received")) == 1
            send(alice, "chat.send", {"text": "next"}, id="o3")
            assert bob.receive_json()["id"] == "o3"  # bob never saw o2


class Wrapper:
    def __init__(self) -> None:
        self.entered = 0

    @hookimpl(wrapper=True)
    def edge_message_received(self, edge: Edge, message: MessageContext) -> Generator[None, Any, Any]:
        self.entered += 1
        message.reject("wrapped", "a wrapper ran")
        return (yield)


def test_hook_wrappers_are_not_called(tmp_path: Path) -> None:
    wrapper = Wrapper()
    probe = ProbePlugin(message_types=[CHAT])
    app = make_app(tmp_path, ("probe", probe), ("wrapper", wrapper))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-wrap", "alice")) as alice:
            send(alice, "chat.send", {"text": "plain"}, id="w1")
            got = alice.receive_json()
            assert (got["type"], got["id"]) == ("chat.send", "w1")
    assert wrapper.entered == 0
    assert len(probe.record.calls("edge_message_received")) == 1


class FineRoutes:
    @hookimpl
    def edge_http_routes(self, edge: Edge) -> list[Route]:
        return [Route("/ok", self.ok)]

    async def ok(self, request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})


def test_a_plugin_route_error_stays_in_that_route(tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def edge_http_routes(self, edge: Edge) -> list[Route]:
            async def broken(request: Any) -> JSONResponse:
                raise RuntimeError("handler bug")

            return [Route("/broken", broken)]

    app = make_app(tmp_path, ("fine", FineRoutes()), ("broken", Broken()))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/v1/plugins/broken/broken").status_code == 500
        assert client.get("/v1/plugins/fine/ok").json() == {"ok": True}
        assert client.get("/healthz").status_code == 200
