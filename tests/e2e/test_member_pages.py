"""Membership, segments and after-sales on the node's own pages in headless Chromium.

One node loads chat, commerce, loyalty, segments and aftersales; one host page and one
watch page (opened with ``?ref=`` of a viewer seen in the room) go through what a
member does in a live room:

- the member badge (``#member-badge``, from ``GET /v1/plugins/loyalty/me``), the daily
  check-in (``#checkin-button`` -> ``loyalty.checkin``), a purchase from the card's buy
  button, after which the badge shows the new points and tier;
- the referral (``segments.referred`` once after connecting) converting on that first
  paid order, with its coupon toast;
- a poll the host starts and closes from the host page, the viewer's vote and the
  results; a verifiable draw (commitment, seed, winner, checked in both browsers);
- a targeted coupon: the viewer tapped a product's card on three pins without buying
  it, and the next pin brings a dismissible coupon toast (``coupon.granted``);
- the after-sales panel: a FAQ answer to a question, a ticket for the order, an agent's
  answer arriving live, and the replay page's ``?service=<sku>`` link opening the panel.

The pages' Content-Security-Policy forbids eval, so every predicate is a function.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any, Iterator

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from ..commerce.clients import write_config
from ..nodeproc import NodeProcess
from .chromium import BrowserPages
from .test_commerce_pages import open_page_with, pin_from_host_page
from .test_pages import CHAT_TIMEOUT_MS, csp_violations, open_page, wait_until

pytestmark = pytest.mark.browser

LOAD = "chat,commerce,loyalty,segments,aftersales"
CONFIG = """
[plugins.commerce]
payment_delay_seconds = 0.3

[plugins.loyalty]
checkin_points = 5
checkin_growth = 1
purchase_points_per_unit = 1       # 20 USD paid: 20 points
purchase_growth_per_unit = 1       # ... and 20 growth: silver

[[plugins.loyalty.tiers]]
name = "bronze"
growth = 0
privileges = []
[[plugins.loyalty.tiers]]
name = "silver"
growth = 20
privileges = ["member_price"]
[[plugins.loyalty.tiers]]
name = "gold"
growth = 1000
privileges = ["member_price", "early_access"]

[plugins.segments]
targeted_min_clicks = 3            # clicks on a SKU, without buying it, for a targeted coupon
"""


@pytest.fixture(scope="module")
def member_node() -> Iterator[NodeProcess]:
    proc = NodeProcess(env={"EDGE_CONFIG": write_config(CONFIG), "EDGE_LOAD_PLUGINS": LOAD}).start()
    yield proc
    proc.stop()


def post(node: NodeProcess, room: str, path: str, body: Any) -> httpx.Response:
    token = node.token(room, "seller", "host")
    return httpx.post(f"{node.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def clicks_on(node: NodeProcess, room: str, identity: str, sku: str) -> int:
    token = node.token(room, "seller", "host")
    r = httpx.get(f"{node.url}/v1/plugins/segments/rooms/{room}/profiles/{identity}",
                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return int(r.json().get("clicks_by_sku", {}).get(sku, 0)) if r.status_code == 200 else 0


async def join(node: NodeProcess, room: str, identity: str, role: str) -> ClientConnection:
    """A plain WebSocket participant (the referrer, an after-sales agent)."""
    token = node.token(room, identity, role)
    return await connect(f"ws://127.0.0.1:{node.port}/v1/rooms/{room}/ws?token={token}")


async def receive(ws: ClientConnection, type: str, match: Any = lambda data: True, timeout: float = 10.0) -> Any:
    """The first envelope of `type` whose data `match` accepts."""
    async def first() -> Any:
        while True:
            envelope = json.loads(await ws.recv())
            if envelope["type"] == type and match(envelope["data"]):
                return envelope
    return await asyncio.wait_for(first(), timeout)


async def badge_text(page: Any) -> str:
    """What the member badge shows: "<tier> <points> pts"."""
    tier = await page.text_content("#member-badge .member-tier")
    points = await page.text_content("#member-badge .member-points")
    return f"{tier} {points}"


async def test_member_badge_polls_coupons_and_aftersales_from_the_pages(
    member_node: NodeProcess, chromium: BrowserPages
) -> None:
    node = member_node
    room = "club-" + secrets.token_hex(4)
    for sku, title in (("tee", "Logo tee"), ("cap", "Snapback cap")):
        created = await asyncio.to_thread(post, node, room, f"/v1/plugins/commerce/rooms/{room}/products",
                                          {"sku": sku, "title": title, "price": "20.00", "currency": "USD", "stock": 5})
        assert created.status_code == 201, created.text
    faq = await asyncio.to_thread(post, node, room, f"/v1/plugins/aftersales/rooms/{room}/faq", {
        "question": "How do I wash the tee?", "answer": "Cold hand wash, dry flat.", "keywords": ["wash"],
    })
    assert faq.status_code == 201, faq.text
    # the referrer is a viewer the room has seen
    ambassador = await join(node, room, "ambassador", "viewer")

    host = await open_page(chromium, node, "host", f"/host/{room}", node.token(room, "seller", "host"))
    watch = await open_page_with(chromium, node, "watch", f"/watch/{room}", node.token(room, "fan", "viewer"),
                                 ref="ambassador")
    for name in ("host", "watch"):
        await wait_until(chromium, name, "() => window.edgeChat && window.edgeState.chat.state === 'open'",
                         f"{name} page: chat not connected", CHAT_TIMEOUT_MS)

    # -- the referral is recorded once the page connects; a first-time viewer gets the welcome coupon
    await wait_until(chromium, "watch", "() => !!window.edgeState.referral", "no answer to segments.referred",
                     CHAT_TIMEOUT_MS)
    assert await watch.evaluate("() => window.edgeState.referral") == {"referrer": "ambassador", "status": "recorded"}
    await wait_until(chromium, "watch", "() => window.edgeState.coupons.some((c) => c.reason === 'welcome')",
                     "no welcome coupon", CHAT_TIMEOUT_MS)

    # -- the member badge, then the daily check-in
    await wait_until(chromium, "watch", "() => !!window.edgeState.member && window.edgeState.member.available",
                     "the member badge did not load", CHAT_TIMEOUT_MS)
    assert await watch.is_visible("#member-badge")
    assert await badge_text(watch) == "Bronze 0 pts"
    assert await watch.is_enabled("#checkin-button")
    await watch.click("#checkin-button")
    await wait_until(chromium, "watch", "() => !!window.edgeState.member.checkin", "no answer to the check-in",
                     CHAT_TIMEOUT_MS)
    checkin = await watch.evaluate("() => window.edgeState.member.checkin")
    assert (checkin["points"], checkin["growth"], checkin["balance"]) == (5, 1, {"points": 5, "growth": 1}), checkin
    assert await badge_text(watch) == "Bronze 5 pts"
    assert await watch.is_disabled("#checkin-button")
    assert "checked in" in (await watch.text_content("#checkin-button")).lower()

    # -- a purchase: the badge shows the purchase's points and the tier it reached
    await pin_from_host_page(chromium, host, "tee")
    await wait_until(chromium, "watch", "() => !!window.edgeState.product && window.edgeState.product.sku === 'tee'",
                     "the tee's card did not appear", CHAT_TIMEOUT_MS)
    await watch.click("#product-card #buy-button")
    await wait_until(chromium, "watch", "() => window.edgeState.orders.some((o) => o.sku === 'tee' && o.state === 'paid')",
                     "the tee was not paid", CHAT_TIMEOUT_MS)
    await wait_until(chromium, "watch",
                     "() => window.edgeState.member.points === 25 && window.edgeState.member.tier === 'silver'",
                     "the member badge did not update after the purchase", CHAT_TIMEOUT_MS)
    assert await badge_text(watch) == "Silver 25 pts"
    # the referral converted on this first paid order: a coupon for each side
    await wait_until(chromium, "watch", "() => window.edgeState.coupons.some((c) => c.reason === 'referral_invitee')",
                     "no referral coupon for the invitee", CHAT_TIMEOUT_MS)
    granted = await receive(ambassador, "coupon.granted", lambda d: d["reason"] != "welcome")
    assert (granted["data"]["reason"], granted["data"]["invitee"]) == ("referral_referrer", "fan"), granted
    await ambassador.close()

    # -- a poll: the host starts it, the viewer votes and sees the results, the host closes it
    await host.fill("#poll-form [name=question]", "Which colour next?")
    await host.fill("#poll-form [name=options]", "Red\nBlue\nGreen")
    await host.click("#poll-create")
    await wait_until(chromium, "watch", "() => Object.keys(window.edgeState.polls).length === 1",
                     "the poll did not reach the watch page", CHAT_TIMEOUT_MS)
    poll_id = await watch.evaluate("() => Object.keys(window.edgeState.polls)[0]")
    poll = watch.locator(f"#polls [data-poll-id='{poll_id}']")
    assert "Which colour next?" in await poll.text_content()
    await poll.locator("button[data-option='1']").click()
    await wait_until(chromium, "watch", "(id) => window.edgeState.polls[id].voted === 1", "the vote was not taken",
                     CHAT_TIMEOUT_MS, arg=poll_id)
    assert await poll.locator("button[data-option='0']").is_disabled()  # one vote per viewer
    await wait_until(chromium, "host", "(id) => !!window.edgeState.polls[id] && window.edgeState.polls[id].total === 1",
                     "the host page did not see the vote (live results)", CHAT_TIMEOUT_MS, arg=poll_id)
    await host.click(f"#polls [data-poll-id='{poll_id}'] button[data-action=close-poll]")
    await wait_until(chromium, "watch", "(id) => window.edgeState.polls[id].closed === true", "the poll did not close",
                     CHAT_TIMEOUT_MS, arg=poll_id)
    results = await watch.evaluate("(id) => window.edgeState.polls[id]", poll_id)
    assert (results["counts"], results["total"]) == ([0, 1, 0], 1), results
    assert "100%" in await poll.locator("button[data-option='1']").text_content()

    # -- a draw: the commitment first, then seed and winner, verified in both browsers
    await host.fill("#draw-form [name=title]", "Tote bag")
    await host.click("#draw-create")
    await wait_until(chromium, "watch", "() => Object.keys(window.edgeState.draws).length === 1",
                     "the draw was not announced", CHAT_TIMEOUT_MS)
    draw_id = await watch.evaluate("() => Object.keys(window.edgeState.draws)[0]")
    assert await watch.evaluate("(id) => window.edgeState.draws[id].seed", draw_id) is None  # sealed
    await host.click(f"#draws [data-draw-id='{draw_id}'] button[data-action=run-draw]")
    for name in ("watch", "host"):
        await wait_until(chromium, name, "(id) => window.edgeState.draws[id].verified === true",
                         f"{name}: the draw's result was not verified", CHAT_TIMEOUT_MS, arg=draw_id)
    draw = await watch.evaluate("(id) => window.edgeState.draws[id]", draw_id)
    assert (draw["winners"], draw["participants"], draw["won"]) == (["fan"], 1, True), draw
    assert len(draw["seed"]) == 64 and len(draw["commitment"]) == 64, draw
    assert "You won" in await watch.text_content(f"#draws [data-draw-id='{draw_id}']")
    assert "fan" in await host.text_content(f"#draws [data-draw-id='{draw_id}'] .draw-winners")

    # -- a targeted coupon: three pins of the cap, a tap on its card each time, no purchase
    for n in range(1, 4):
        await pin_from_host_page(chromium, host, "cap")
        await wait_until(chromium, "watch", "() => !!window.edgeState.product && window.edgeState.product.sku === 'cap'",
                         "the cap's card did not appear", CHAT_TIMEOUT_MS)
        await watch.click("#product-card .product-title")
        for _ in range(100):  # the click reaches segments through commerce's event
            if await asyncio.to_thread(clicks_on, node, room, "fan", "cap") >= n:
                break
            await asyncio.sleep(0.05)
        assert await asyncio.to_thread(clicks_on, node, room, "fan", "cap") == n
        await host.click("#unpin-button")
        await wait_until(chromium, "watch", "() => window.edgeState.product === null", "the cap stayed pinned",
                         CHAT_TIMEOUT_MS)
    assert not await watch.evaluate("() => window.edgeState.coupons.some((c) => c.reason === 'targeted')")
    await pin_from_host_page(chromium, host, "cap")
    await wait_until(chromium, "watch",
                     "() => window.edgeState.coupons.some((c) => c.reason === 'targeted' && c.sku === 'cap')",
                     "no targeted coupon when the host pinned the cap again", CHAT_TIMEOUT_MS)
    coupon = await watch.evaluate("() => window.edgeState.coupons.find((c) => c.reason === 'targeted')")
    toast = watch.locator(f".coupon-toast[data-code='{coupon['code']}']")
    assert await toast.is_visible()
    text = await toast.text_content()
    assert coupon["code"] in text and f"{coupon['percent_off']}% off" in text and "Valid until" in text, text
    await toast.locator("button[data-action=dismiss]").click()
    assert await toast.count() == 0
    assert await watch.evaluate("(code) => window.edgeState.coupons.find((c) => c.code === code).dismissed",
                                coupon["code"])

    # -- after-sales: a FAQ answer, then a ticket for the order and an agent's live answer
    await watch.click("#aftersales-button")
    await wait_until(chromium, "watch", "() => window.edgeState.aftersales.orders.length === 1",
                     "the after-sales panel did not list the order", CHAT_TIMEOUT_MS)
    assert await watch.is_visible("#aftersales-panel")
    await watch.fill("#aftersales-ask-input", "How should I wash it?")
    await watch.press("#aftersales-ask-input", "Enter")
    await wait_until(chromium, "watch", "() => !!window.edgeState.aftersales.answer", "no FAQ answer", CHAT_TIMEOUT_MS)
    assert "Cold hand wash" in await watch.text_content("#aftersales-answer")

    order_id = await watch.evaluate("() => window.edgeState.orders.find((o) => o.sku === 'tee').order_id")
    await watch.click("#aftersales-open-box summary")
    assert await watch.input_value("#aftersales-order") == order_id
    await watch.select_option("#aftersales-reason", "damaged")
    await watch.fill("#aftersales-text", "The print is cracked.")
    await watch.click("#aftersales-open")
    await wait_until(chromium, "watch",
                     "() => window.edgeState.aftersales.messages.some((m) => m.text === 'The print is cracked.')",
                     "the ticket's conversation did not show the buyer's text", CHAT_TIMEOUT_MS)
    ticket_id = await watch.evaluate("() => window.edgeState.aftersales.ticketId")
    agent = await join(node, room, "agent-7", "service")
    await agent.send(json.dumps({"type": "aftersales.message", "id": "a-1",
                                 "data": {"ticket_id": ticket_id, "text": "Sorry! A new one is on its way."}}))
    await wait_until(chromium, "watch",
                     "() => window.edgeState.aftersales.messages.some((m) => m.kind === 'agent')",
                     "the agent's answer did not arrive", CHAT_TIMEOUT_MS)
    assert "A new one is on its way" in await watch.text_content("#aftersales-log .kind-agent")
    await agent.close()
    assert await watch.evaluate("() => window.edgeState.aftersales.errors") == []
    assert await watch.evaluate("() => window.edgeState.chat.errors") == []

    # -- the replay page's link, /watch/{room}?service=<sku>: the panel opens about that product
    await watch.goto(f"{node.url}/watch/{room}?service=tee")  # the tab keeps its token
    await wait_until(chromium, "watch",
                     "() => window.edgeState.aftersales && window.edgeState.aftersales.open"
                     " && window.edgeState.aftersales.orders.length === 1",
                     "?service= did not open the after-sales panel", CHAT_TIMEOUT_MS)
    assert await watch.evaluate("() => window.edgeState.aftersales.sku") == "tee"
    assert "Logo tee" in await watch.text_content("#aftersales-about")
    assert await watch.input_value("#aftersales-order") == order_id
    assert not csp_violations(chromium), csp_violations(chromium)
