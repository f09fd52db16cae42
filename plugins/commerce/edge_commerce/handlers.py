"""What each client message does, as plain coroutines of the service.

A handler gets the ``Commerce`` service and a ``Request`` (a copy of what the
hook saw), and returns the envelopes to send back to the sender, in order;
it raises ``CommerceError`` to refuse (the sender gets an ``error`` envelope
with the code). Room-wide envelopes (``product.pinned``, ``stock.updated``) and
the buyer's ``order.updated`` are sent by the service itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from .orders import updated
from .service import Commerce, CommerceError

Replies = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Request:
    room: str
    identity: str
    role: str
    region: str
    data: dict[str, Any]
    reply_to: str | None


async def product_click(svc: Commerce, req: Request) -> Replies:
    await svc.click(req.room, req.identity, req.data["sku"])
    return []


async def order_place(svc: Commerce, req: Request) -> Replies:
    data = req.data
    answer = await svc.place(req.room, req.identity, req.region, data["sku"], data.get("quantity", 1), data["key"])
    return [(answer.type, answer.data)]


async def order_cancel(svc: Commerce, req: Request) -> Replies:
    order = await svc.cancel(req.room, req.identity, req.role, req.data["order_id"])
    # The buyer hears order.updated on all its connections; anyone else who cancelled gets it here.
    return [] if order.buyer == req.identity else [("order.updated", updated(order, f"cancelled by {req.identity}"))]


async def product_pin(svc: Commerce, req: Request) -> Replies:
    await svc.pin(req.room, req.data["sku"], req.data.get("countdown"), req.identity)
    return []


async def product_unpin(svc: Commerce, req: Request) -> Replies:
    sku = req.data.get("sku")
    if await svc.unpin(req.room, sku=sku) is None:
        raise CommerceError("not_found", "that product is not pinned" if sku else "nothing is pinned", 404)
    return []


async def currency_set(svc: Commerce, req: Request) -> Replies:
    currency = req.data["currency"]
    svc.choose_currency(req.room, req.identity, currency)
    replies: Replies = [("currency.updated", {"currency": currency})]
    pinned = await svc.current_pin(req.room, currency)
    if pinned is not None:
        replies.append(("product.pinned", pinned))
    return replies


HANDLERS: dict[str, Callable[[Commerce, Request], Awaitable[Replies]]] = {
    "product.click": product_click,
    "order.place": order_place,
    "order.cancel": order_cancel,
    "product.pin": product_pin,
    "product.unpin": product_unpin,
    "currency.set": currency_set,
}
