"""Recording REST, media serving (Range), access rules, the service and recovery, in-process.

The node is built with create_app and driven by Starlette's TestClient; its
recordings are made on disk by the test (real encoder output, raw files), so no
peer connection is needed here (tests/recording/test_recording_node.py has those).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from edge.app import create_app
from edge.auth import TokenAuthority
from edge.config import load_config
from edge.recording import RecordingPlugin, RoomRecording
from edge.recording.remux import remux

from .test_remux import write_recording

SECRET = "recording-test-secret-0123456789abcdef"
AUTH = TokenAuthority(SECRET)
ROOM = "shop7"
REC_ID = "20250102T030405Z-abcdef"


def bearer(room: str, role: str, identity: str = "someone") -> dict[str, str]:
    return {"Authorization": "Bearer " + AUTH.issue(room=room, identity=identity, role=role)}


def make_app(data_dir: Path, **env: str) -> Any:
    config = load_config(env={"EDGE_NODE_DATA_DIR": str(data_dir), "EDGE_AUTH_SECRET": SECRET, **env})
    return create_app(config, load_entrypoints=False)


@pytest.fixture(scope="module")
def webm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A remuxed recording (raw files + replay.webm), made once."""
    path = tmp_path_factory.mktemp("made")
    write_recording(path, "vp8", sender_reports=True, shuffle=False)
    remux(path)
    return path


def install(data_dir: Path, source: Path, state: str = "ready", **info: Any) -> Path:
    """Put a recording where the node keeps them, with its recording.json."""
    target = data_dir / "recordings" / ROOM / REC_ID
    shutil.copytree(source, target)
    if state != "ready":
        for media in target.glob("replay.*"):
            media.unlink()
    doc = {
        "room": ROOM, "id": REC_ID, "state": state, "started_at": 1_700_000_000.0,
        "markers": [{"offset": 0.0, "at": 1_700_000_000.5, "sku": "SKU-1", "title": "Blue cup"}],
        **info,
    }
    if state == "ready":
        doc.update(media="replay.webm", media_type="video/webm", duration=1.0, media_start=1_700_000_000.01)
    (target / "recording.json").write_text(json.dumps(doc))
    return target


def test_recording_off_by_default(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    with TestClient(app) as client:
        r = client.post(f"/v1/rooms/{ROOM}/recording", headers=bearer(ROOM, "host"))
        assert r.status_code == 409 and r.json()["type"] == "urn:edge:problem:recording_disabled"
        r = client.get(f"/v1/rooms/{ROOM}/recording", headers=bearer(ROOM, "host"))
        assert r.json()["enabled"] is False and r.json()["recorded"] is False
        # the built-in plugin is registered only when recording is on
        assert [p["name"] for p in client.get("/v1/plugins", headers=bearer("*", "admin")).json()["plugins"]] == []
        r = client.get(f"/v1/rooms/{ROOM}/recordings/latest/markers")
        assert r.status_code == 404
    assert app.state.ctx.edge.service("recordings") is not None  # provided either way


def test_start_stop_rest_and_who_may(tmp_path: Path) -> None:
    app = make_app(tmp_path, EDGE_RECORDING_ENABLED="true", EDGE_RECORDING_AUTO="false")
    url = f"/v1/rooms/{ROOM}/recording"
    with TestClient(app) as client:
        assert client.post(url).status_code == 401
        assert client.post(url, headers=bearer(ROOM, "viewer")).status_code == 403
        assert client.post(url, headers=bearer("other", "host")).status_code == 403
        assert client.get(url, headers=bearer(ROOM, "host")).json()["recorded"] is False  # auto = false
        r = client.post(url, headers=bearer(ROOM, "host"))
        assert r.status_code == 200, r.text
        assert r.json() == {
            "room": ROOM, "enabled": True, "recorded": True, "recording": None, "latest": None,
        }  # armed: recording starts when a publisher goes live
        r = client.delete(url, headers=bearer("*", "admin"))
        assert r.status_code == 200 and r.json()["recorded"] is False
        assert client.post("/v1/rooms/bad..name!/recording", headers=bearer("*", "admin")).status_code == 400
        plugins = client.get("/v1/plugins", headers=bearer("*", "admin")).json()["plugins"]
        assert [p["name"] for p in plugins] == ["edge.recording"]


def test_public_replay_media_with_range_markers_and_service(tmp_path: Path, webm: Path) -> None:
    target = install(tmp_path, webm)
    size = (target / "replay.webm").stat().st_size
    app = make_app(tmp_path)  # public = true is the default
    with TestClient(app) as client:
        r = client.get(f"/v1/rooms/{ROOM}/recordings")
        assert r.status_code == 200
        [summary] = r.json()["recordings"]
        assert summary["id"] == REC_ID and summary["markers"] == 1
        assert summary["media_url"] == f"/v1/rooms/{ROOM}/recordings/{REC_ID}/media"

        r = client.get(f"/v1/rooms/{ROOM}/recordings/latest/markers")
        assert r.status_code == 200
        body = r.json()
        assert body["recording"] == REC_ID and body["duration"] == 1.0
        assert body["markers"][0]["sku"] == "SKU-1"

        r = client.get(f"/v1/rooms/{ROOM}/recordings/latest/media")
        assert r.status_code == 200 and r.headers["content-type"] == "video/webm"
        assert r.headers["accept-ranges"] == "bytes" and len(r.content) == size
        r = client.get(f"/v1/rooms/{ROOM}/recordings/{REC_ID}/media", headers={"Range": "bytes=100-1123"})
        assert r.status_code == 206
        assert r.headers["content-range"] == f"bytes 100-1123/{size}"
        assert r.content == (target / "replay.webm").read_bytes()[100:1124]
        r = client.get(f"/v1/rooms/{ROOM}/recordings/{REC_ID}/media", headers={"Range": f"bytes={size}-"})
        assert r.status_code == 416
        assert client.get(f"/v1/rooms/{ROOM}/recordings/20990101T000000Z-000000/media").status_code == 404

        r = client.get(f"/replay/{ROOM}")
        assert r.status_code == 200 and "/static/replay.js" in r.text
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert client.get("/static/replay.js").status_code == 200

    service = app.state.ctx.edge.service("recordings")
    assert service.markers(ROOM) == [
        {"offset": 0.0, "at": 1_700_000_000.5, "sku": "SKU-1", "title": "Blue cup", "recording": REC_ID,
         "url": f"/replay/{ROOM}"}
    ]
    assert service.replay_url(ROOM, 12.5) == f"/replay/{ROOM}?t=12.5"
    assert service.markers("elsewhere") == []


def test_private_replays_need_a_token_of_the_room(tmp_path: Path, webm: Path) -> None:
    install(tmp_path, webm)
    app = make_app(tmp_path, EDGE_RECORDING_PUBLIC="false")
    markers = f"/v1/rooms/{ROOM}/recordings/latest/markers"
    media = f"/v1/rooms/{ROOM}/recordings/latest/media"
    with TestClient(app) as client:
        assert client.get(markers).status_code == 401
        assert client.get(markers, headers=bearer("other", "viewer")).status_code == 403
        assert client.get(markers, headers=bearer(ROOM, "viewer")).status_code == 200
        assert client.get(media).status_code == 401
        token = AUTH.issue(room=ROOM, identity="fan", role="viewer")
        assert client.get(media, params={"token": token}).status_code == 200  # what <video src> can do
        assert client.get(media, params={"token": "garbage"}).status_code == 401
        assert client.get(f"/replay/{ROOM}").status_code == 200  # the page itself asks for the token


def test_unfinished_recording_is_remuxed_at_start(tmp_path: Path, webm: Path) -> None:
    """A node killed mid-recording leaves raw files; the next start remuxes them."""
    install(tmp_path, webm, state="recording")
    app = make_app(tmp_path)
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while (r := client.get(f"/v1/rooms/{ROOM}/recordings/latest/markers")).status_code != 200:
            assert time.monotonic() < deadline, client.get(f"/v1/rooms/{ROOM}/recordings").text
            time.sleep(0.1)  # the remux runs in a child process
        body = r.json()
        assert body["state"] == "ready" and body["duration"] == pytest.approx(1.0, abs=0.03)
        # the marker's offset is recomputed against the media's time 0
        assert body["markers"][0]["offset"] == pytest.approx(0.49, abs=0.002)
        saved = json.loads((tmp_path / "recordings" / ROOM / REC_ID / "recording.json").read_text())
        assert saved["state"] == "ready" and saved["end_reason"] == "recovered"


def test_tap_is_an_append_and_bounded(tmp_path: Path) -> None:
    rec = RoomRecording("r", REC_ID, tmp_path, time.time(), limit=3)

    class P:
        id = "p1"

    for i in range(5):
        rec.rtp(P, b"packet%d" % i, 1.0 + i)  # type: ignore[arg-type]
    rec.sender_report(P, 1 << 32, 90000, 9.0)  # type: ignore[arg-type]
    assert [item[2] for item in rec.queue] == [b"packet0", b"packet1", b"packet2", (1 << 32, 90000)]
    assert rec.dropped == 2


def test_builtin_plugin_turns_pins_into_markers(tmp_path: Path) -> None:
    class FakeRecorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, dict[str, Any]]] = []

        def add_marker(self, room: str, data: dict[str, Any]) -> None:
            self.calls.append((room, data))

    recorder = FakeRecorder()
    plugin = RecordingPlugin(recorder)  # type: ignore[arg-type]
    pin = {"room": "r1", "sku": "S", "title": "T", "price": "1.00", "currency": "USD", "at": 5.0}
    plugin.edge_event("commerce.product_pinned", pin)
    plugin.edge_event("commerce.product_unpinned", {"room": "r1", "sku": "S", "at": 6.0})
    plugin.edge_event("commerce.product_pinned", "garbage")
    assert recorder.calls == [("r1", pin)]
