"""REST routes, mounted by edge under ``/v1/plugins/commerce/``.

| route | who | what |
|---|---|---|
| ``GET /rooms/{room}/products[?currency=XXX]`` | any token of the room | the catalog (+ prices in the caller's currency) |
| ``POST /rooms/{room}/products`` | host, admin | create a product |
| ``GET /rooms/{room}/products/{sku}`` | any token of the room | one product |
| ``PATCH /rooms/{room}/products/{sku}`` | host, admin | change title, price, currency, image_url, stock |
| ``DELETE /rooms/{room}/products/{sku}`` | host, admin | delete (unpins it; orders keep their copy) |
| ``GET /rooms/{room}/pin`` | any token of the room | the pinned product, or ``{"pinned": null}`` |
| ``POST /rooms/{room}/pin`` ``{sku, countdown?}`` | host, cohost, admin | pin (broadcasts ``product.pinned``) |
| ``DELETE /rooms/{room}/pin`` | host, cohost, admin | unpin (broadcasts ``product.unpinned``) |
| ``GET /rooms/{room}/orders[?state=&limit=]`` | host, admin | orders, newest first, with their history |
| ``GET /orders/{order_id}`` | host, admin of its room; its buyer | one order with its history |
| ``POST /orders/{order_id}/refund`` | host, admin of its room | paid → refunded |
| ``GET /rooms/{room}/clicks`` | host, admin | recorded product clicks: who, which SKU, when |
| ``GET /rooms/{room}/stats`` | host, cohost, moderator, admin | room analytics (analytics.py) |

Refusals are ``application/problem+json`` (``edge.api.problem.Problem``) with a
code: ``invalid_room``, ``invalid_json``, ``invalid_field`` (+ ``field``),
``not_found``, ``already_exists``, ``invalid_state``, ``refund_failed``, and
the node's ``unauthorized`` / ``forbidden``. A refused request changes nothing.
"""

from __future__ import annotations

import re
import time
from typing import Any, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge.api.problem import Problem, json_response
from edge.auth import Identity
from edge.messaging.envelope import ALL_ROLES
from edge.plugins.api import Edge

from .catalog import FieldError, check_sku, new_product, product_changes, product_view
from .orders import STATES, order_view
from .service import Commerce, CommerceError
from .store import AlreadyExists

ROOM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as the node's own room names
MAX_BODY = 16 * 1024
CATALOG_EDITORS = frozenset({"host"})  # admin passes every role check
PINNERS = frozenset({"host", "cohost"})
STATS_READERS = frozenset({"host", "cohost", "moderator"})

Handler = Callable[[Request], Awaitable[Response]]


def _room(request: Request) -> str:
    room = request.path_params["room"]
    if not ROOM.fullmatch(room):
        raise Problem(400, "invalid_room", "room names are 1-64 letters, digits, '.', '_' or '-'")
    return room


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Problem(413, "too_large", f"the body may be at most {MAX_BODY} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Problem(400, "invalid_json", "the body must be a JSON object") from None


def _problem(exc: Exception) -> Problem:
    if isinstance(exc, FieldError):
        return Problem(400, "invalid_field", str(exc), field=exc.field)
    if isinstance(exc, CommerceError):
        return Problem(exc.status, exc.code, exc.detail, **exc.extra)
    raise exc


def routes(edge: Edge, get_service: Callable[[], Commerce]) -> list[Route]:
    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except (FieldError, CommerceError) as exc:
                raise _problem(exc) from None

        return run

    def caller(request: Request, roles: frozenset[str], room: str) -> Identity:
        return edge.authenticate(request, roles, room=room)

    # catalog -----------------------------------------------------------------------------

    async def list_products(request: Request) -> Response:
        room = _room(request)
        who = caller(request, ALL_ROLES, room)
        svc = get_service()
        display = request.query_params.get("currency") or svc.currency_of(room, who.identity, who.region)
        if not svc.rates.has(display):
            raise FieldError("currency", f"must be one of {', '.join(svc.rates.codes)}")
        products = await svc.store.run(lambda db: db.products(room))
        return json_response(
            {
                "room": room,
                "currency": display,
                "products": [product_view(p, svc.rates, display) for p in products],
            }
        )

    async def create_product(request: Request) -> Response:
        room = _room(request)
        caller(request, CATALOG_EDITORS, room)
        svc = get_service()
        columns = new_product(await _body(request), svc.rates)
        try:
            product = await svc.store.run(lambda db: db.create_product(room, columns, time.time()))
        except AlreadyExists:
            raise Problem(409, "already_exists", f"room {room!r} already has a product {columns['sku']!r}") from None
        await svc.product_changed(room, None, product)
        return json_response(product_view(product, svc.rates), 201)

    async def get_product(request: Request) -> Response:
        room = _room(request)
        who = caller(request, ALL_ROLES, room)
        svc = get_service()
        sku = check_sku(request.path_params["sku"])
        product = await svc.store.run(lambda db: db.product(room, sku))
        if product is None:
            raise Problem(404, "not_found", f"no product {sku!r} in room {room!r}")
        display = request.query_params.get("currency") or svc.currency_of(room, who.identity, who.region)
        if not svc.rates.has(display):
            raise FieldError("currency", f"must be one of {', '.join(svc.rates.codes)}")
        return json_response(product_view(product, svc.rates, display))

    async def patch_product(request: Request) -> Response:
        room = _room(request)
        caller(request, CATALOG_EDITORS, room)
        svc = get_service()
        sku = check_sku(request.path_params["sku"])
        body = await _body(request)
        before = await svc.store.run(lambda db: db.product(room, sku))
        if before is None:
            raise Problem(404, "not_found", f"no product {sku!r} in room {room!r}")
        changes = product_changes(body, svc.rates, before)
        after = await svc.store.run(lambda db: db.update_product(room, sku, changes, time.time()))
        if after is None:
            raise Problem(404, "not_found", f"no product {sku!r} in room {room!r}")
        await svc.product_changed(room, before, after)
        return json_response(product_view(after, svc.rates))

    async def delete_product(request: Request) -> Response:
        room = _room(request)
        caller(request, CATALOG_EDITORS, room)
        svc = get_service()
        sku = check_sku(request.path_params["sku"])
        if svc.pins.get(room) is not None and svc.pins[room].sku == sku:
            await svc.unpin(room, sku=sku, reason="deleted")
        deleted, _ = await svc.store.run(lambda db: db.delete_product(room, sku))
        if not deleted:
            raise Problem(404, "not_found", f"no product {sku!r} in room {room!r}")
        return Response(status_code=204)

    # pin ----------------------------------------------------------------------------------

    async def get_pin(request: Request) -> Response:
        room = _room(request)
        who = caller(request, ALL_ROLES, room)
        svc = get_service()
        display = request.query_params.get("currency") or svc.currency_of(room, who.identity, who.region)
        if not svc.rates.has(display):
            raise FieldError("currency", f"must be one of {', '.join(svc.rates.codes)}")
        return json_response({"room": room, "pinned": await svc.current_pin(room, display)})

    async def pin(request: Request) -> Response:
        room = _room(request)
        who = caller(request, PINNERS, room)
        body = await _body(request)
        if not isinstance(body, dict):
            raise FieldError("body", "must be a JSON object")
        unknown = set(body) - {"sku", "countdown"}
        if unknown:
            raise FieldError(sorted(unknown)[0], "unknown field (known: sku, countdown)")
        if "sku" not in body:
            raise FieldError("sku", "is required")
        sku = check_sku(body["sku"])
        return json_response(await get_service().pin(room, sku, body.get("countdown"), who.identity))

    async def unpin(request: Request) -> Response:
        room = _room(request)
        caller(request, PINNERS, room)
        sku = await get_service().unpin(room)
        if sku is None:
            raise Problem(404, "not_found", f"nothing is pinned in room {room!r}")
        return json_response({"room": room, "unpinned": sku})

    # orders -------------------------------------------------------------------------------

    async def list_orders(request: Request) -> Response:
        room = _room(request)
        caller(request, CATALOG_EDITORS, room)
        svc = get_service()
        state = request.query_params.get("state")
        if state is not None and state not in STATES:
            raise FieldError("state", f"must be one of {', '.join(STATES)}")
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            limit = -1
        if not 1 <= limit <= 1000:
            raise FieldError("limit", "must be an integer from 1 to 1000")

        def read(db: Any) -> list[dict[str, Any]]:
            return [order_view(o, svc.rates, db.history(o.order_id)) for o in db.orders(room, state=state, limit=limit)]

        return json_response({"room": room, "orders": await svc.store.run(read)})

    async def _order(request: Request, buyer_may: bool) -> tuple[Identity, Any]:
        """The order of the path, if the caller may see it: its room's host or an
        admin, or (``buyer_may``) the viewer who bought it. Other viewers get 404."""
        who = edge.authenticate(request, ALL_ROLES)
        svc = get_service()
        order_id = request.path_params["order_id"]
        order = await svc.store.run(lambda db: db.order(order_id)) if len(order_id) <= 64 else None
        if order is None or not who.may_enter(order.room):
            raise Problem(404, "not_found", f"no order {order_id!r} you may see")
        if who.role in CATALOG_EDITORS or who.role == "admin":
            return who, order
        if who.role == "viewer" and order.buyer != who.identity:
            raise Problem(404, "not_found", f"no order {order_id!r} you may see")
        if who.role == "viewer" and buyer_may:
            return who, order
        raise Problem(403, "forbidden", f"role {who.role!r} may not do this (needs one of ['admin', 'host'])")

    async def get_order(request: Request) -> Response:
        _, order = await _order(request, buyer_may=True)
        svc = get_service()
        history = await svc.store.run(lambda db: db.history(order.order_id))
        return json_response(order_view(order, svc.rates, history))

    async def refund(request: Request) -> Response:
        who, order = await _order(request, buyer_may=False)
        svc = get_service()
        after = await svc.refund(order, who.identity)
        history = await svc.store.run(lambda db: db.history(after.order_id))
        return json_response(order_view(after, svc.rates, history))

    # analytics ----------------------------------------------------------------------------

    async def clicks(request: Request) -> Response:
        room = _room(request)
        caller(request, CATALOG_EDITORS, room)
        svc = get_service()
        await svc.stats(room)  # flushes buffered clicks
        rows = await svc.store.run(lambda db: db.clicks(room))
        return json_response(
            {"room": room, "clicks": [{"identity": i, "sku": s, "ts": ts} for i, s, ts in rows]}
        )

    async def stats(request: Request) -> Response:
        room = _room(request)
        caller(request, STATS_READERS, room)
        return json_response(await get_service().stats(room))

    return [
        Route("/rooms/{room}/products", guarded(list_products), methods=["GET"]),
        Route("/rooms/{room}/products", guarded(create_product), methods=["POST"]),
        Route("/rooms/{room}/products/{sku}", guarded(get_product), methods=["GET"]),
        Route("/rooms/{room}/products/{sku}", guarded(patch_product), methods=["PATCH"]),
        Route("/rooms/{room}/products/{sku}", guarded(delete_product), methods=["DELETE"]),
        Route("/rooms/{room}/pin", guarded(get_pin), methods=["GET"]),
        Route("/rooms/{room}/pin", guarded(pin), methods=["POST"]),
        Route("/rooms/{room}/pin", guarded(unpin), methods=["DELETE"]),
        Route("/rooms/{room}/orders", guarded(list_orders), methods=["GET"]),
        Route("/orders/{order_id}", guarded(get_order), methods=["GET"]),
        Route("/orders/{order_id}/refund", guarded(refund), methods=["POST"]),
        Route("/rooms/{room}/clicks", guarded(clicks), methods=["GET"]),
        Route("/rooms/{room}/stats", guarded(stats), methods=["GET"]),
    ]
