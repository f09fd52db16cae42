"""Interactions counted from the real chat plugin's message chain, in-process
(``create_app`` with exactly chat and segments, Starlette's TestClient)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from edge_chat.plugin import ChatPlugin
from edge_segments.plugin import SegmentsPlugin

from ..unit.hook_probe import make_app, send, token, ws_path


def receive_until(ws: Any, type: str, seen: list[str]) -> dict[str, Any]:
    for _ in range(20):
        envelope = ws.receive_json()
        seen.append(envelope["type"])
        if envelope["type"] == type:
            return envelope
    raise AssertionError(f"no {type}; saw {seen}")


def test_chat_and_likes_count_as_interactions_refused_messages_do_not(tmp_path: Path) -> None:
    app = make_app(tmp_path, ("chat", ChatPlugin()), ("segments", SegmentsPlugin()))
    with TestClient(app) as client:
        with client.websocket_connect(ws_path("shop", "h", "host")) as host, \
                client.websocket_connect(ws_path("shop", "v", "viewer")) as viewer:
            seen: list[str] = []
            send(viewer, "chat.send", {"text": "hello"})
            receive_until(viewer, "chat.message", seen)
            send(viewer, "like", {"count": 3})
            send(viewer, "chat.send", {"text": "again"})
            receive_until(viewer, "chat.message", seen)
            send(host, "mod.mute", {"identity": "v", "seconds": 60})
            receive_until(viewer, "mod.muted", seen)
            send(viewer, "chat.send", {"text": "muted?"})
            assert receive_until(viewer, "error", seen)["data"]["code"] == "muted"
            send(host, "chat.send", {"text": "staff do not count"})
            receive_until(viewer, "chat.message", seen)
            assert "coupon.granted" in seen  # the welcome coupon, beside chat's greeting

            headers = {"Authorization": "Bearer " + token("shop", "h", "host")}
            profile = client.get("/v1/plugins/segments/rooms/shop/profiles/v", headers=headers).json()
            assert profile["interactions"] == 3  # 2 chat messages + 1 like message
            assert client.get("/v1/plugins/segments/rooms/shop/profiles/h", headers=headers).status_code == 404
