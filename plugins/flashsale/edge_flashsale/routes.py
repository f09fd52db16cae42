"""REST under ``/v1/plugins/flashsale/``: create and inspect sales.

    POST /rooms/{room}/sales                     host, admin   -> 201 sale
    GET  /rooms/{room}/sales                     any token of the room
    GET  /rooms/{room}/sales/{sale_id}           any token of the room (with counters)
    GET  /rooms/{room}/sales/{sale_id}/orders    host, admin
    GET  /status                                 admin, service

Refusals are ``application/problem+json`` (``edge.api.problem.Problem``).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge.api.problem import Problem, json_response
from edge.messaging.envelope import ALL_ROLES

from .inventory import InventoryError
from .replies import order_json, sale_json
from .service import FlashSales, SaleConflict

if TYPE_CHECKING:
    from .plugin import FlashSalePlugin

SELLERS = ("host",)  # admin passes every role check
OPERATORS = ("service",)
MAX_BODY = 16384
CREATE_FIELDS = frozenset({
    "sku", "title", "stock", "per_user_limit", "starts_at", "starts_in", "ends_at", "duration", "hold_seconds",
    "price_minor", "currency",
})


def _time(body: dict[str, Any], at: str, relative: str, now: float, default: float | None) -> float:
    """``at``: Unix milliseconds or an ISO 8601 string; ``relative``: seconds from now."""
    if at in body and relative in body:
        raise Problem(400, "invalid_sale", f"give {at} or {relative}, not both")
    if relative in body:
        value = body[relative]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Problem(400, "invalid_sale", f"{relative} must be a number of seconds")
        return now + float(value)
    if at in body:
        value = body[at]
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise Problem(400, "invalid_sale", f"{at} is not an ISO 8601 time") from None
            if parsed.tzinfo is None:
                raise Problem(400, "invalid_sale", f"{at} needs a time zone (e.g. Z)")
            return parsed.timestamp()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Problem(400, "invalid_sale", f"{at} must be Unix milliseconds or an ISO 8601 string")
        return float(value) / 1000.0
    if default is None:
        raise Problem(400, "invalid_sale", f"{at} or {relative} is required")
    return default


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Problem(413, "body_too_large", f"at most {MAX_BODY} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Problem(400, "invalid_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Problem(400, "invalid_json", "the body must be a JSON object")
    unknown = set(body) - CREATE_FIELDS
    if unknown:
        raise Problem(400, "invalid_sale", f"unknown fields: {', '.join(sorted(unknown))}")
    return body


def routes(plugin: "FlashSalePlugin") -> list[Route]:
    def service() -> FlashSales:
        found = plugin.service
        if found is None or not found.ready:
            raise Problem(503, "unavailable", "flash sales are starting or their inventory is down",
                          headers={"Retry-After": "1"})
        return found

    def edge() -> Any:
        assert plugin.edge is not None
        return plugin.edge

    async def create(request: Request) -> Response:
        room = request.path_params["room"]
        edge().authenticate(request, SELLERS, room)
        sales = service()
        body = await _body(request)
        now = sales.clock()
        starts_at = _time(body, "starts_at", "starts_in", now, now)
        ends_at = _time(body, "ends_at", "duration", starts_at, None)
        if "sku" not in body or "stock" not in body:
            raise Problem(400, "invalid_sale", "sku and stock are required")
        try:
            sale = await sales.create_sale(
                room, body["sku"], stock=body["stock"], starts_at=starts_at, ends_at=ends_at,
                per_user_limit=body.get("per_user_limit", 1), hold_seconds=body.get("hold_seconds"),
                title=body.get("title"), price_minor=body.get("price_minor"), currency=body.get("currency"),
            )
        except SaleConflict as exc:
            raise Problem(409, "sale_conflict", str(exc)) from None
        except ValueError as exc:
            raise Problem(400, "invalid_sale", str(exc)) from None
        except InventoryError as exc:
            raise Problem(503, "unavailable", str(exc)) from None
        location = f"/v1/plugins/flashsale/rooms/{room}/sales/{sale.sale_id}"
        return json_response(sale_json(sale, now, remaining=sale.stock), 201, headers={"Location": location})

    async def list_sales(request: Request) -> Response:
        room = request.path_params["room"]
        edge().authenticate(request, ALL_ROLES, room)
        sales = service()
        found = sales.sales(room)
        try:
            left = await sales.remaining(s.sale_id for s in found)
        except InventoryError as exc:
            raise Problem(503, "unavailable", str(exc)) from None
        now = sales.clock()
        return json_response({"sales": [sale_json(s, now, remaining=left.get(s.sale_id)) for s in found]})

    def _sale(sales: FlashSales, room: str, sale_id: str) -> Any:
        sale = sales.sale(sale_id)
        if sale is None or sale.room != room:
            raise Problem(404, "not_found", f"no sale {sale_id!r} in room {room!r}")
        return sale

    async def get_sale(request: Request) -> Response:
        room, sale_id = request.path_params["room"], request.path_params["sale_id"]
        edge().authenticate(request, ALL_ROLES, room)
        sales = service()
        sale = _sale(sales, room, sale_id)
        try:
            counters = await sales.counters(sale_id)
        except InventoryError as exc:
            raise Problem(503, "unavailable", str(exc)) from None
        return json_response(sale_json(sale, sales.clock(), counters=counters))

    async def list_orders(request: Request) -> Response:
        room, sale_id = request.path_params["room"], request.path_params["sale_id"]
        edge().authenticate(request, SELLERS, room)
        sales = service()
        _sale(sales, room, sale_id)
        try:
            orders = await sales.orders(sale_id)
        except InventoryError as exc:
            raise Problem(503, "unavailable", str(exc)) from None
        return json_response({"sale_id": sale_id, "orders": [order_json(o) for o in orders]})

    async def status(request: Request) -> Response:
        edge().authenticate(request, OPERATORS)
        found = plugin.service
        return json_response({
            "backend": plugin.config.backend,
            "ready": bool(found is not None and found.ready),
            "sales": len(found.sales()) if found is not None else 0,
            "time": int(time.time() * 1000),
        })

    return [
        Route("/rooms/{room}/sales", create, methods=["POST"]),
        Route("/rooms/{room}/sales", list_sales, methods=["GET"]),
        Route("/rooms/{room}/sales/{sale_id}", get_sale, methods=["GET"]),
        Route("/rooms/{room}/sales/{sale_id}/orders", list_orders, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
    ]
