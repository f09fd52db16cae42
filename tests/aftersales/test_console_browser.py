"""The agent console page in headless Debian Chromium (Playwright, ``executable_path``).

The page is served by the plugin at /v1/plugins/aftersales/console/{room} with the
node's Content-Security-Policy; it exposes its state on ``window.edgeState``.
The CSP forbids eval, so every wait_for_function predicate is a function.
"""

from __future__ import annotations

import secrets
from typing import Any, AsyncIterator
from urllib.parse import urlencode

import pytest

from ..e2e.chromium import CHROMIUM, launch, missing_prerequisites
from ..nodeproc import NodeProcess
from .clients import Client, close_all

pytestmark = pytest.mark.browser

TIMEOUT_MS = 10_000


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if any(CHROMIUM in m for m in missing_prerequisites()):
        pytest.fail(f"Chromium is missing at {CHROMIUM} (apt-get install -y chromium)", pytrace=False)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await launch(p)
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_agent_sees_a_new_ticket_and_answers_it(as_node: NodeProcess, browser: Any) -> None:
    room = "console-" + secrets.token_hex(3)
    logs: list[str] = []
    page = await (await browser.new_context(viewport={"width": 1280, "height": 800})).new_page()
    page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: logs.append(f"pageerror: {e}"))

    async def until(predicate: str, what: str, arg: Any = None) -> None:
        try:
            await page.wait_for_function(predicate, arg=arg, timeout=TIMEOUT_MS, polling=50)
        except Exception as exc:
            state = await page.evaluate("() => window.edgeState")
            pytest.fail(f"{what}: {exc.__class__.__name__}\nstate: {state}\nconsole: {logs[-20:]}")

    token = as_node.token(room, "agent-web", "service")
    response = await page.goto(f"{as_node.url}/v1/plugins/aftersales/console/{room}?{urlencode({'token': token})}")
    assert response is not None and response.status == 200
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "default-src 'none'" in csp, csp
    await until("() => window.edgeState && window.edgeState.phase === 'ready'", "the console did not connect")
    assert "token=" not in page.url

    # a buyer opens a ticket: it appears in the queue
    buyer = await Client.join(as_node, room, "web-buyer", "viewer")
    await buyer.ok("test.order", {"order_id": "o-web", "sku": "KETTLE"}, "test.ok")
    opened = await buyer.ok(
        "aftersales.open", {"order_id": "o-web", "reason": "how_to_use", "text": "How do I descale it?"}, "aftersales.opened"
    )
    ticket_id = opened["ticket"]["ticket_id"]
    await until("(id) => window.edgeState.tickets.some((t) => t.ticket_id === id)", "the ticket did not appear", ticket_id)
    assert (await page.text_content("#open-count")).strip() == "1"

    # the agent opens it, reads the question and answers
    await page.click(f'button[data-ticket-id="{ticket_id}"]')
    await until("() => window.edgeState.messages.length === 1 && !document.querySelector('#answer-input').disabled",
                "the conversation did not load")
    assert "How do I descale it?" in await page.text_content("#ticket-log")
    await page.fill("#answer-input", "Vinegar and water, boil twice.")
    await page.click("#answer-send")
    answer = await buyer.wait_for("aftersales.message", lambda e: e["data"]["kind"] == "agent")
    assert answer["data"]["text"] == "Vinegar and water, boil twice."
    assert answer["data"]["from"] == {"identity": "agent-web", "role": "service"}
    await until("() => window.edgeState.messages.length === 2 && window.edgeState.sent === 1", "the answer is not shown")

    # the buyer's reply shows up; the agent closes the ticket
    await buyer.ok("aftersales.message", {"ticket_id": ticket_id, "text": "Thanks!"}, "aftersales.sent")
    await until("() => window.edgeState.messages.some((m) => m.text === 'Thanks!')", "the buyer's reply is not shown")
    await page.fill("#resolution-input", "Explained descaling")
    await page.click("#close-ticket")
    closed = await buyer.wait_for("aftersales.ticket", lambda e: e["data"]["event"] == "closed")
    assert closed["data"]["ticket"]["resolution"] == "Explained descaling"
    await until("(id) => window.edgeState.tickets.length === 0 && window.edgeState.closed.includes(id)",
                "the closed ticket stayed in the queue", ticket_id)
    assert not [line for line in logs if "Content Security Policy" in line or "pageerror" in line], logs
    await close_all(buyer)
