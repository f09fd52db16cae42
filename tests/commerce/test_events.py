"""In-process: the domain events commerce publishes (docs/events.md) and its service.

A node built with ``create_app`` and exactly two plugins: a fresh ``CommercePlugin``
and a listener that records ``edge_event`` calls. Driven with Starlette's
``TestClient`` (the node runs in its thread, so the record is guarded).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from edge.app import create_app
from edge.auth import TokenAuthority
from edge.config import load_config
from edge.plugins import hookimpl
from edge_commerce.plugin import CommercePlugin
from edge_commerce.service import Commerce

SECRET = "commerce-events-secret-0123456789"
AUTHORITY = TokenAuthority(SECRET)
PREFIX = "/v1/plugins/commerce"


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], str]] = []
        self.cond = threading.Condition()
        self.service: Any = None

    @hookimpl
    def edge_startup(self, edge: Any) -> None:
        self.service = edge.service("commerce")

    @hookimpl
    def edge_event(self, edge: Any, name: str, data: dict[str, Any], source: str) -> None:
        with self.cond:
            self.events.append((name, dict(data), source))
            self.cond.notify_all()

    def wait(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(n == name for n, _, _ in self.events), timeout)
            assert ok, f"no {name}: {[n for n, _, _ in self.events]}"
            return next(d for n, d, _ in self.events if n == name)


def test_events_follow_the_contract(tmp_path: Path) -> None:
    config = load_config(env={"EDGE_NODE_DATA_DIR": str(tmp_path), "EDGE_AUTH_SECRET": SECRET})
    config.plugins = {"commerce": {"payment_delay_seconds": 0.1, "region_currency": {"mx": "MXN"}}}
    listener = Listener()
    app = create_app(config, load_entrypoints=False, plugins=[("commerce", CommercePlugin()), ("listener", listener)])
    host = {"Authorization": "Bearer " + AUTHORITY.issue(room="ev", identity="seller", role="host")}
    viewer = AUTHORITY.issue(room="ev", identity="fan", role="viewer", region="mx")
    with TestClient(app) as client:
        assert isinstance(listener.service, Commerce)  # edge.service("commerce")
        created = client.post(f"{PREFIX}/rooms/ev/products", headers=host,
                              json={"sku": "tee", "title": "Tee", "price": 20, "currency": "USD", "stock": 3})
        assert created.status_code == 201, created.text
        with client.websocket_connect(f"/v1/rooms/ev/ws?token={viewer}") as ws:
            assert client.post(f"{PREFIX}/rooms/ev/pin", headers=host, json={"sku": "tee", "countdown": 60}).status_code == 200
            pinned = listener.wait("commerce.product_pinned")
            ws.send_json({"type": "product.click", "data": {"sku": "tee"}})
            ws.send_json({"type": "order.place", "id": "o1", "data": {"sku": "tee", "quantity": 2, "key": "k1"}})
            while (envelope := ws.receive_json())["type"] != "order.accepted":
                pass
            order_id = envelope["data"]["order_id"]
            accepted = listener.wait("commerce.order_accepted")
            paid = listener.wait("commerce.order_paid")
            click = listener.wait("commerce.product_click")
            while (envelope := ws.receive_json())["type"] != "order.updated":
                pass
            assert envelope["data"]["state"] == "paid"
            refund = client.post(f"{PREFIX}/orders/{order_id}/refund", headers=host)
            assert refund.status_code == 200, refund.text
            refunded = listener.wait("commerce.order_refunded")
            assert client.delete(f"{PREFIX}/rooms/ev/pin", headers=host).status_code == 200
            unpinned = listener.wait("commerce.product_unpinned")

    assert {s for _, _, s in listener.events} == {"commerce"}
    now = time.time()
    assert {k: pinned[k] for k in ("room", "sku", "title", "price", "currency", "countdown")} == {
        "room": "ev", "sku": "tee", "title": "Tee", "price": "20.00", "currency": "USD", "countdown": 60
    }
    assert {k: click[k] for k in ("room", "sku", "viewer")} == {"room": "ev", "sku": "tee", "viewer": "fan"}
    expected = {"room": "ev", "order_id": order_id, "buyer": "fan", "sku": "tee", "quantity": 2,
                "amount": "684.00", "currency": "MXN", "amount_base": "40.00"}
    for event in (accepted, paid, refunded):
        assert {k: event[k] for k in expected} == expected, event
        assert now - 30 < event["at"] <= now
    assert {k: unpinned[k] for k in ("room", "sku")} == {"room": "ev", "sku": "tee"}
    names = [n for n, _, _ in listener.events]
    assert names.index("commerce.order_accepted") < names.index("commerce.order_paid") < names.index(
        "commerce.order_refunded"
    )
