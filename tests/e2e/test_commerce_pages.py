"""Commerce on the node's own pages in headless Chromium: pin, countdown, buy, sold out.

The host pins a product from the host page's products card (``#commerce``: a row per
product with a pin button, ``#pin-countdown``, ``#unpin-button``), the watch page shows
the pinned card with its countdown, a viewer taps the card (``product.click``) and its
``#buy-button`` (``order.place`` with a fresh idempotency key), and ``#order-status``
follows the order from ``reserved`` to ``paid``; the last unit sells out the product
(``stock.updated``): every watch page marks the card sold out and disables its buy
button, and a buyer who still tries is refused with ``sold_out`` (shown on the page).

``test_flash_sale_pin_buy_and_sold_out_from_the_pages`` does the same with the flashsale
plugin loaded and the SKU in a live flash sale (it fails, never skips, without flashsale).

``test_pages_have_commerce_controls`` is the UI contract of docs/commerce.md ("What the
pages need"), in a few lines.

The pages' Content-Security-Policy forbids eval, so every predicate is a function.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import secrets
from typing import Any, Iterator
from urllib.parse import urlencode

import httpx
import pytest

from ..commerce.clients import write_config
from ..nodeproc import NodeProcess
from .chromium import BrowserPages
from .test_pages import CHAT_TIMEOUT_MS, csp_violations, open_page, report, wait_until

pytestmark = pytest.mark.browser

PREFIX = "/v1/plugins/commerce"
ORDER_ANSWER = "(env) => env.type === 'order.accepted' || env.type === 'order.rejected'"
# The pages with chat and commerce; flashsale joins when it is installed (its own test covers it).
LOAD = "chat,commerce"
CONFIG = """
[plugins.commerce]
currencies = {USD = 1.0, MXN = 17.1, JPY = 151.0}
region_currency = {mx = "MXN"}
payment_delay_seconds = 0.5
"""


@pytest.fixture(scope="module")
def shop_node() -> Iterator[NodeProcess]:
    proc = NodeProcess(env={"EDGE_CONFIG": write_config(CONFIG), "EDGE_LOAD_PLUGINS": LOAD}).start()
    yield proc
    proc.stop()


def rest(node: NodeProcess, room: str, method: str, path: str, body: Any = None) -> httpx.Response:
    token = node.token(room, "seller", "host")
    return httpx.request(
        method, f"{node.url}{PREFIX}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


async def record_envelopes(page: Any) -> None:
    """Keep every envelope the page's chat client receives in window.commerceSeen (test hook)."""
    await page.evaluate(
        "() => { window.commerceSeen = []; window.edgeChat.on('*', (d, env) => window.commerceSeen.push(env)); }"
    )


async def wait_envelope(chromium: BrowserPages, name: str, predicate: str, what: str, arg: Any = None) -> Any:
    """The first envelope in window.commerceSeen that `predicate` (a JS function of (env, arg)) accepts."""
    await wait_until(
        chromium, name, f"(arg) => window.commerceSeen.some((env) => ({predicate})(env, arg))", what,
        CHAT_TIMEOUT_MS, arg=arg,
    )
    return await chromium.pages[name].evaluate(
        f"(arg) => window.commerceSeen.find((env) => ({predicate})(env, arg))", arg
    )


async def open_page_with(
    chromium: BrowserPages, node: NodeProcess, name: str, path: str, token: str, **query: str
) -> Any:
    """open_page with page parameters of its own (``?currency=JPY``, ``?ref=...``) before ``token``."""
    context = await chromium.browser.new_context(viewport={"width": 1280, "height": 800})
    tab = await context.new_page()
    tab.on("console", lambda m: chromium.logs.append(f"[{name}] {m.type}: {m.text}"))
    tab.on("pageerror", lambda e: chromium.logs.append(f"[{name}] pageerror: {e}"))
    chromium.pages[name] = tab
    response = await tab.goto(f"{node.url}{path}?{urlencode({**query, 'token': token})}")
    assert response is not None and response.status == 200, response and response.status
    return tab


async def open_shop(
    chromium: BrowserPages, node: NodeProcess, room: str, rival_query: dict[str, str] | None = None
) -> tuple[Any, Any, Any]:
    """The host page, a viewer from Mexico (region mx: MXN prices) and a rival viewer
    (whose page may carry page parameters, e.g. ``{"currency": "JPY"}``)."""
    host = await open_page(chromium, node, "host", f"/host/{room}", node.token(room, "seller", "host"))
    watch = await open_page(chromium, node, "watch", f"/watch/{room}",
                            node.token(room, "fan", "viewer", region="mx"))
    rival = await open_page_with(chromium, node, "rival", f"/watch/{room}", node.token(room, "rival", "viewer"),
                                 **(rival_query or {}))
    for name in ("host", "watch", "rival"):
        await wait_until(chromium, name, "() => window.edgeChat && window.edgeState.chat.state === 'open'",
                         f"{name} page: chat not connected", CHAT_TIMEOUT_MS)
        await record_envelopes(chromium.pages[name])
    return host, watch, rival


async def pin_from_host_page(chromium: BrowserPages, host: Any, sku: str, countdown: str = "") -> None:
    """The host pins `sku` with the products card (its row's pin button, #pin-countdown)."""
    row = f"#commerce [data-sku='{sku}']"
    await wait_until(chromium, "host", "(row) => !!document.querySelector(row + ' button[data-action=pin]')",
                     f"the host page's products card has no row for {sku}", CHAT_TIMEOUT_MS, arg=row)
    await host.fill("#pin-countdown", countdown)
    await host.click(f"{row} button[data-action=pin]")
    await wait_until(chromium, "host", "(sku) => !!window.edgeState.pinned && window.edgeState.pinned.sku === sku",
                     "the host page did not learn of its own pin", CHAT_TIMEOUT_MS, arg=sku)


async def card_sold_out(chromium: BrowserPages, name: str) -> None:
    """The watch page `name` shows the pinned card as sold out, buy button disabled."""
    await wait_until(chromium, name, "() => !!window.edgeState.product && window.edgeState.product.sold_out === true",
                     f"{name}: the card did not learn it is sold out", CHAT_TIMEOUT_MS)
    page = chromium.pages[name]
    assert await page.get_attribute("#product-card", "data-sold-out") == "true"
    assert await page.is_disabled("#product-card #buy-button")
    assert await page.is_visible("#product-card .product-soldout")
    assert "sold out" in (await page.text_content("#product-card")).lower()


async def test_pin_countdown_buy_and_sold_out_from_the_pages(
    shop_node: NodeProcess, chromium: BrowserPages
) -> None:
    node = shop_node
    room = "shop-" + secrets.token_hex(4)
    created = await asyncio.to_thread(
        rest, node, room, "POST", f"/rooms/{room}/products",
        {"sku": "tee-01", "title": "Logo tee", "price": "20.00", "currency": "USD", "stock": 1},
    )
    assert created.status_code == 201, created.text
    # the rival asks for yen with the page parameter ?currency=JPY (currency.set when the socket opens)
    host, watch, rival = await open_shop(chromium, node, room, rival_query={"currency": "JPY"})
    await wait_until(chromium, "rival", "() => window.edgeState.currencyConfirmed === 'JPY'",
                     "the rival page's ?currency=JPY was not confirmed (currency.updated)", CHAT_TIMEOUT_MS)

    # -- the host's products card lists the product; the host pins it with a 90 s countdown
    assert await host.is_visible("#commerce")
    assert "Logo tee" in await host.text_content("#commerce [data-sku='tee-01']")
    await pin_from_host_page(chromium, host, "tee-01", "90")
    for name in ("watch", "rival"):
        await wait_until(chromium, name, "() => !!window.edgeState.product && window.edgeState.product.sku === 'tee-01'",
                         f"{name}: the pinned card did not appear", CHAT_TIMEOUT_MS)
    assert await watch.is_visible("#product-card")
    assert "Logo tee" in await watch.text_content("#product-card .product-title")
    product = await watch.evaluate("() => window.edgeState.product")
    assert (product["price"], product["currency"]) == (342.0, "MXN"), product  # the mx viewer's currency
    assert (product["stock"], product["sold_out"]) == (1, False), product
    rival_product = await rival.evaluate("() => window.edgeState.product")
    assert (rival_product["price"], rival_product["currency"]) == (3020.0, "JPY"), rival_product
    price_text = await watch.text_content("#product-card .product-price")
    assert "342" in price_text, price_text
    assert await watch.is_enabled("#product-card #buy-button")

    # -- the countdown runs on the card
    await wait_until(chromium, "watch", "() => window.edgeState.product.secondsLeft > 0",
                     "the countdown did not start", CHAT_TIMEOUT_MS)
    first = await watch.evaluate("() => window.edgeState.product.secondsLeft")
    assert 80 <= first <= 90, first
    assert (await watch.text_content("#product-card .countdown")).startswith("Ends in 1:")
    await wait_until(chromium, "watch", "(s) => window.edgeState.product.secondsLeft < s",
                     "the countdown does not count down", 5_000, arg=first)

    # -- the viewer taps the card (product.click, once per pin) and its buy button
    await watch.click("#product-card .product-title")
    await watch.click("#product-card #buy-button")
    place = await wait_envelope(chromium, "watch", ORDER_ANSWER, "no answer to the buy button's order.place")
    assert place["type"] == "order.accepted", place
    accepted = place["data"]
    assert (accepted["amount"], accepted["currency"], accepted["state"]) == (342.0, "MXN", "reserved")
    assert len(accepted["key"]) == 36, accepted  # crypto.randomUUID()
    await wait_until(chromium, "watch",
                     "(id) => window.edgeState.orders.some((o) => o.order_id === id && o.state === 'paid')",
                     "the page did not show the order paid", CHAT_TIMEOUT_MS, arg=accepted["order_id"])
    orders = await watch.evaluate("() => window.edgeState.orders")
    assert len(orders) == 1, orders
    order = orders[0]
    assert (order["sku"], order["amount"], order["currency"]) == ("tee-01", 342.0, "MXN"), order
    assert order["history"] == ["reserved", "paid"], order  # accepted (reserved), then paid
    assert await watch.get_attribute("#order-status", "data-state") == "paid"
    assert "Paid" in await watch.text_content("#order-status")

    # -- that was the last unit: every page hears sold out; the watch pages disable buying
    for name in ("watch", "rival", "host"):
        sold_out = await wait_envelope(chromium, name, "(env) => env.type === 'stock.updated' && env.data.sold_out",
                                       f"{name}: no stock.updated sold out")
        assert sold_out["data"] == {"sku": "tee-01", "stock": 0, "remaining": 0, "sold_out": True}
    for name in ("watch", "rival"):
        await card_sold_out(chromium, name)
    await wait_until(chromium, "host", "() => window.edgeState.pinned.sold_out === true",
                     "the host page did not learn the pinned product sold out", CHAT_TIMEOUT_MS)
    assert "sold out" in (await host.text_content("#commerce [data-sku='tee-01'] .stock")).lower()
    # a buyer who tries anyway (the button is disabled: straight over the socket) is refused, and the page says so
    refused_id = await rival.evaluate(
        "() => window.edgeChat.send('order.place', {sku: 'tee-01', quantity: 1, key: 'rival-1'})"
    )
    refused = await wait_envelope(chromium, "rival", "(env, id) => env.data.reply_to === id",
                                  "no answer to the rival's order.place", refused_id)
    assert refused["type"] == "order.rejected" and refused["data"]["reason"] == "sold_out", refused
    await wait_until(chromium, "rival", "() => (window.edgeState.lastRejection || {}).reason === 'sold_out'",
                     "the rival page did not show the refusal", CHAT_TIMEOUT_MS)
    assert await rival.get_attribute("#order-status", "data-reason") == "sold_out"
    assert "sold out" in (await rival.text_content("#order-status")).lower()

    # -- the host's numbers: the REST stats and the products card's strip
    stats = (await asyncio.to_thread(rest, node, room, "GET", f"/rooms/{room}/stats")).json()
    assert (stats["views"], stats["unique_viewers"], stats["clicks"], stats["orders"]) == (2, 2, 1, 1), stats
    assert stats["gmv"] == 20.0 and stats["conversion"] == 0.5, stats
    await wait_until(chromium, "host", "() => !!window.edgeState.stats && window.edgeState.stats.orders === 1",
                     "the host page's numbers did not show the order", 15_000)
    assert (await host.text_content("#commerce-stats [data-stat=orders] dd")).strip() == "1"
    assert "50.0%" in await host.text_content("#commerce-stats [data-stat=ctr] dd")

    # -- unpin from the host page: the card goes away
    await host.click("#unpin-button")
    await wait_until(chromium, "watch", "() => window.edgeState.product === null", "the card stayed", CHAT_TIMEOUT_MS)
    assert await watch.is_hidden("#product-card")
    await wait_until(chromium, "host", "() => window.edgeState.pinned === null", "the host page still shows a pin",
                     CHAT_TIMEOUT_MS)
    for name in ("watch", "rival"):
        errors = await chromium.pages[name].evaluate("() => window.edgeState.chat.errors")
        assert errors == [], (name, errors)
    assert not csp_violations(chromium), csp_violations(chromium)


@pytest.fixture(scope="module")
def flash_node() -> Iterator[NodeProcess]:
    """The pages with chat, commerce and flashsale; FAILS (never skips) without flashsale."""
    names = {ep.name for ep in importlib.metadata.entry_points(group="edge")}
    if "flashsale" not in names:
        pytest.fail("the flashsale plugin is not installed: `pip install -e plugins/flashsale`", pytrace=False)
    proc = NodeProcess(env={"EDGE_CONFIG": write_config(CONFIG), "EDGE_LOAD_PLUGINS": LOAD + ",flashsale"}).start()
    yield proc
    proc.stop()


async def test_flash_sale_pin_buy_and_sold_out_from_the_pages(
    flash_node: NodeProcess, chromium: BrowserPages
) -> None:
    """The same from the pages when the pinned SKU is in a live flash sale: the card counts
    down the sale, the order goes through the flash sale, and the sale sells out."""
    node = flash_node
    room = "flash-" + secrets.token_hex(4)
    created = await asyncio.to_thread(
        rest, node, room, "POST", f"/rooms/{room}/products",
        {"sku": "drop", "title": "Limited drop", "price": "30.00", "currency": "USD", "stock": 50},
    )
    assert created.status_code == 201, created.text
    token = node.token(room, "seller", "host")
    sale = await asyncio.to_thread(
        lambda: httpx.post(f"{node.url}/v1/plugins/flashsale/rooms/{room}/sales", timeout=10,
                           headers={"Authorization": f"Bearer {token}"},
                           json={"sku": "drop", "stock": 1, "per_user_limit": 1, "duration": 45,
                                 "price_minor": 1000, "currency": "USD"})
    )
    assert sale.status_code == 201, sale.text
    host, watch, rival = await open_shop(chromium, node, room)

    await pin_from_host_page(chromium, host, "drop")  # no countdown of its own: the sale's
    await wait_until(chromium, "watch", "() => !!window.edgeState.product && window.edgeState.product.sku === 'drop'",
                     "the flash-sale card did not appear", CHAT_TIMEOUT_MS)
    product = await watch.evaluate("() => window.edgeState.product")
    assert product["flash_sale"] is True and (product["price"], product["currency"]) == (171.0, "MXN"), product
    await wait_until(chromium, "watch", "() => window.edgeState.product.secondsLeft > 0",
                     "the sale's countdown is not shown", CHAT_TIMEOUT_MS)
    assert 30 <= await watch.evaluate("() => window.edgeState.product.secondsLeft") <= 45
    assert (await watch.text_content("#product-card .countdown")).startswith("Ends in 0:")
    assert (await watch.text_content("#product-card .product-kicker")).strip() == "Flash sale"

    await watch.click("#product-card #buy-button")
    place = await wait_envelope(chromium, "watch", ORDER_ANSWER, "no answer to the buy button's order.place")
    assert place["type"] == "order.accepted", place
    accepted = place["data"]
    assert (accepted["amount"], accepted["currency"]) == (171.0, "MXN")
    for name in ("watch", "rival"):  # the flash sale announces it is sold out; the cards follow
        await wait_envelope(chromium, name, "(env) => env.type === 'sold_out' && env.data.sku === 'drop'",
                            f"{name}: no sold_out from the flash sale")
        await card_sold_out(chromium, name)
    refused_id = await rival.evaluate("() => window.edgeChat.send('order.place', {sku: 'drop', quantity: 1, key: 'r-1'})")
    refused = await wait_envelope(chromium, "rival", "(env, id) => env.data.reply_to === id", "no answer", refused_id)
    assert refused["type"] == "order.rejected" and refused["data"]["reason"] == "sold_out", refused
    await wait_until(chromium, "watch",
                     "(id) => window.edgeState.orders.some((o) => o.order_id === id && o.state === 'paid')",
                     "the flash order was not shown paid", CHAT_TIMEOUT_MS, arg=accepted["order_id"])
    assert "Paid" in await watch.text_content("#order-status")
    assert not csp_violations(chromium), csp_violations(chromium)


async def test_pages_have_commerce_controls(shop_node: NodeProcess, chromium: BrowserPages) -> None:
    """The UI contract of docs/commerce.md ("What the pages need")."""
    node = shop_node
    room = "shop-" + secrets.token_hex(4)
    created = await asyncio.to_thread(
        rest, node, room, "POST", f"/rooms/{room}/products",
        {"sku": "mug", "title": "Mug", "price": 12, "currency": "USD", "stock": 1},
    )
    assert created.status_code == 201, created.text
    host, watch, _ = await open_shop(chromium, node, room)
    # host page: a product list with pin buttons and a countdown, and an unpin button
    await host.wait_for_selector("#commerce [data-sku='mug'] button[data-action='pin']", timeout=5_000)
    await host.fill("#pin-countdown", "60")
    await host.click("#commerce [data-sku='mug'] button[data-action='pin']")
    await wait_until(chromium, "watch", "() => !!window.edgeState.product", "no card", CHAT_TIMEOUT_MS)
    # watch page: a buy button on the card that places an order and shows its state
    await watch.click("#product-card #buy-button")
    await wait_until(chromium, "watch",
                     "() => (window.edgeState.orders || []).some((o) => o.sku === 'mug' && o.state === 'paid')",
                     "the buy button did not lead to a paid order", CHAT_TIMEOUT_MS)
    # ... and a sold-out state from stock.updated
    await wait_until(chromium, "watch", "() => window.edgeState.product.sold_out === true",
                     "the card did not learn it is sold out", CHAT_TIMEOUT_MS)
    assert await watch.get_attribute("#product-card", "data-sold-out") == "true"
    assert await watch.is_disabled("#product-card #buy-button")
    assert "sold out" in (await watch.text_content("#product-card")).lower()
    await host.click("#unpin-button")
    await wait_until(chromium, "watch", "() => window.edgeState.product === null", "the card stayed", CHAT_TIMEOUT_MS)
    assert not csp_violations(chromium), csp_violations(chromium)
