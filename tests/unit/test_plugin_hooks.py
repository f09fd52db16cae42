"""Every hook of edge/plugins/hookspecs.py, called by the real node code.

One ``test_hook_<hook name>`` per hook (tests/unit/test_docs.py checks that).
Each builds a node in-process with ``create_app(..., plugins=[("probe",
ProbePlugin())])`` and drives it the way clients do: WebSocket connections
through Starlette's TestClient, the lifespan for start-up/shutdown/ticks, and a
real aiortc WHIP publisher against uvicorn for the producer hooks. The tests
assert the arguments each hook received, not only that it was called.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from edge.cli import main as edge_main
from edge.config import load_config
from edge.messaging.envelope import Envelope, MessageType
from edge.plugins import hookspecs
from edge.plugins.api import (
    ConnectionInfo,
    Edge,
    MessageContext,
    ParticipantInfo,
    ProducerInfo,
    RoomInfo,
    SessionInfo,
)
from edge.plugins.manager import PluginHost
from tests.clients import WhepViewer, WhipPublisher

from .hook_probe import (
    MODULE_RECORD,
    SECRET,
    ProbePlugin,
    admin_headers,
    make_app,
    send,
    serve,
    token,
    ws_path,
)

CHAT = MessageType(
    name="chat.send", fields={"text": str}, required=frozenset({"text"}), broadcast=True, plugin="probe"
)
ALL_HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("edge_"))


def ctx_of(app: Any) -> Any:
    return app.state.ctx


# start-up and shutdown -----------------------------------------------------------------


def test_hook_edge_configure(tmp_path: Path) -> None:
    probe, other = ProbePlugin(), ProbePlugin()
    section = {"greeting": "hello", "limits": [1, 2], "nested": {"a": 1}}
    app = make_app(
        tmp_path, ("probe", probe), ("other", other), config={"timeout_ms": 300, "probe": section}
    )
    ctx = ctx_of(app)
    [call] = probe.record.calls("edge_configure")
    assert isinstance(call["edge"], Edge) and call["edge"] is ctx.edge
    # its own [plugins.probe] section, as a dict; a plugin without one gets {}
    assert isinstance(call["config"], dict) and call["config"] == section
    assert call["config"] is not ctx.config.plugins["probe"]  # a copy: the plugin may keep it
    [other_call] = other.record.calls("edge_configure")
    assert other_call["config"] == {}
    # once, at build time: before the message types and routes are collected,
    # and before the node starts
    assert probe.record.names() == ["edge_configure", "edge_message_types", "edge_http_routes"]
    with TestClient(app):
        assert probe.record.names()[:4] == [
            "edge_configure", "edge_message_types", "edge_http_routes", "edge_startup"
        ]
    assert len(probe.record.calls("edge_configure")) == 1


def test_hook_edge_startup(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    assert probe.record.calls("edge_startup") == []  # not at build time
    with TestClient(app) as client:
        # the async implementation was awaited before the first request is served
        [call] = probe.record.calls("edge_startup")
        assert call["edge"] is ctx_of(app).edge
        assert isinstance(call["loop"], asyncio.AbstractEventLoop)
        assert call["edge"].router is ctx_of(app).router  # broadcast/send_to work from here on
        assert client.get("/healthz").status_code == 200
    assert len(probe.record.calls("edge_startup")) == 1


def test_hook_edge_shutdown(tmp_path: Path) -> None:
    probe = ProbePlugin(message_types=[CHAT])
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-shut", "alice")) as ws:
            send(ws, "ping")
            assert ws.receive_json()["type"] == "pong"
        assert probe.record.calls("edge_shutdown") == []
    # the async implementation was awaited before the lifespan ended
    [call] = probe.record.calls("edge_shutdown")
    assert call["edge"] is ctx_of(app).edge
    names = probe.record.names()
    assert names.index("edge_startup") < names.index("edge_shutdown") == len(names) - 1


def test_hook_edge_message_types(tmp_path: Path) -> None:
    note = MessageType(
        name="probe.note",
        roles=frozenset({"host"}),
        fields={"text": str, "n": int},
        required=frozenset({"text"}),
        broadcast=True,
    )
    rare = MessageType(name="probe.rare", rate={"viewer": (1, 60.0)}, broadcast=True)
    probe = ProbePlugin(message_types=[note, rare])
    app = make_app(tmp_path, ("probe", probe))
    [call] = probe.record.calls("edge_message_types")
    assert call["edge"] is ctx_of(app).edge
    assert ctx_of(app).router.types["probe.note"] is note
    assert ctx_of(app).router.types["probe.rare"] is rare
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-types", "host1", "host")) as host, \
                client.websocket_connect(ws_path("r-types", "fan", "viewer")) as viewer:
            # accepted and, being broadcast=True, delivered to the room
            send(host, "probe.note", {"text": "hi", "n": 2}, id="n1")
            for ws in (host, viewer):
                got = ws.receive_json()
                assert got["type"] == "probe.note" and got["data"] == {"text": "hi", "n": 2}
                assert got["from"] == {"identity": "host1", "role": "host"} and got["id"] == "n1"
            # roles
            send(viewer, "probe.note", {"text": "hi"}, id="n2")
            err = viewer.receive_json()
            assert (err["type"], err["data"]["code"], err["data"]["reply_to"]) == ("error", "forbidden", "n2")
            # fields: missing required, unknown, bool where an int is wanted
            for bad in ({"n": 1}, {"text": "x", "extra": 1}, {"text": "x", "n": True}):
                send(host, "probe.note", bad, id="bad")
                err = host.receive_json()
                assert (err["type"], err["data"]["code"]) == ("error", "invalid_data"), bad
            # a type nobody declared
            send(viewer, "probe.other", {}, id="o1")
            assert viewer.receive_json()["data"]["code"] == "unknown_type"
            # the per-role rate: one probe.rare per minute for a viewer
            send(viewer, "probe.rare", {}, id="r1")
            assert viewer.receive_json()["type"] == "probe.rare"
            assert host.receive_json()["type"] == "probe.rare"
            send(viewer, "probe.rare", {}, id="r2")
            err = viewer.receive_json()
            assert (err["data"]["code"], err["data"]["reply_to"]) == ("rate_limited", "r2")


# rooms and participants (WebSocket members count) ---------------------------------------


def test_hook_edge_room_created(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app) as client:
        before = time.time()
        with client.websocket_connect(ws_path("r-created", "alice")):
            [call] = probe.record.wait_for("edge_room_created")
            after = time.time()
            assert call["edge"] is ctx_of(app).edge
            room = call["room"]
            assert isinstance(room, RoomInfo)
            assert room.name == "r-created"
            assert isinstance(room.created_at, float) and before - 1 <= room.created_at <= after
            with client.websocket_connect(ws_path("r-created", "bob")):
                probe.record.wait_for("edge_participant_joined", 2)
            assert len(probe.record.calls("edge_room_created")) == 1  # only the first arrival
        # the room comes back as a new room after it closed
        with client.websocket_connect(ws_path("r-created", "carol")):
            calls = probe.record.wait_for("edge_room_created", 2)
            assert calls[1]["room"].name == "r-created"
            assert calls[1]["room"].created_at >= room.created_at
    names = probe.record.names()
    assert names.index("edge_room_created") < names.index("edge_participant_joined")


def test_hook_edge_room_closed(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-closed", "alice")):
            with client.websocket_connect(ws_path("r-closed", "bob")):
                probe.record.wait_for("edge_participant_joined", 2)
            probe.record.wait_for("edge_participant_left")
            assert probe.record.calls("edge_room_closed") == []  # alice is still there
        [call] = probe.record.wait_for("edge_room_closed")
        [created] = probe.record.calls("edge_room_created")
        assert call["edge"] is ctx_of(app).edge
        assert isinstance(call["room"], RoomInfo)
        assert call["room"] == created["room"]  # same name and created_at
        assert "r-closed" not in ctx_of(app).edge.rooms()
    names = probe.record.names()
    assert names.index("edge_room_closed") > max(
        i for i, n in enumerate(names) if n == "edge_participant_left"
    )


def test_hook_edge_participant_joined(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-join", "alice", "viewer", region="eu-west")):
            [call] = probe.record.wait_for("edge_participant_joined")
            assert call["edge"] is ctx_of(app).edge
            assert call["room"] == "r-join"  # the room's name
            assert call["participant"] == ParticipantInfo("alice", "viewer", "eu-west")
            assert isinstance(call["participant"], ParticipantInfo)
            # a second connection of the same participant is not a new arrival
            with client.websocket_connect(ws_path("r-join", "alice", "viewer", region="eu-west")):
                probe.record.wait_for("edge_connection_opened", 2)
                assert len(probe.record.calls("edge_participant_joined")) == 1
                with client.websocket_connect(ws_path("r-join", "bob", "moderator")):
                    calls = probe.record.wait_for("edge_participant_joined", 2)
                    assert calls[1]["participant"] == ParticipantInfo("bob", "moderator", "")
                    assert calls[1]["room"] == "r-join"
                    assert sorted(p.identity for p in ctx_of(app).edge.participants("r-join")) == [
                        "alice", "bob",
                    ]


def test_hook_edge_participant_left(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-left", "alice", "cohost", region="ap")):
            with client.websocket_connect(ws_path("r-left", "alice", "cohost", region="ap")):
                probe.record.wait_for("edge_connection_opened", 2)
            # one of alice's two connections is still open: she has not left
            assert probe.record.calls("edge_participant_left") == []
            with client.websocket_connect(ws_path("r-left", "bob")):
                pass
            [bob] = probe.record.wait_for("edge_participant_left")
            assert bob["participant"] == ParticipantInfo("bob", "viewer", "")
        calls = probe.record.wait_for("edge_participant_left", 2)
        call = calls[1]
        assert call["edge"] is ctx_of(app).edge
        assert call["room"] == "r-left"
        assert isinstance(call["participant"], ParticipantInfo)
        assert call["participant"] == ParticipantInfo("alice", "cohost", "ap")


def test_hook_edge_connection_opened(tmp_path: Path) -> None:
    def greet(edge: Edge, room: str, participant: ParticipantInfo, connection: ConnectionInfo) -> None:
        # the documented way to greet one connection
        edge.send_to(
            room, participant.identity, "probe.hello", {"connection": connection.id}, connection=connection.id
        )

    probe = ProbePlugin(on_connection=greet)
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-conn", "alice", region="eu")) as first:
            [call] = probe.record.wait_for("edge_connection_opened")
            assert call["edge"] is ctx_of(app).edge
            assert call["room"] == "r-conn"
            assert call["participant"] == ParticipantInfo("alice", "viewer", "eu")
            conn = call["connection"]
            assert isinstance(conn, ConnectionInfo) and conn.kind == "websocket"
            assert isinstance(conn.id, str) and conn.id
            hello = first.receive_json()
            assert hello["type"] == "probe.hello" and hello["data"] == {"connection": conn.id}
            with client.websocket_connect(ws_path("r-conn", "alice", region="eu")) as second:
                calls = probe.record.wait_for("edge_connection_opened", 2)
                conn2 = calls[1]["connection"]
                assert conn2.kind == "websocket" and conn2.id != conn.id
                assert second.receive_json()["data"] == {"connection": conn2.id}
                # the greeting for the second connection did not reach the first
                send(first, "ping", id="p1")
                assert first.receive_json()["type"] == "pong"
    # opened after the participant joined (first connection) -- never before
    names = probe.record.names()
    assert names.index("edge_participant_joined") < names.index("edge_connection_opened")


# producers (a real WHIP publisher against the node served by uvicorn) ---------------------


async def _publish(app: Any, probe: ProbePlugin) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    async with serve(app) as url:
        publisher = WhipPublisher(url, "shop1", token("shop1", "seller", "host", region="eu"))
        response = await publisher.start()
        assert response.status_code == 201, response.text
        try:
            added = await probe.record.await_for("edge_producer_added", 2, timeout=10)
            async with httpx.AsyncClient() as http:
                room = (await http.get(f"{url}/v1/rooms/shop1", headers=admin_headers())).json()
            assert probe.record.calls("edge_producer_removed") == []
        finally:
            await publisher.stop()  # DELETE /whip/shop1/<session>
        removed = await probe.record.await_for("edge_producer_removed", 2, timeout=10)
    return added, removed, room["producers"]


async def test_hook_edge_producer_added(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    added, _, producers = await _publish(app, probe)
    assert len(added) == 2
    for call in added:
        assert call["edge"] is ctx_of(app).edge
        assert call["room"] == "shop1"
        info = call["producer"]
        assert isinstance(info, ProducerInfo)
        assert (info.room, info.participant) == ("shop1", "seller")
    infos = {call["producer"].kind: call["producer"] for call in added}
    assert set(infos) == {"audio", "video"}
    assert (infos["audio"].source, infos["video"].source) == ("microphone", "camera")
    # the ids are the node's producer ids, as the room API lists them
    assert {(p["id"], p["kind"], p["source"], p["participant"]) for p in producers} == {
        (i.id, i.kind, i.source, i.participant) for i in infos.values()
    }
    # the participant arrived (by WHIP) before its tracks went live
    names = probe.record.names()
    assert names.index("edge_participant_joined") < names.index("edge_producer_added")


async def test_hook_edge_producer_removed(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    added, removed, _ = await _publish(app, probe)
    assert len(removed) == 2
    for call in removed:
        assert call["edge"] is ctx_of(app).edge
        assert call["room"] == "shop1"
        assert isinstance(call["producer"], ProducerInfo)
    # the same records as when they went live
    assert sorted((c["producer"] for c in removed), key=lambda p: p.id) == sorted(
        (c["producer"] for c in added), key=lambda p: p.id
    )
    assert len(probe.record.calls("edge_producer_added")) == 2
    names = probe.record.names()
    assert max(i for i, n in enumerate(names) if n == "edge_producer_removed") < names.index(
        "edge_participant_left"
    )


# messages --------------------------------------------------------------------------------------


async def _chat_behaviour(edge: Edge, message: MessageContext) -> None:
    await asyncio.sleep(0.001)  # an async hook: the chain awaits it
    text = message.envelope.data.get("text", "")
    if text.startswith("upper:"):
        message.envelope.type = "probe.shout"
        message.envelope.data["text"] = text.upper()
    elif text == "private":
        message.broadcast = False
        message.reply("probe.ack", {"ok": True})
    elif text == "reject":
        message.reply("probe.ack", {"ok": False})  # dropped with the message
        message.reject("blocked_keyword", "no rejects here")
    elif text == "announce":
        message.broadcast = False
        edge.broadcast(message.room, "probe.announce", {"by": message.sender.identity}, exclude=[message.sender.identity])


def test_hook_edge_message_received(tmp_path: Path) -> None:
    probe = ProbePlugin(message_types=[CHAT], on_message=_chat_behaviour)
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-msg", "alice", region="eu")) as alice, \
                client.websocket_connect(ws_path("r-msg", "bob")) as bob:
            before = int(time.time() * 1000)
            send(alice, "chat.send", {"text": "hello"}, id="m1")
            got = bob.receive_json()
            assert got == {
                "type": "chat.send", "room": "r-msg", "ts": got["ts"], "id": "m1",
                "data": {"text": "hello"}, "from": {"identity": "alice", "role": "viewer"},
            }
            assert alice.receive_json() == got  # the sender is in the room too
            [call] = probe.record.calls("edge_message_received")
            assert call["edge"] is ctx_of(app).edge
            message = call["message"]
            assert isinstance(message, MessageContext)
            assert isinstance(message.envelope, Envelope)
            assert call["seen"] == {
                "type": "chat.send", "room": "r-msg", "id": "m1", "ts": got["ts"],
                "data": {"text": "hello"}, "sender": {"identity": "alice", "role": "viewer"},
                "broadcast": True,  # CHAT's default
            }
            assert before <= got["ts"] <= int(time.time() * 1000)
            assert message.sender == ParticipantInfo("alice", "viewer", "eu")
            assert message.connection == "websocket"
            assert message.room == "r-msg"
            assert (message.rejected, message.replies) == (None, [])

            # transform: type and data changed on the way through
            send(alice, "chat.send", {"text": "upper: shout"}, id="m2")
            got = bob.receive_json()
            assert (got["type"], got["data"], got["id"]) == ("probe.shout", {"text": "UPPER: SHOUT"}, "m2")
            assert alice.receive_json() == got

            # reply, not broadcast: only the sender hears back
            send(alice, "chat.send", {"text": "private"}, id="m3")
            ack = alice.receive_json()
            assert (ack["type"], ack["room"], ack["data"]) == ("probe.ack", "r-msg", {"ok": True, "reply_to": "m3"})

            # reject: an error to the sender, nothing to anyone else, replies dropped
            send(alice, "chat.send", {"text": "reject"}, id="m4")
            err = alice.receive_json()
            assert err["type"] == "error"
            assert err["data"] == {"code": "blocked_keyword", "reason": "no rejects here", "reply_to": "m4"}
            [*_, rejected] = probe.record.calls("edge_message_received")
            assert rejected["message"].rejected == ("blocked_keyword", "no rejects here")

            # bob saw neither the private message nor the rejected one
            send(alice, "chat.send", {"text": "after"}, id="m5")
            assert bob.receive_json()["id"] == "m5"
            assert alice.receive_json()["id"] == "m5"
            # the node's own ping never enters the chain
            send(alice, "ping", id="p")
            assert alice.receive_json()["type"] == "pong"
    assert [c["seen"]["id"] for c in probe.record.calls("edge_message_received")] == [
        "m1", "m2", "m3", "m4", "m5",
    ]


def test_hook_edge_message_delivered(tmp_path: Path) -> None:
    probe = ProbePlugin(message_types=[CHAT], on_message=_chat_behaviour)
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-dlv", "alice")) as alice, \
                client.websocket_connect(ws_path("r-dlv", "bob")) as bob, \
                client.websocket_connect(ws_path("r-dlv", "bob")) as bob2:
            send(alice, "chat.send", {"text": "hello"}, id="d1")
            for ws in (alice, bob, bob2):
                assert ws.receive_json()["id"] == "d1"
            [call] = probe.record.wait_for("edge_message_delivered")
            assert call["edge"] is ctx_of(app).edge
            envelope = call["envelope"]
            assert isinstance(envelope, Envelope)
            assert (envelope.type, envelope.room, envelope.id, envelope.data) == (
                "chat.send", "r-dlv", "d1", {"text": "hello"},
            )
            assert envelope.sender == {"identity": "alice", "role": "viewer"}
            assert call["recipients"] == 3  # connections, the sender's included

            # a plugin broadcast (excluding alice) is reported too
            send(alice, "chat.send", {"text": "announce"}, id="d2")
            for ws in (bob, bob2):
                got = ws.receive_json()
                assert (got["type"], got["data"]) == ("probe.announce", {"by": "alice"})
            calls = probe.record.wait_for("edge_message_delivered", 2)
            assert (calls[1]["envelope"].type, calls[1]["envelope"].sender) == ("probe.announce", None)
            assert calls[1]["recipients"] == 2

            # replies and rejected messages are not deliveries
            send(alice, "chat.send", {"text": "private"}, id="d3")
            assert alice.receive_json()["type"] == "probe.ack"
            send(alice, "chat.send", {"text": "reject"}, id="d4")
            assert alice.receive_json()["type"] == "error"
            send(alice, "ping", id="d5")
            assert alice.receive_json()["type"] == "pong"
            assert len(probe.record.calls("edge_message_delivered")) == 2


# HTTP and time ---------------------------------------------------------------------------------


def test_hook_edge_http_routes(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    [call] = probe.record.calls("edge_http_routes")  # collected once, when the app is built
    assert call["edge"] is ctx_of(app).edge
    with TestClient(app) as client:
        url = "/v1/plugins/probe/calls"  # mounted under /v1/plugins/<name>/
        r = client.get(url)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"] == "Bearer"
        r = client.get(url, headers={"Authorization": "Bearer " + token("r", "fan", "viewer")})
        assert r.status_code == 403 and r.json()["type"] == "urn:edge:problem:forbidden"
        r = client.get(url, headers=admin_headers())
        assert r.status_code == 200
        body = r.json()
        assert body["caller"] == "ops"
        assert body["hooks"][:4] == ["edge_configure", "edge_message_types", "edge_http_routes", "edge_startup"]
        # the admin list of plugins shows every hook the probe implements
        r = client.get("/v1/plugins", headers=admin_headers())
        assert r.json() == {"plugins": [{"name": "probe", "hooks": ALL_HOOKS}]}
    assert len(probe.record.calls("edge_http_routes")) == 1


def test_hook_edge_tick(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app):
        calls = probe.record.wait_for("edge_tick", 2, timeout=5.0)
    for call in calls:
        assert call["edge"] is ctx_of(app).edge
        assert isinstance(call["now"], float)
        assert abs(call["at"] - call["now"]) < 0.5  # wall-clock seconds, taken just before the call
    gap = calls[1]["now"] - calls[0]["now"]
    assert 0.9 <= gap <= 2.5, gap  # about once a second
    count = len(probe.record.calls("edge_tick"))
    time.sleep(1.2)
    assert len(probe.record.calls("edge_tick")) == count  # ticks stop with the node


# loading -------------------------------------------------------------------------------------------


def _toml(tmp_path: Path, plugins: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f'[node]\ndata_dir = "{tmp_path}"\n[auth]\nsecret = "{SECRET}"\n{plugins}'
    )
    return path


def test_plugins_load_from_config(tmp_path: Path) -> None:
    MODULE_RECORD.clear()
    path = _toml(
        tmp_path,
        '[plugins]\nload = ["tests.unit.hook_probe"]\ntimeout_ms = 120\n'
        '[plugins.hook_probe]\ngreeting = "hello"\n',
    )
    config = load_config(path, env={})
    from edge.app import create_app

    app = create_app(config, load_entrypoints=False)
    ctx = ctx_of(app)
    assert ctx.plugins.names() == ["hook_probe"]  # named after the module's last component
    assert ctx.plugins.budget == pytest.approx(0.12)
    [call] = MODULE_RECORD.calls("edge_configure")
    assert call["config"] == {"greeting": "hello"} and call["edge"] is ctx.edge
    with TestClient(app):
        MODULE_RECORD.wait_for("edge_startup")


def test_edge_plugins_cli_lists_plugins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_LOAD_PLUGINS", "")  # no entry points: only [plugins] load
    path = _toml(tmp_path, '[plugins]\nload = ["tests.unit.hook_probe"]\n')
    assert edge_main(["--config", str(path), "plugins", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"name": "hook_probe", "hooks": ["edge_configure", "edge_startup"]}
    ]
    assert edge_main(["--config", str(path), "plugins"]) == 0
    assert capsys.readouterr().out == "hook_probe: edge_configure, edge_startup\n"


def test_load_plugins_env_selects_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [
        importlib.metadata.EntryPoint(name="probe_ep", value="tests.unit.hook_probe", group="edge"),
        importlib.metadata.EntryPoint(name="other_ep", value="tests.unit", group="edge"),
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points if group == "edge" else [])
    config = load_config(env={})

    def names(env: dict[str, str]) -> list[str]:
        return PluginHost(config, CollectorRegistry(), env=env).names()

    assert sorted(names({})) == ["other_ep", "probe_ep"]  # unset: every entry point
    assert names({"EDGE_LOAD_PLUGINS": "probe_ep"}) == ["probe_ep"]  # entry-point names, comma list
    assert names({"EDGE_LOAD_PLUGINS": " probe_ep , nope"}) == ["probe_ep"]
    assert names({"EDGE_LOAD_PLUGINS": ""}) == []  # set but empty: none
    assert PluginHost(config, CollectorRegistry(), load_entrypoints=False, env={}).names() == []


def test_trace_plugins_logs_hook_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EDGE_TRACE_PLUGINS=1 logs every hook call (edge/plugins/manager.py docstring)."""
    monkeypatch.setenv("EDGE_TRACE_PLUGINS", "1")
    probe = ProbePlugin(message_types=[CHAT])
    with capture_logs() as logs:
        app = make_app(tmp_path, ("probe", probe))
        with TestClient(app) as client:
            with client.websocket_connect(ws_path("r-trace", "alice")) as ws:
                send(ws, "chat.send", {"text": "traced"})
                assert ws.receive_json()["data"] == {"text": "traced"}
    traced = " ".join(str(e.get("msg", "")) for e in logs if e["event"] == "plugin_trace")
    for hook in ("edge_configure", "edge_startup", "edge_message_received", "edge_shutdown"):
        assert hook in traced, f"no plugin_trace line for {hook}"


def test_probe_implements_every_hook() -> None:
    implemented = sorted(n for n in dir(ProbePlugin) if n.startswith("edge_"))
    assert implemented == ALL_HOOKS


def test_reply_leaves_the_plugins_data_alone(tmp_path: Path) -> None:
    """``message.reply(type, data)`` adds ``reply_to`` to the envelope it sends, not to the
    plugin's own dict: a plugin replying with a constant must not see it changed."""
    ACK = {"ok": True}

    def ack(edge: Edge, message: MessageContext) -> None:
        message.broadcast = False
        message.reply("probe.ack", ACK)

    probe = ProbePlugin(message_types=[CHAT], on_message=ack)
    app = make_app(tmp_path, ("probe", probe))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-ack", "alice")) as alice:
            send(alice, "chat.send", {"text": "one"}, id="a1")
            assert alice.receive_json()["data"] == {"ok": True, "reply_to": "a1"}
            send(alice, "chat.send", {"text": "two"}, id="a2")
            assert alice.receive_json()["data"] == {"ok": True, "reply_to": "a2"}
    assert ACK == {"ok": True}


# sessions and plugin events ----------------------------------------------------------------------


async def test_hook_edge_session_started(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    await _publish(app, probe)
    (call,) = probe.record.calls("edge_session_started")
    assert call["edge"] is ctx_of(app).edge and call["room"] == "shop1"
    assert call["participant"] == ParticipantInfo("seller", "host", "eu")
    session = call["session"]
    assert isinstance(session, SessionInfo)
    assert (session.kind, session.room, session.participant) == ("whip", "shop1", "seller")
    assert session.connected_at is not None and session.connected_at >= session.started_at
    assert session.ended_at is None and session.media_seconds == 0.0
    names = probe.record.names()
    assert names.index("edge_session_started") < names.index("edge_producer_added")


async def test_hook_edge_session_ended(tmp_path: Path) -> None:
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    await _publish(app, probe)
    (ended,) = await probe.record.await_for("edge_session_ended", 1, timeout=10)
    (started,) = probe.record.calls("edge_session_started")
    session = ended["session"]
    assert ended["room"] == "shop1" and ended["participant"].identity == "seller"
    assert session.id == started["session"].id and session.kind == "whip"
    assert session.reason in ("delete", "closed")
    assert session.ended_at is not None and session.ended_at >= session.connected_at
    assert session.media_seconds == pytest.approx(session.ended_at - session.connected_at)
    assert session.media_seconds > 0
    names = probe.record.names()
    assert names.index("edge_session_ended") < names.index("edge_participant_left")


async def test_hook_edge_quality_changed(tmp_path: Path) -> None:
    """A viewer's first assessment (about a second after it joins) reports its quality."""
    probe = ProbePlugin()
    app = make_app(tmp_path, ("probe", probe))
    async with serve(app) as url:
        publisher = WhipPublisher(url, "shop1", token("shop1", "seller", "host", region="eu"))
        assert (await publisher.start()).status_code == 201
        viewer = WhepViewer(url, "shop1", token("shop1", "v1", "viewer", region="eu"))
        try:
            assert (await viewer.start()).status_code == 201
            await viewer.wait_frames("video", 3)
            (call,) = await probe.record.await_for("edge_quality_changed", 1, timeout=10)
        finally:
            await viewer.stop()
            await publisher.stop()
    assert call["edge"] is ctx_of(app).edge and call["room"] == "shop1"
    assert call["participant"] == ParticipantInfo("v1", "viewer", "eu")
    assert isinstance(call["session"], SessionInfo) and call["session"].kind == "whep"
    quality, previous = call["quality"], call["previous"]
    assert previous == {}
    assert quality["level"] in ("good", "fair", "poor")
    assert quality["layer"] is None  # a single-stream publisher: no simulcast layer
    assert quality["join_ms"] is not None and 0 < quality["join_ms"] < 10_000
    assert quality["bitrate"] > 0 and 0 <= quality["fraction_lost"] <= 1


def test_hook_edge_event(tmp_path: Path) -> None:
    """One plugin emits, every plugin (another one and the emitter) hears it."""

    def emit_on_message(edge: Edge, message: MessageContext) -> None:
        edge.emit("probe.said", {"text": message.envelope.data["text"]}, source="emitter")

    emitter = ProbePlugin(message_types=[CHAT], on_message=emit_on_message)
    listener = ProbePlugin()
    app = make_app(tmp_path, ("emitter", emitter), ("listener", listener))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("r-event", "alice")) as ws:
            send(ws, "chat.send", {"text": "hi"})
            ws.receive_json()
    for probe in (listener, emitter):
        (call,) = probe.record.calls("edge_event")
        assert call["edge"] is ctx_of(app).edge
        assert (call["name"], call["data"], call["source"]) == ("probe.said", {"text": "hi"}, "emitter")
