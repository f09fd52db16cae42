"""The plugin's wiring: its config section, its message types, and its service as
another plugin (``commerce``) uses it through ``edge.service("flashsale")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from edge.app import create_app
from edge.auth import TokenAuthority
from edge.config import Config
from edge.plugins import hookimpl
from edge_flashsale.config import FlashSaleConfig, parse_config
from edge_flashsale.messages import message_types
from edge_flashsale.plugin import FlashSalePlugin
from edge_flashsale.service import FlashSales

SECRET = "flash-sale-test-secret-0123456789"


def test_config_defaults_and_validation(tmp_path: Path) -> None:
    config = parse_config({}, tmp_path)
    assert config.backend == "sqlite" and config.hold_seconds == 300 and config.stock_update_hz == 10
    assert config.db_path == str(tmp_path / "flashsale.db")
    assert config.reserve_rate == (10, 10.0)
    custom = parse_config({"backend": "redis", "redis_url": "redis://10.0.0.5:6380/2", "hold_seconds": 120,
                           "stock_update_hz": 4, "db_path": "/var/lib/edge/fs.db", "reserve_rate": [5, 10]},
                          tmp_path)
    assert (custom.backend, custom.redis_url, custom.hold_seconds) == ("redis", "redis://10.0.0.5:6380/2", 120)
    assert custom.db_path == "/var/lib/edge/fs.db" and custom.reserve_rate == (5, 10.0)
    for bad in ({"backend": "mysql"}, {"hold_seconds": 0}, {"stock_update_hz": 100}, {"redis_url": "http://x"},
                {"reserve_rate": [0, 10]}, {"holdseconds": 5}, {"client_payment": "yes"}, {"db_path": ""}):
        with pytest.raises(ValueError):
            parse_config(bad, tmp_path)


def test_message_types_are_for_viewers_and_rate_limited() -> None:
    types = {t.name: t for t in message_types(FlashSaleConfig())}
    assert set(types) == {"sale.reserve", "sale.pay", "sale.cancel"}
    reserve = types["sale.reserve"]
    assert reserve.roles == frozenset({"viewer"}) and reserve.required == frozenset({"sku", "key"})
    assert reserve.rate_for("viewer") == (10, 10.0) and not reserve.broadcast
    no_pay = {t.name for t in message_types(FlashSaleConfig(client_payment=False))}
    assert no_pay == {"sale.reserve", "sale.cancel"}


class Shop:
    """A stand-in for the commerce plugin: it finds the service when it needs it."""

    def __init__(self) -> None:
        self.edge: Any = None

    @hookimpl
    def edge_http_routes(self, edge: Any) -> list[Route]:
        self.edge = edge

        async def buy(request: Request) -> JSONResponse:
            body = await request.json()
            sales = edge.service("flashsale")
            sale = sales.active_sale(body["room"], body["sku"])
            outcome = await sales.reserve(body["room"], body["sku"], body["user"], body["quantity"], body["key"])
            state = await sales.confirm_payment(outcome.order_id) if outcome.accepted else None
            left = await sales.remaining([sale.sale_id]) if sale is not None else {}
            return JSONResponse({
                "sale": sale.sale_id if sale else None, "accepted": outcome.accepted, "reason": outcome.reason,
                "order_id": outcome.order_id, "state": state, "remaining": left,
            })

        return [Route("/buy", buy, methods=["POST"])]


def test_other_plugins_use_the_service(tmp_path: Path) -> None:
    config = Config()
    config.node.data_dir = str(tmp_path)
    config.auth.secret = SECRET
    config.plugins = {"flashsale": {"db_path": str(tmp_path / "fs.db")}}
    flash, shop = FlashSalePlugin(), Shop()
    app = create_app(config, load_entrypoints=False, plugins=[("flashsale", flash), ("shop", shop)])
    host = {"Authorization": "Bearer " + TokenAuthority(SECRET).issue(room="r", identity="h", role="host")}
    with TestClient(app) as client:
        assert isinstance(app.state.ctx.edge.service("flashsale"), FlashSales)
        created = client.post("/v1/plugins/flashsale/rooms/r/sales", headers=host,
                              json={"sku": "tee", "stock": 2, "duration": 60})
        assert created.status_code == 201, created.text
        sale_id = created.json()["sale_id"]
        bought = client.post("/v1/plugins/shop/buy",
                             json={"room": "r", "sku": "tee", "user": "u", "quantity": 1, "key": "k"}).json()
        assert bought["sale"] == sale_id and bought["accepted"] and bought["state"] == "paid"
        assert bought["remaining"] == {sale_id: 1}
        missing = client.post("/v1/plugins/shop/buy",
                              json={"room": "r", "sku": "hat", "user": "u", "quantity": 1, "key": "k2"}).json()
        assert missing["sale"] is None and missing["reason"] == "unknown_sku"
        counters = client.get(f"/v1/plugins/flashsale/rooms/r/sales/{sale_id}", headers=host).json()
        assert (counters["sold"], counters["remaining"]) == (1, 1)
