"""Headless Chromium publishes to a real node via WHIP and plays it back via WHEP.

The pages (tests/e2e/pages/) use the whip-whep npm package's WHIPClient and
WHEPClient, from another origin than the node (so CORS is exercised too).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import pytest

from ..nodeproc import NodeProcess
from .chromium import BrowserPages

pytestmark = pytest.mark.browser

CONNECT_TIMEOUT_MS = 20_000
PLAY_TIMEOUT_MS = 20_000


async def wait_for(
    chromium: BrowserPages, name: str, var: str, ok: str, timeout_ms: int, what: str
) -> None:
    """Wait (in the page, on an event-less condition) until `ok` or the page failed."""
    failed = (
        f"(window.{var} && (window.{var}.phase === 'error' || "
        f"window.{var}.connectionState === 'failed'))"
    )
    page = chromium.pages[name]
    try:
        await page.wait_for_function(f"({ok}) || {failed}", timeout=timeout_ms, polling=50)
    except Exception as exc:
        pytest.fail(f"{what}: timed out ({exc.__class__.__name__})\n{await chromium.report(**{name: var})}")
    if not await page.evaluate(ok):
        pytest.fail(f"{what}: page failed\n{await chromium.report(**{name: var})}")


def viewer_entries(room: dict[str, Any] | None, session_id: str) -> tuple[list, list]:
    """(sessions, consumers) of the room that belong to the WHEP session."""
    if room is None:
        return [], []
    sessions = [s for s in room.get("sessions", []) if s.get("id") == session_id]
    consumers = [c for c in room.get("consumers", []) if c.get("session") == session_id]
    return sessions, consumers


async def poll_room(node: NodeProcess, room: str, done: Any, timeout: float = 5.0) -> Any:
    """node.room(room) until done(view) holds; the node has no event for this, so poll."""
    deadline = time.monotonic() + timeout
    view = await asyncio.to_thread(node.room, room)
    while not done(view) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        view = await asyncio.to_thread(node.room, room)
    return view


async def test_chromium_publishes_via_whip_and_views_via_whep(
    node: NodeProcess, chromium: BrowserPages, record_property: Any
) -> None:
    room = "e2e-" + secrets.token_hex(4)

    # -- publisher: fake camera + mic -> WHIP
    await chromium.open(
        "pub", "pub.html", node=node.url, room=room, token=node.token(room, "alice", "host")
    )
    await wait_for(
        chromium, "pub", "pub", "window.pub.connectionState === 'connected'",
        CONNECT_TIMEOUT_MS, "publisher did not reach connectionState 'connected'",
    )
    pub = await chromium.state("pub", "pub")
    assert pub["postStatus"] == 201, pub
    assert pub["resource"].startswith(f"/whip/{room}/"), pub  # Location readable: CORS expose

    # -- viewer: WHEP -> <video>
    await chromium.open(
        "view", "view.html", node=node.url, room=room, token=node.token(room, "bob", "viewer")
    )
    await wait_for(
        chromium, "view", "view", "window.view.playing === true",
        PLAY_TIMEOUT_MS, "viewer's <video> did not play",
    )
    view = await chromium.state("view", "view")
    assert view["connectionState"] == "connected", await chromium.report(view="view")
    assert view["readyState"] >= 2 and view["videoWidth"] > 0, view
    join_ms = view["joinMs"]
    assert isinstance(join_ms, (int, float)) and join_ms > 0, view
    print(
        f"join_ms={join_ms} (WHEP POST -> first decoded frame; answer {view.get('answerMs')} ms, "
        f"connected {view.get('connectedMs')} ms) codec={view.get('codec')} "
        f"size={view.get('frameSize')} pair={view.get('pair')}"
    )
    record_property("join_ms", join_ms)

    # -- both Chromium peers talk to the node's one UDP port (nodeproc: a free one per node)
    await wait_for(
        chromium, "pub", "pub", "Boolean(window.pub.pair)", CONNECT_TIMEOUT_MS,
        "publisher has no selected candidate pair",
    )
    pub_pair = (await chromium.state("pub", "pub"))["pair"]
    view_pair = (await chromium.state("view", "view"))["pair"]
    node_end = f"-> host 127.0.0.1:{node.udp_port}"
    assert pub_pair.split(" -> ")[0] != view_pair.split(" -> ")[0], (pub_pair, view_pair)
    udp = (await asyncio.to_thread(node.runtime))["udp"]
    if udp["mode"] == "mux":  # the default
        assert udp["port"] == node.udp_port, udp
        assert pub_pair.endswith(node_end) and view_pair.endswith(node_end), (pub_pair, view_pair, node_end)
    else:  # EDGE_MEDIA_UDP_MUX=false: a node port per peer
        assert pub_pair.split(" -> ")[1] != view_pair.split(" -> ")[1], (pub_pair, view_pair)

    # -- framesDecoded keeps growing: two samples >= 1 s apart
    page = chromium.pages["view"]
    f1, t1 = await page.evaluate("[window.view.framesDecoded, performance.now()]")
    try:
        await page.wait_for_function(
            "([f1, t1]) => performance.now() - t1 >= 1000 && window.view.framesDecoded > f1",
            arg=[f1, t1], timeout=10_000, polling=100,
        )
    except Exception:
        pytest.fail(f"framesDecoded stuck at {f1}\n{await chromium.report(view='view')}")
    f2, t2 = await page.evaluate("[window.view.framesDecoded, performance.now()]")
    assert f2 > f1 and t2 - t1 >= 1000, (f1, t1, f2, t2)

    # -- the node's view of the room: 2 producers, the viewer's 2 consumers carry packets
    session_id = view["resource"].rsplit("/", 1)[1]
    assert view["resource"] == f"/whep/{room}/{session_id}", view
    admin = await asyncio.to_thread(node.room, room)
    assert admin is not None, f"room {room} missing from the admin API\n{node.log()}"
    producers = admin["producers"]
    assert sorted(p["kind"] for p in producers) == ["audio", "video"], producers
    assert all(p["participant"] == "alice" for p in producers), producers
    # The node answered the publisher's red/48000/2 first: Chromium sends its audio as
    # RED, which the node unwraps at ingress (edge/media/red_receive.py) into the
    # Opus the viewer gets.
    audio = next(p for p in producers if p["kind"] == "audio")
    assert audio["codec"] == "opus" and audio["red"] is not None, audio
    assert audio["red"]["packets"] > 0 and audio["red"]["packets"] >= audio["packets"] - 5, audio
    _, consumers = viewer_entries(admin, session_id)
    assert sorted(c["kind"] for c in consumers) == ["audio", "video"], admin
    assert all(c["viewer"] == "bob" and c["packets"] > 0 for c in consumers), consumers

    # -- WHEPClient.stop(): pc.close() then DELETE <Location>; the viewer leaves the room
    status = await page.evaluate("window.whep.stop().then(() => window.view.deleteStatus)")
    assert status == 200, await chromium.report(view="view")
    admin = await poll_room(node, room, lambda r: viewer_entries(r, session_id) == ([], []))
    assert viewer_entries(admin, session_id) == ([], []), admin
    assert admin is not None and len(admin["producers"]) == 2, admin  # publisher stays

    # -- and WHIPClient.stop() takes the producers away
    status = await chromium.pages["pub"].evaluate(
        "window.whip.stop().then(() => window.pub.deleteStatus)"
    )
    assert status == 200, await chromium.report(pub="pub")
    admin = await poll_room(node, room, lambda r: r is None or not r["producers"])
    assert admin is None or not admin["producers"], admin
