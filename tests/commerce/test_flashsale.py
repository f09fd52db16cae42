"""Commerce with the flashsale plugin: an order on a SKU with a live flash sale goes
through ``edge.service("flashsale").reserve`` (and its payment through
``confirm_payment``), not the catalog's stock.

A real node loads the installed `edge-flashsale` distribution next to commerce.
When that plugin is not installed this test FAILS (never skips): commerce's
promise to work with it must be checked, not assumed.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any, Iterator

import httpx
import pytest

from ..nodeproc import NodeProcess
from .clients import Api, Shopper, close_all, write_config

CONFIG = """
[plugins.commerce]
currencies = {USD = 1.0, MXN = 17.1}
region_currency = {mx = "MXN"}
payment_delay_seconds = 1.0

[plugins.flashsale]
hold_seconds = 60
"""


def require_flashsale() -> None:
    names = {ep.name for ep in importlib.metadata.entry_points(group="edge")}
    if "flashsale" not in names:
        pytest.fail(
            "the flashsale plugin is not installed: `pip install -e plugins/flashsale` "
            "(commerce must be tested with it; this test never skips)",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def flash_node() -> Iterator[NodeProcess]:
    require_flashsale()
    proc = NodeProcess(
        env={"EDGE_CONFIG": write_config(CONFIG), "EDGE_LOAD_PLUGINS": "chat,commerce,flashsale"}
    ).start()
    yield proc
    proc.stop()


async def create_sale(node: NodeProcess, room: str, **body: Any) -> dict[str, Any]:
    token = node.token(room, "seller", "host")
    async with httpx.AsyncClient(base_url=node.url, headers={"Authorization": f"Bearer {token}"}) as client:
        response = await client.post(f"/v1/plugins/flashsale/rooms/{room}/sales", json=body)
        assert response.status_code == 201, response.text
        return response.json()


async def flash_orders(node: NodeProcess, room: str, sale_id: str) -> dict[str, dict[str, Any]]:
    token = node.token(room, "seller", "host")
    async with httpx.AsyncClient(base_url=node.url, headers={"Authorization": f"Bearer {token}"}) as client:
        response = await client.get(f"/v1/plugins/flashsale/rooms/{room}/sales/{sale_id}/orders")
        assert response.status_code == 200, response.text
        return {o["order_id"]: o for o in response.json()["orders"]}


async def test_order_on_a_flash_sale_sku_goes_through_the_flash_sale(flash_node: NodeProcess) -> None:
    node, room = flash_node, "flash-orders"
    api = Api(node, room, "seller", "host")
    await api.add(sku="tee-01", title="Logo tee", price=20, currency="USD", stock=100)
    await api.add(sku="mug", title="Mug", price=8, currency="USD", stock=100)
    sale = await create_sale(node, room, sku="tee-01", stock=2, per_user_limit=1, duration=120, title="Tee drop",
                             price_minor=1500, currency="USD")  # 15.00 USD instead of the catalog's 20
    ana = await Shopper.join(node, room, "ana", "viewer", region="mx")
    ben = await Shopper.join(node, room, "ben", "viewer")
    cy = await Shopper.join(node, room, "cy", "viewer")

    # the pinned card shows the sale: its units left and its time left
    await api.post("/rooms/{room}/pin", {"sku": "tee-01"})
    card = (await cy.wait_for("product.pinned"))["data"]
    assert card["flash_sale"] is True and card["stock"] == 2 and card["sold_out"] is False, card
    assert (card["price"], card["currency"]) == (15.0, "USD"), card
    assert 100 <= card["countdown"] <= 120, card

    first = await ana.place("tee-01", 1, key="drop-ana")
    assert first["type"] == "order.accepted", first
    assert (first["data"]["amount"], first["data"]["currency"]) == (256.5, "MXN")  # the sale's price, ana's currency
    second = await ben.place("tee-01", 1, key="drop-ben")
    assert second["type"] == "order.accepted", second
    third = await cy.place("tee-01", 1, key="drop-cy")
    assert third["type"] == "order.rejected" and third["data"]["reason"] == "sold_out", third
    again = await ana.place("tee-01", 1, key="drop-ana-2")  # the sale's per-user limit
    assert again["type"] == "order.rejected" and again["data"]["reason"] == "limit_reached", again
    replay = await ana.place("tee-01", 1, key="drop-ana")  # same key: the same order, nothing more
    assert replay["data"]["order_id"] == first["data"]["order_id"]

    # paid through the payment provider, confirmed with the flash sale
    for buyer, answer in ((ana, first), (ben, second)):
        paid = await buyer.wait_for("order.updated", lambda e: e["data"]["order_id"] == answer["data"]["order_id"])
        assert paid["data"]["state"] == "paid", paid
    orders = {o["order_id"]: o for o in (await api.get("/rooms/{room}/orders")).json()["orders"]}
    assert len(orders) == 2
    flash = await flash_orders(node, room, sale["sale_id"])
    for answer in (first, second):
        order = orders[answer["data"]["order_id"]]
        assert order["source"] == "flashsale" and order["state"] == "paid"
        assert flash[order["external_id"]]["status"] == "paid", flash
    stats = await api.stats()
    assert (stats["orders"], stats["buyers"], stats["gmv"]) == (2, 2, 30.0)  # 2 x 15.00 USD

    # the catalog's own stock was not touched; a SKU without a sale still uses it
    assert (await api.get("/rooms/{room}/products/tee-01")).json()["stock"] == 100
    assert (await cy.place("mug", 3))["type"] == "order.accepted"
    assert (await api.get("/rooms/{room}/products/mug")).json()["stock"] == 97
    await close_all(ana, ben, cy)
    await api.close()


async def test_cancelling_a_flash_order_gives_the_unit_back_to_the_sale(flash_node: NodeProcess) -> None:
    node, room = flash_node, "flash-cancel"
    api = Api(node, room, "seller", "host")
    await api.add(sku="cap", title="Cap", price=15, currency="USD", stock=10)
    sale = await create_sale(node, room, sku="cap", stock=1, per_user_limit=1, duration=120)
    ana = await Shopper.join(node, room, "ana", "viewer")
    ben = await Shopper.join(node, room, "ben", "viewer")
    accepted = await ana.place("cap", 1, key="cap-ana")
    assert accepted["type"] == "order.accepted", accepted
    order_id = accepted["data"]["order_id"]
    await ana.send("order.cancel", {"order_id": order_id})
    cancelled = await ana.wait_for("order.updated", lambda e: e["data"]["order_id"] == order_id)
    # the payment (1 s) may have won the race: then cancelling is refused and the order is paid
    if cancelled["data"]["state"] == "paid":
        pytest.fail("the cancel lost to the payment: raise payment_delay_seconds in this test's config")
    assert cancelled["data"]["state"] == "cancelled"
    flash = await flash_orders(node, room, sale["sale_id"])
    external = (await api.get(f"/orders/{order_id}")).json()["external_id"]
    assert flash[external]["status"] == "cancelled"
    # the unit is back in the sale: the next buyer gets it
    assert (await ben.place("cap", 1, key="cap-ben"))["type"] == "order.accepted"
    await close_all(ana, ben)
    await api.close()
