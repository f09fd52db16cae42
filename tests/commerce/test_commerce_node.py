"""The commerce plugin against a real node: `edge serve` in a subprocess that loaded the
installed `edge-commerce` distribution from the `edge` entry points, driven by
real WebSocket clients and HTTP.

Each test uses rooms and identities of its own on a node of this module. The
nodes load chat and commerce only (``EDGE_LOAD_PLUGINS``): this is commerce
without the flashsale plugin; test_flashsale.py runs it with.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from edge.auth import TokenAuthority

from ..nodeproc import NodeProcess
from .clients import Api, Shopper, close_all, problem, write_config

PAYMENT_DELAY = 0.4
CONFIG = f"""
[plugins.commerce]
base_currency = "USD"
currencies = {{USD = 1.0, MXN = 17.1, JPY = 151.0}}
region_currency = {{mx = "MXN", jp = "JPY"}}
payment_delay_seconds = {PAYMENT_DELAY}
reservation_seconds = 600
max_quantity = 5
click_rate = [4, 30]
"""
PLUGINS = {"EDGE_LOAD_PLUGINS": "chat,commerce"}
SLOW = """
[plugins.commerce]
payment_delay_seconds = 6.0
reservation_seconds = 3
"""


@pytest.fixture(scope="module")
def shop() -> Iterator[NodeProcess]:
    proc = NodeProcess(env={"EDGE_CONFIG": write_config(CONFIG), **PLUGINS}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def slow_shop() -> Iterator[NodeProcess]:
    """Payments take longer than reservations last: orders expire, or are cancelled first."""
    proc = NodeProcess(env={"EDGE_CONFIG": write_config(SLOW), **PLUGINS}).start()
    yield proc
    proc.stop()


TEE = {"sku": "tee-01", "title": "Logo tee", "price": 20, "currency": "USD", "stock": 5,
       "image_url": "https://cdn.example.com/tee.jpg"}


# pins and currencies --------------------------------------------------------------------


async def test_pin_reaches_every_viewer_in_their_currency(shop: NodeProcess) -> None:
    room = "pin-currencies"
    host = Api(shop, room, "seller", "host")
    await host.add(**TEE)
    await host.add(sku="mug", title="Mug", price="199.99", currency="MXN", stock=2)
    seller = await Shopper.join(shop, room, "seller", "host")
    us = await Shopper.join(shop, room, "us-fan", "viewer")
    mx = await Shopper.join(shop, room, "mx-fan", "viewer", region="mx")
    jp = await Shopper.join(shop, room, "jp-fan", "viewer", region="jp")
    picky = await Shopper.join(shop, room, "picky", "viewer", region="mx")
    chose = await picky.send("currency.set", {"currency": "JPY"})
    assert (await picky.answer(chose))["data"] == {"currency": "JPY", "reply_to": chose}

    response = await host.post("/rooms/{room}/pin", {"sku": "tee-01", "countdown": 30})
    assert response.status_code == 200, response.text
    assert response.json()["sku"] == "tee-01" and response.json()["countdown"] == 30
    expected = {"seller": (20.0, "USD"), "us-fan": (20.0, "USD"), "mx-fan": (342.0, "MXN"),
                "jp-fan": (3020, "JPY"), "picky": (3020, "JPY")}
    for client in (seller, us, mx, jp, picky):
        pinned = await client.wait_for("product.pinned")
        data = pinned["data"]
        assert (data["price"], data["currency"]) == expected[client.identity], (client.identity, data)
        assert data["sku"] == "tee-01" and data["title"] == "Logo tee"
        assert data["image_url"] == "https://cdn.example.com/tee.jpg"
        assert 29 <= data["countdown"] <= 30 and data["stock"] == 5 and data["sold_out"] is False
        assert client.count("product.pinned") == 1  # one envelope each, in its own currency

    # a late joiner gets the pin on connecting, with the time left
    late = await Shopper.join(shop, room, "late", "viewer", region="jp")
    data = (await late.wait_for("product.pinned"))["data"]
    assert (data["price"], data["currency"], data["sku"]) == (3020, "JPY", "tee-01") and data["countdown"] <= 30

    # the viewer listing shows the catalog in the caller's currency
    listing = (await Api(shop, room, "mx-fan", "viewer", region="mx").get("/rooms/{room}/products")).json()
    assert listing["currency"] == "MXN"
    mug = next(p for p in listing["products"] if p["sku"] == "mug")
    assert (mug["price"], mug["currency"], mug["display_price"], mug["display_currency"]) == (199.99, "MXN", 199.99, "MXN")
    listing = (await Api(shop, room, "x", "viewer").get("/rooms/{room}/products", currency="JPY")).json()
    mug = next(p for p in listing["products"] if p["sku"] == "mug")
    assert (mug["display_price"], mug["display_currency"]) == (1766, "JPY")  # 199.99 / 17.1 * 151
    pin = (await Api(shop, room, "jp-fan", "viewer", region="jp").get("/rooms/{room}/pin")).json()
    assert pin["pinned"]["price"] == 3020 and pin["pinned"]["currency"] == "JPY"

    # unpin: everyone hears it
    assert (await host.delete("/rooms/{room}/pin")).json() == {"room": room, "unpinned": "tee-01"}
    for client in (seller, us, mx, jp, picky, late):
        assert (await client.wait_for("product.unpinned"))["data"] == {"sku": "tee-01", "reason": "unpinned"}
    problem(await host.delete("/rooms/{room}/pin"), 404, "not_found")
    assert (await host.get("/rooms/{room}/pin")).json() == {"room": room, "pinned": None}
    await close_all(seller, us, mx, jp, picky, late)
    await host.close()


async def test_host_pins_over_websocket_and_the_countdown_unpins(shop: NodeProcess) -> None:
    room = "pin-ws"
    api = Api(shop, room, "seller", "host")
    await api.add(**TEE)
    host = await Shopper.join(shop, room, "seller", "host")
    cohost = await Shopper.join(shop, room, "helper", "cohost")
    fan = await Shopper.join(shop, room, "fan", "viewer")
    await host.send("product.pin", {"sku": "tee-01", "countdown": 2})
    for client in (host, cohost, fan):
        assert (await client.wait_for("product.pinned"))["data"]["countdown"] == 2
    ended = await fan.wait_for("product.unpinned", timeout=6)
    assert ended["data"] == {"sku": "tee-01", "reason": "countdown_ended"}
    # a cohost may pin too; without countdown there is none in the card
    await cohost.send("product.pin", {"sku": "tee-01"})
    data = (await fan.wait_for("product.pinned"))["data"]
    assert "countdown" not in data
    await host.send("product.unpin", {})
    await fan.wait_for("product.unpinned")
    await host.error("not_found", await host.send("product.unpin", {}))
    await host.error("not_found", await host.send("product.pin", {"sku": "no-such"}))
    await host.error("invalid_data", await host.send("product.pin", {"sku": "tee-01", "countdown": 0}))
    await close_all(host, cohost, fan)
    await api.close()


async def test_viewers_cannot_pin_or_manage(shop: NodeProcess) -> None:
    room = "roles"
    host_api = Api(shop, room, "seller", "host")
    await host_api.add(**TEE)
    fan = await Shopper.join(shop, room, "fan", "viewer")
    host = await Shopper.join(shop, room, "seller", "host")
    for type, data in [("product.pin", {"sku": "tee-01"}), ("product.unpin", {})]:
        await fan.error("forbidden", await fan.send(type, data))
    await host.error("forbidden", await host.send("product.click", {"sku": "tee-01"}))
    await host.error("forbidden", await host.send("order.place", {"sku": "tee-01", "key": "k"}))

    viewer = Api(shop, room, "fan", "viewer")
    problem(await viewer.post("/rooms/{room}/pin", {"sku": "tee-01"}), 403, "forbidden")
    problem(await viewer.delete("/rooms/{room}/pin"), 403, "forbidden")
    problem(await viewer.post("/rooms/{room}/products", {**TEE, "sku": "x"}), 403, "forbidden")
    problem(await viewer.patch("/rooms/{room}/products/tee-01", {"stock": 99}), 403, "forbidden")
    problem(await viewer.delete("/rooms/{room}/products/tee-01"), 403, "forbidden")
    problem(await viewer.get("/rooms/{room}/orders"), 403, "forbidden")
    problem(await viewer.get("/rooms/{room}/stats"), 403, "forbidden")
    problem(await viewer.get("/rooms/{room}/clicks"), 403, "forbidden")
    assert (await viewer.get("/rooms/{room}/products")).status_code == 200  # read-only listing
    cohost = Api(shop, room, "helper", "cohost")
    problem(await cohost.post("/rooms/{room}/products", {**TEE, "sku": "x"}), 403, "forbidden")
    assert (await cohost.get("/rooms/{room}/stats")).status_code == 200
    other_room_host = Api(shop, "elsewhere", "seller2", "host")
    other_room_host.room = room
    problem(await other_room_host.post("/rooms/{room}/products", {**TEE, "sku": "x"}), 403, "forbidden")
    problem(await other_room_host.get("/rooms/{room}/products"), 403, "forbidden")
    anonymous = Api(shop, room, "fan", "viewer")
    anonymous.client.headers.pop("Authorization")
    problem(await anonymous.get("/rooms/{room}/products"), 401, "unauthorized")
    # nothing changed
    products = (await host_api.get("/rooms/{room}/products")).json()["products"]
    assert [(p["sku"], p["stock"]) for p in products] == [("tee-01", 5)]
    assert (await host_api.get("/rooms/{room}/pin")).json()["pinned"] is None
    assert fan.count("product.pinned") == 0
    await close_all(fan, host)
    for api in (host_api, viewer, cohost, other_room_host, anonymous):
        await api.close()


# clicks --------------------------------------------------------------------------------------


async def test_clicks_are_recorded_with_who_what_when_and_rate_limited(shop: NodeProcess) -> None:
    room = "clicks"
    api = Api(shop, room, "seller", "host")
    await api.add(**TEE)
    fan = await Shopper.join(shop, room, "fan", "viewer")
    before = time.time()
    await fan.send("product.click", {"sku": "tee-01"})
    await fan.send("product.click", {"sku": "tee-01"})
    await fan.error("not_found", await fan.send("product.click", {"sku": "nothing"}))
    await fan.error("invalid_data", await fan.send("product.click", {}))
    await fan.send("product.click", {"sku": "tee-01"})
    # click_rate = [4, 30]: the unknown SKU counted too (limits are charged before plugins look)
    await fan.error("rate_limited", await fan.send("product.click", {"sku": "tee-01"}))
    clicks = (await api.get("/rooms/{room}/clicks")).json()["clicks"]
    assert [(c["identity"], c["sku"]) for c in clicks] == [("fan", "tee-01")] * 3
    assert all(before - 1 <= c["ts"] <= time.time() + 1 for c in clicks)
    await fan.close()
    await api.close()


# orders ------------------------------------------------------------------------------------------


async def test_order_is_accepted_then_paid_after_the_delay(shop: NodeProcess) -> None:
    room = "orders-paid"
    api = Api(shop, room, "seller", "host")
    await api.add(**TEE)
    buyer = await Shopper.join(shop, room, "buyer", "viewer", region="mx")
    watcher = await Shopper.join(shop, room, "watcher", "viewer")
    started = time.monotonic()
    answer = await buyer.place("tee-01", 2, key="first-order")
    assert answer["type"] == "order.accepted", answer
    data = answer["data"]
    assert (data["sku"], data["quantity"], data["amount"], data["currency"], data["state"]) == (
        "tee-01", 2, 684.0, "MXN", "reserved"
    )
    assert data["key"] == "first-order" and data["order_id"].startswith("ord_")
    for client in (buyer, watcher):  # the room sees the stock go down
        stock = await client.wait_for("stock.updated")
        assert stock["data"] == {"sku": "tee-01", "stock": 3, "remaining": 3, "sold_out": False}
    paid = await buyer.wait_for("order.updated")
    assert time.monotonic() - started >= PAYMENT_DELAY * 0.9
    assert paid["data"]["order_id"] == data["order_id"] and paid["data"]["state"] == "paid"
    assert watcher.count("order.updated") == 0 and watcher.count("order.accepted") == 0  # the buyer's only

    orders = (await api.get("/rooms/{room}/orders")).json()["orders"]
    assert len(orders) == 1
    order = orders[0]
    assert (order["buyer"], order["state"], order["amount"], order["currency"], order["amount_base"]) == (
        "buyer", "paid", 684.0, "MXN", 40.0
    )
    assert [h["state"] for h in order["history"]] == ["reserved", "paid"]
    own = await Api(shop, room, "buyer", "viewer").get(f"/orders/{data['order_id']}")
    assert own.status_code == 200 and own.json()["state"] == "paid"
    problem(await Api(shop, room, "watcher", "viewer").get(f"/orders/{data['order_id']}"), 404, "not_found")
    await close_all(buyer, watcher)
    await api.close()


async def test_out_of_stock_is_rejected_with_a_reason(shop: NodeProcess) -> None:
    room = "orders-stock"
    api = Api(shop, room, "seller", "host")
    await api.add(**{**TEE, "stock": 2})
    a = await Shopper.join(shop, room, "a", "viewer")
    b = await Shopper.join(shop, room, "b", "viewer")
    too_many = await b.place("tee-01", 3)
    assert too_many["type"] == "order.rejected"
    assert too_many["data"]["reason"] == "insufficient_stock" and too_many["data"]["available"] == 2
    assert (await a.place("tee-01", 2))["type"] == "order.accepted"
    sold_out = await b.wait_for("stock.updated")
    assert sold_out["data"] == {"sku": "tee-01", "stock": 0, "remaining": 0, "sold_out": True}
    rejected = await b.place("tee-01", 1, key="late-key")
    assert rejected["type"] == "order.rejected"
    assert {k: rejected["data"][k] for k in ("sku", "reason", "key")} == {
        "sku": "tee-01", "reason": "sold_out", "key": "late-key"
    }
    unknown = await b.place("no-such-sku")
    assert unknown["type"] == "order.rejected" and unknown["data"]["reason"] == "not_found"
    products = (await api.get("/rooms/{room}/products")).json()["products"]
    assert products[0]["stock"] == 0 and products[0]["sold_out"] is True
    assert len((await api.get("/rooms/{room}/orders")).json()["orders"]) == 1
    await close_all(a, b)
    await api.close()


async def test_idempotency_key_replays_and_conflicts(shop: NodeProcess) -> None:
    room = "orders-idem"
    api = Api(shop, room, "seller", "host")
    await api.add(**TEE)
    fan = await Shopper.join(shop, room, "fan", "viewer")
    first = await fan.place("tee-01", 1, key="tap-1")
    again = await fan.place("tee-01", 1, key="tap-1")
    assert first["type"] == again["type"] == "order.accepted"
    assert {**again["data"], "reply_to": None} == {**first["data"], "reply_to": None}
    conflict = await fan.place("tee-01", 2, key="tap-1")
    assert conflict["type"] == "order.rejected" and conflict["data"]["reason"] == "idempotency_conflict"
    # the same key sent twice at once (a double tap): one order, the same answer twice
    ids = [await fan.send("order.place", {"sku": "tee-01", "quantity": 1, "key": "tap-2"}) for _ in range(2)]
    answers = [await fan.answer(i) for i in ids]
    assert answers[0]["data"]["order_id"] == answers[1]["data"]["order_id"]
    # the same key in a second connection of the same buyer
    tab = await Shopper.join(shop, room, "fan", "viewer")
    assert (await tab.place("tee-01", 1, key="tap-2"))["data"]["order_id"] == answers[0]["data"]["order_id"]
    orders = (await api.get("/rooms/{room}/orders")).json()["orders"]
    assert len(orders) == 2
    assert (await api.get("/rooms/{room}/products/tee-01")).json()["stock"] == 3
    await close_all(fan, tab)
    await api.close()


async def test_refund_of_a_paid_order(shop: NodeProcess) -> None:
    room = "orders-refund"
    api = Api(shop, room, "seller", "host")
    await api.add(**TEE)
    fan = await Shopper.join(shop, room, "fan", "viewer", region="jp")
    order_id = (await fan.place("tee-01", 1))["data"]["order_id"]
    problem(await api.post(f"/orders/{order_id}/refund"), 409, "invalid_state")  # still reserved
    await fan.wait_for("order.updated", lambda e: e["data"]["state"] == "paid")
    problem(await Api(shop, room, "fan", "viewer").post(f"/orders/{order_id}/refund"), 403, "forbidden")
    problem(await Api(shop, "another", "seller", "host").post(f"/orders/{order_id}/refund"), 404, "not_found")
    problem(await api.post("/orders/ord_nope/refund"), 404, "not_found")
    response = await api.post(f"/orders/{order_id}/refund")
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "refunded"
    assert [h["state"] for h in response.json()["history"]] == ["reserved", "paid", "refunded"]
    refunded = await fan.wait_for("order.updated", lambda e: e["data"]["state"] == "refunded")
    assert refunded["data"]["order_id"] == order_id
    problem(await api.post(f"/orders/{order_id}/refund"), 409, "invalid_state")
    admin = Api(shop, "*", "ops", "admin")
    assert (await admin.client.get(f"/orders/{order_id}")).json()["state"] == "refunded"
    await fan.close()
    await api.close()


async def test_cancel_and_expiry_give_the_stock_back(slow_shop: NodeProcess) -> None:
    room = "orders-cancel"
    api = Api(slow_shop, room, "seller", "host")
    await api.add(**{**TEE, "stock": 3})
    fan = await Shopper.join(slow_shop, room, "fan", "viewer")
    other = await Shopper.join(slow_shop, room, "other", "viewer")
    host = await Shopper.join(slow_shop, room, "seller", "host")

    # the buyer cancels: order.updated cancelled, stock back
    order_id = (await fan.place("tee-01", 2))["data"]["order_id"]
    await fan.wait_for("stock.updated", lambda e: e["data"]["stock"] == 1)
    await other.error("not_found", await other.send("order.cancel", {"order_id": order_id}))
    await fan.send("order.cancel", {"order_id": order_id})
    cancelled = await fan.wait_for("order.updated")
    assert cancelled["data"]["state"] == "cancelled" and cancelled["data"]["order_id"] == order_id
    await fan.wait_for("stock.updated", lambda e: e["data"]["stock"] == 3)
    await fan.error("invalid_state", await fan.send("order.cancel", {"order_id": order_id}))

    # staff may cancel a viewer's order; the cancelling host hears it too
    order_id = (await other.place("tee-01", 1))["data"]["order_id"]
    id = await host.send("order.cancel", {"order_id": order_id})
    assert (await host.answer(id))["data"]["state"] == "cancelled"
    assert (await other.wait_for("order.updated"))["data"]["state"] == "cancelled"

    # not paid within reservation_seconds (3 s; payments take 6 s here): expired
    order_id = (await fan.place("tee-01", 3))["data"]["order_id"]
    await fan.wait_for("stock.updated", lambda e: e["data"]["stock"] == 0)
    expired = await fan.wait_for("order.updated", timeout=8)
    assert expired["data"] == {"order_id": order_id, "state": "expired", "sku": "tee-01", "reason": "not paid in time"}
    await fan.wait_for("stock.updated", lambda e: e["data"]["stock"] == 3)
    # the payment that arrives afterwards is given back, and the order stays expired
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        order = (await api.get(f"/orders/{order_id}")).json()
        if len(order["history"]) == 3:
            break
        await asyncio.sleep(0.2)  # no event for a late payment: poll the order's history
    assert order["state"] == "expired"
    assert [(h["state"], h["reason"]) for h in order["history"]] == [
        ("reserved", "placed"), ("expired", "not paid in time"), ("expired", "late payment returned")
    ]
    assert fan.count("order.updated") == 2  # cancelled, expired: never paid
    await close_all(fan, other, host)
    await api.close()


# catalog -------------------------------------------------------------------------------------


async def test_catalog_changes_update_the_pinned_card_and_stock(shop: NodeProcess) -> None:
    room = "catalog-changes"
    api = Api(shop, room, "seller", "host")
    await api.add(**TEE)
    fan = await Shopper.join(shop, room, "fan", "viewer", region="mx")
    await api.post("/rooms/{room}/pin", {"sku": "tee-01"})
    assert (await fan.wait_for("product.pinned"))["data"]["price"] == 342.0
    response = await api.patch("/rooms/{room}/products/tee-01", {"price": 10, "title": "Tee (sale)"})
    assert response.status_code == 200 and response.json()["price"] == 10
    card = (await fan.wait_for("product.pinned"))["data"]
    assert (card["price"], card["currency"], card["title"]) == (171.0, "MXN", "Tee (sale)")
    await api.patch("/rooms/{room}/products/tee-01", {"stock": 0})
    assert (await fan.wait_for("stock.updated"))["data"] == {"sku": "tee-01", "stock": 0, "remaining": 0, "sold_out": True}
    assert (await fan.place("tee-01"))["data"]["reason"] == "sold_out"
    await api.patch("/rooms/{room}/products/tee-01", {"price": "2500", "currency": "JPY", "stock": 4})
    assert (await fan.wait_for("product.pinned"))["data"]["price"] == 283.11  # 2500 / 151 * 17.1 = 283.112
    assert (await api.delete("/rooms/{room}/products/tee-01")).status_code == 204
    assert (await fan.wait_for("product.unpinned"))["data"] == {"sku": "tee-01", "reason": "deleted"}
    problem(await api.delete("/rooms/{room}/products/tee-01"), 404, "not_found")
    assert (await api.get("/rooms/{room}/products")).json()["products"] == []
    await fan.close()
    await api.close()


@pytest.mark.parametrize(
    "body, field",
    [
        ({k: v for k, v in TEE.items() if k != "title"}, "title"),
        ({**TEE, "sku": "bad sku"}, "sku"),
        ({**TEE, "sku": ""}, "sku"),
        ({**TEE, "currency": "EUR"}, "currency"),
        ({**TEE, "price": -1}, "price"),
        ({**TEE, "price": "1.999"}, "price"),
        ({**TEE, "currency": "JPY", "price": 1.5}, "price"),
        ({**TEE, "price": True}, "price"),
        ({**TEE, "stock": -1}, "stock"),
        ({**TEE, "stock": 1.5}, "stock"),
        ({**TEE, "image_url": "javascript:alert(1)"}, "image_url"),
        ({**TEE, "title": "x" * 201}, "title"),
        ({**TEE, "colour": "red"}, "colour"),
        ([TEE], "body"),
    ],
)
async def test_bad_product_bodies_create_nothing(shop: NodeProcess, body: object, field: str) -> None:
    api = Api(shop, "catalog-bad", "seller", "host")
    body_problem = problem(await api.post("/rooms/{room}/products", body), 400, "invalid_field")
    assert body_problem["field"] == field
    assert (await api.get("/rooms/{room}/products")).json()["products"] == []
    await api.close()


async def test_bad_requests_are_problems(shop: NodeProcess) -> None:
    room = "bad-requests"
    api = Api(shop, room, "seller", "host")
    await api.add(**TEE)
    problem(await api.post("/rooms/{room}/products", content=b"{not json"), 400, "invalid_json")
    problem(await api.post("/rooms/{room}/products", TEE), 409, "already_exists")
    problem(await api.patch("/rooms/{room}/products/tee-01", {}), 400, "invalid_field")
    problem(await api.patch("/rooms/{room}/products/tee-01", {"currency": "JPY"}), 400, "invalid_field")
    problem(await api.patch("/rooms/{room}/products/tee-01", {"sku": "other"}), 400, "invalid_field")
    problem(await api.patch("/rooms/{room}/products/nope", {"stock": 1}), 404, "not_found")
    problem(await api.get("/rooms/{room}/products/bad%20sku"), 400, "invalid_field")
    problem(await api.post("/rooms/{room}/pin", {"sku": "nope"}), 404, "not_found")
    problem(await api.post("/rooms/{room}/pin", {"sku": "tee-01", "countdown": 0}), 400, "invalid_field")
    problem(await api.post("/rooms/{room}/pin", {"sku": "tee-01", "countdown": "10"}), 400, "invalid_field")
    problem(await api.post("/rooms/{room}/pin", {"countdown": 10}), 400, "invalid_field")
    problem(await api.get("/rooms/{room}/orders", state="lost"), 400, "invalid_field")
    problem(await api.get("/rooms/{room}/products", currency="XXX"), 400, "invalid_field")
    problem(await api.post("/rooms/{room}/products", content=b"x" * 20000), 413, "too_large")
    bad_room = Api(shop, "*", "ops", "admin")
    problem(await bad_room.client.get("/rooms/no%20room/products"), 400, "invalid_room")
    assert (await api.get("/rooms/{room}/pin")).json()["pinned"] is None
    assert (await api.get("/rooms/{room}/products/tee-01")).json()["stock"] == 5

    fan = await Shopper.join(shop, room, "fan", "viewer")
    for data, code in [
        ({"sku": "tee-01", "quantity": 1}, "invalid_data"),  # no key: the node refuses it
        ({"sku": "tee-01", "quantity": "1", "key": "a"}, "invalid_data"),
        ({"sku": "tee-01", "quantity": True, "key": "a"}, "invalid_data"),
        ({"sku": "tee-01", "quantity": 0, "key": "a"}, "invalid_data"),
        ({"sku": "tee-01", "quantity": 6, "key": "b"}, "invalid_data"),  # max_quantity = 5
        ({"sku": "tee-01", "quantity": 1, "key": ""}, "invalid_data"),
        ({"sku": "tee-01", "quantity": 1, "key": "has space"}, "invalid_data"),
        ({"sku": "tee-01", "quantity": 1, "key": "k" * 129}, "invalid_data"),
        ({"sku": "tee-01", "quantity": 1, "key": "k", "price": 0}, "invalid_data"),
    ]:
        await fan.error(code, await fan.send("order.place", data))
    await fan.error("invalid_data", await fan.send("currency.set", {"currency": "XXX"}))
    await fan.error("not_found", await fan.send("order.cancel", {"order_id": "ord_nope"}))
    assert (await api.get("/rooms/{room}/orders")).json()["orders"] == []
    await fan.close()
    await api.close()


# analytics ------------------------------------------------------------------------------------------


async def wait_until_gone(node: NodeProcess, room: str, identity: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        view = await asyncio.to_thread(node.room, room)
        if view is None or identity not in {p["identity"] for p in view["participants"]}:
            return
        await asyncio.sleep(0.05)  # no event tells a client that the node saw it leave
    raise AssertionError(f"{identity} still in {room}")


async def test_stats_match_what_happened(shop: NodeProcess) -> None:
    room = "stats"
    api = Api(shop, room, "seller", "host")
    await api.add(**TEE)  # 20.00 USD
    await api.add(sku="mug", title="Mug", price="171", currency="MXN", stock=5)  # 10.00 USD
    host = await Shopper.join(shop, room, "seller", "host")  # not a view
    ana = await Shopper.join(shop, room, "ana", "viewer")
    ben = await Shopper.join(shop, room, "ben", "viewer", region="mx")
    cy = await Shopper.join(shop, room, "cy", "viewer", region="jp")
    await ana.close()
    await wait_until_gone(shop, room, "ana")
    ana = await Shopper.join(shop, room, "ana", "viewer")  # a second view by ana
    for who, sku in [(ana, "tee-01"), (ben, "tee-01"), (ben, "mug")]:
        await who.send("product.click", {"sku": sku})
    paid = [await ana.place("tee-01", 2), await ben.place("mug", 1)]
    await cy.place("tee-01", 9)  # rejected: not an order
    for client, answer in zip((ana, ben), paid):
        assert answer["type"] == "order.accepted"
        await client.wait_for("order.updated", lambda e: e["data"]["state"] == "paid")
    await api.post(f"/orders/{paid[1]['data']['order_id']}/refund")

    stats = await api.stats()
    assert stats == {
        "room": room,
        "currency": "USD",
        "views": 4,
        "unique_viewers": 3,
        "clicks": 3,
        "ctr": 0.75,
        "orders": 2,
        "paid_orders": 2,
        "items_sold": 3,
        "gmv": 50.0,  # 2 x 20.00 + 171 MXN (10.00 USD); refunds are not deducted
        "gmv_minor": 5000,
        "refunds": 10.0,
        "gpm": 12500.0,  # 50.00 / 4 views x 1000
        "buyers": 2,
        "conversion": 0.666667,  # 2 buyers / 3 unique viewers
    }
    await close_all(host, ana, ben, cy)
    await api.close()


# durability ------------------------------------------------------------------------------------------


def twin(first: NodeProcess, data_dir: Path, config: str) -> NodeProcess:
    """Another node process on the same data dir and secret (a restart)."""
    proc = NodeProcess(env={"EDGE_CONFIG": config, "EDGE_NODE_DATA_DIR": str(data_dir),
                            "EDGE_AUTH_SECRET": first.secret, **PLUGINS})
    proc.secret = first.secret
    proc.authority = TokenAuthority(first.secret)
    return proc


async def test_an_acknowledged_order_survives_a_crash_and_is_paid_after_restart(tmp_path: Path) -> None:
    config = write_config(SLOW.replace("reservation_seconds = 3", "reservation_seconds = 60").replace(
        "payment_delay_seconds = 6.0", "payment_delay_seconds = 1.0"))
    first = NodeProcess(env={"EDGE_CONFIG": config, "EDGE_NODE_DATA_DIR": str(tmp_path), **PLUGINS}).start()
    try:
        room = "crash"
        api = Api(first, room, "seller", "host")
        await api.add(**TEE)
        await api.post("/rooms/{room}/pin", {"sku": "tee-01"})
        await api.close()
        fan = await Shopper.join(first, room, "fan", "viewer")
        accepted = await fan.place("tee-01", 2, key="before-crash")
        assert accepted["type"] == "order.accepted"
        os.kill(first.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        first.proc.wait()  # type: ignore[union-attr]
        await fan.close()
    finally:
        first.stop()
    second = twin(first, tmp_path, config).start()
    try:
        api = Api(second, room, "seller", "host")
        order_id = accepted["data"]["order_id"]
        deadline = time.monotonic() + 10
        while (order := (await api.get(f"/orders/{order_id}")).json())["state"] == "reserved":
            assert time.monotonic() < deadline, order
            await asyncio.sleep(0.1)  # the restarted payment has no client to tell: poll
        assert order["state"] == "paid" and order["quantity"] == 2
        assert (await api.get("/rooms/{room}/products/tee-01")).json()["stock"] == 3
        assert (await api.get("/rooms/{room}/pin")).json()["pinned"]["sku"] == "tee-01"  # pins persist too
        fan = await Shopper.join(second, room, "fan", "viewer")
        replay = await fan.place("tee-01", 2, key="before-crash")  # the key outlived the crash
        assert replay["data"]["order_id"] == order_id
        await fan.close()
        await api.close()
    finally:
        second.stop()


# a hook budget too small for the disk ------------------------------------------------------------


async def test_answers_outlive_the_hook_time_budget(tmp_path: Path) -> None:
    """With a 1 ms hook budget every handler is cancelled mid-way by the node; the order is not
    lost half-way, and the answers still reach the sender (``edge.send_to``, with reply_to)."""
    config = write_config("[plugins]\ntimeout_ms = 1\n\n" + CONFIG)
    node = NodeProcess(env={"EDGE_CONFIG": config, "EDGE_LOAD_PLUGINS": "commerce"}).start()
    try:
        room = "tiny-budget"
        api = Api(node, room, "seller", "host")
        await api.add(**{**TEE, "stock": 1})
        fan = await Shopper.join(node, room, "fan", "viewer")
        accepted = await fan.place("tee-01", 1, key="slow-1")
        assert accepted["type"] == "order.accepted" and accepted["data"]["state"] == "reserved", accepted
        rejected = await fan.place("tee-01", 1, key="slow-2")
        assert rejected["type"] == "order.rejected" and rejected["data"]["reason"] == "sold_out", rejected
        await fan.error("not_found", await fan.send("product.click", {"sku": "nope"}))
        assert (await fan.wait_for("order.updated"))["data"]["state"] == "paid"
        timeouts = {k: v for k, v in node.metrics().items() if k.startswith("edge_plugin_timeouts_total")}
        assert any("edge_message_received" in k and v > 0 for k, v in timeouts.items()), timeouts
        await fan.close()
        await api.close()
    finally:
        node.stop()
