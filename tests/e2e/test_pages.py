"""The node's own pages in headless Chromium: /host/{room} goes live, /watch/{room} plays.

The pages are served by the node (edge/api/web.py, edge/web/) and use the node's
own WHIP/WHEP client (edge/web/static/webrtc.js) and chat client (chat.js).
They expose their state on ``window.edgeState`` (connection state, framesDecoded
from getStats, chat messages, like counter), so nothing here reads pixels.

The pages' Content-Security-Policy forbids eval, so every wait_for_function
predicate is a function (Playwright evaluates a bare expression with eval).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from ..nodeproc import NodeProcess
from .chromium import BrowserPages

pytestmark = pytest.mark.browser

CONNECT_TIMEOUT_MS = 20_000
PLAY_TIMEOUT_MS = 20_000
CHAT_TIMEOUT_MS = 10_000


async def open_page(
    chromium: BrowserPages, node: NodeProcess, name: str, path: str, token: str
) -> Any:
    """Open the node's page `path` with ?token= in a browser context of its own."""
    context = await chromium.browser.new_context(viewport={"width": 1280, "height": 800})
    tab = await context.new_page()
    tab.on("console", lambda m: chromium.logs.append(f"[{name}] {m.type}: {m.text}"))
    tab.on("pageerror", lambda e: chromium.logs.append(f"[{name}] pageerror: {e}"))
    chromium.pages[name] = tab
    response = await tab.goto(f"{node.url}{path}?{urlencode({'token': token})}")
    assert response is not None
    if response.status == 404:
        pytest.fail(f"GET {path} is 404: are web_routes(ctx) wired into edge/app.py?", pytrace=False)
    assert response.status == 200, (response.status, await response.text())
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "default-src 'none'" in csp, csp
    return tab


async def wait_until(
    chromium: BrowserPages, name: str, predicate: str, what: str,
    timeout_ms: int = CONNECT_TIMEOUT_MS, arg: Any = None,
) -> None:
    """Wait for `predicate` (a JS function of `arg`) in page `name`; fail with the
    page states and console when it times out or the page reports an error."""
    page = chromium.pages[name]
    failed = "(window.edgeState && window.edgeState.phase === 'error')"
    try:
        await page.wait_for_function(
            f"(arg) => ({predicate})(arg) || {failed}", arg=arg, timeout=timeout_ms, polling=50
        )
        ok = await page.evaluate(f"(arg) => ({predicate})(arg)", arg)
    except Exception as exc:
        pytest.fail(f"{what}: timed out ({exc.__class__.__name__})\n{await report(chromium)}")
    if not ok:
        pytest.fail(f"{what}: the page failed\n{await report(chromium)}")


async def report(chromium: BrowserPages) -> str:
    return await chromium.report(**{name: "edgeState" for name in chromium.pages})


def csp_violations(chromium: BrowserPages) -> list[str]:
    return [line for line in chromium.logs if "Content Security Policy" in line]


async def poll_room(node: NodeProcess, room: str, done: Any, timeout: float = 5.0) -> Any:
    """node.room(room) until done(view) holds; the node has no event for this, so poll."""
    deadline = time.monotonic() + timeout
    view = await asyncio.to_thread(node.room, room)
    while not done(view) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        view = await asyncio.to_thread(node.room, room)
    return view


async def test_host_page_goes_live_and_watch_page_plays(
    node: NodeProcess, chromium: BrowserPages
) -> None:
    room = "pages-" + secrets.token_hex(4)

    # -- host: token from the URL (then out of the address bar), camera preview, Go live
    host = await open_page(chromium, node, "host", f"/host/{room}", node.token(room, "seller", "host"))
    await wait_until(chromium, "host", "() => window.edgeState.phase === 'preview'",
                     "host page did not get the (fake) camera")
    assert "token=" not in host.url, host.url
    await host.click("#go-live")
    await wait_until(
        chromium, "host",
        "() => window.edgeState.phase === 'live' && window.edgeState.connectionState === 'connected'",
        "host page did not go live",
    )
    assert (await host.text_content("#live-badge")).strip() == "LIVE"

    # -- viewer: WHEP with two video slots and one audio slot; the camera plays
    watch = await open_page(chromium, node, "watch", f"/watch/{room}", node.token(room, "fan", "viewer"))
    await wait_until(chromium, "watch", "() => window.edgeState.framesDecoded > 0",
                     "watch page decoded no video", PLAY_TIMEOUT_MS)
    frames = await watch.evaluate("() => window.edgeState.framesDecoded")
    await wait_until(chromium, "watch", "(f) => window.edgeState.framesDecoded >= f + 15",
                     f"framesDecoded stuck near {frames}", 10_000, arg=frames)
    await wait_until(
        chromium, "watch",
        "() => window.edgeState.layout === 'single' && window.edgeState.slots[0].source === 'camera'",
        "the camera is not shown in the first video slot",
    )
    state = await watch.evaluate("() => window.edgeState")
    assert state["connectionState"] == "connected", state
    assert [s["kind"] for s in state["slots"]] == ["video", "video", "audio"], state["slots"]
    assert state["slots"][1]["active"] is False, state["slots"]  # no screen share
    await wait_until(chromium, "watch", "() => window.edgeState.audio.packetsReceived > 0",
                     "no audio packets reached the watch page")
    assert await watch.is_hidden("#stage-empty")

    admin = await asyncio.to_thread(node.room, room)
    assert admin is not None, node.log()
    assert sorted((p["kind"], p["source"]) for p in admin["producers"]) == [
        ("audio", "microphone"), ("video", "camera")
    ], admin["producers"]

    # -- End live: the page DELETEs its WHIP session; the viewer shows the waiting screen
    await host.click("#go-live")
    await wait_until(chromium, "host", "() => window.edgeState.phase === 'stopped'", "host did not stop")
    admin = await poll_room(node, room, lambda r: r is None or not r["producers"])
    assert admin is None or not admin["producers"], admin
    await wait_until(chromium, "watch", "() => window.edgeState.layout === 'none'",
                     "watch page still shows video after the host ended", 10_000)
    assert await watch.is_visible("#stage-empty")
    assert not csp_violations(chromium), csp_violations(chromium)


async def test_chat_and_likes_between_host_and_watch_pages(
    node: NodeProcess, chromium: BrowserPages
) -> None:
    room = "pages-" + secrets.token_hex(4)
    host = await open_page(chromium, node, "host", f"/host/{room}", node.token(room, "seller", "host"))
    watch = await open_page(chromium, node, "watch", f"/watch/{room}", node.token(room, "fan", "viewer"))
    for name in ("host", "watch"):
        await wait_until(
            chromium, name,
            "() => window.edgeState.chat.state === 'open' && window.edgeState.chat.system.length > 0",
            f"{name} page: chat not connected or no welcome (is the chat plugin installed?)",
            CHAT_TIMEOUT_MS,
        )

    # -- host types a message and presses Enter: it appears on the watch page
    text = "Flash deal in 5 minutes " + secrets.token_hex(3)
    await host.fill("#chat-input", text)
    await host.press("#chat-input", "Enter")
    await wait_until(
        chromium, "watch",
        "(t) => window.edgeState.chat.messages.some(m => m.text === t && m.identity === 'seller' && m.role === 'host')",
        "the host's chat message did not reach the watch page", CHAT_TIMEOUT_MS, arg=text,
    )
    assert await watch.locator(".chat-log .msg .text", has_text=text).count() == 1

    # -- the viewer answers with the Send button: the host sees it
    answer = "Is it in size M? " + secrets.token_hex(3)
    await watch.fill("#chat-input", answer)
    await watch.click("#chat-send")
    await wait_until(
        chromium, "host",
        "(t) => window.edgeState.chat.messages.some(m => m.text === t && m.identity === 'fan')",
        "the viewer's chat message did not reach the host page", CHAT_TIMEOUT_MS, arg=answer,
    )

    # -- likes on the watch page update the counter on the host page (likes.updated)
    for _ in range(3):
        await watch.click("#like-button")
    await wait_until(chromium, "host", "() => window.edgeState.likes >= 3",
                     "likes did not reach the host page", CHAT_TIMEOUT_MS)
    assert (await host.text_content("#like-count")).strip() == "3"
    await wait_until(chromium, "watch", "() => window.edgeState.likes >= 3",
                     "the watch page's like counter did not update", CHAT_TIMEOUT_MS)

    # -- moderation: the host deletes the viewer's message; it disappears on the watch page
    message_id = await host.evaluate(
        "(t) => window.edgeState.chat.messages.find(m => m.text === t).id", answer
    )
    row = host.locator(f".chat-log li[data-id='{message_id}']")
    await row.hover()
    await row.locator("button[data-action=delete]").click()
    await wait_until(
        chromium, "watch",
        "(id) => window.edgeState.chat.deleted.includes(id) && !window.edgeState.chat.messages.some(m => m.id === id)",
        "the deleted message is still on the watch page", CHAT_TIMEOUT_MS, arg=message_id,
    )
    assert await watch.locator(".chat-log .msg .text", has_text=answer).count() == 0
    errors = await watch.evaluate("() => window.edgeState.chat.errors")
    assert errors == [], errors
    assert not csp_violations(chromium), csp_violations(chromium)
