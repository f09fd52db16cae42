"""Client messages: ``sale.reserve``, ``sale.pay``, ``sale.cancel``.

Every ``sale.reserve`` is answered to its sender with ``order.accepted`` or
``order.rejected`` (with ``reply_to`` = the envelope's id). If the hook runs over
the node's plugin time budget and is cancelled, the attempt is not lost: it is
asked again with the same idempotency key in a task of its own (which gets the
identical outcome) and the answer is sent with ``edge.send_to`` to the sending
connection. ``sale.pay`` / ``sale.cancel`` do the same (an order moves once).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from edge.plugins.api import Edge, MessageContext

from .inventory import InventoryError, UnknownOrder
from .messages import CANCEL, PAY, RESERVE
from .replies import order_status, outcome_reply
from .service import FlashSales

if TYPE_CHECKING:
    from .plugin import FlashSalePlugin


async def reserve(service: FlashSales, edge: Edge, message: MessageContext) -> None:
    data = message.envelope.data
    room, user = message.room, message.sender.identity
    sku, quantity, key = data["sku"], data.get("quantity", 1), data["key"]
    try:
        outcome = await service.reserve(room, sku, user, quantity, key)
    except asyncio.CancelledError:
        connection = getattr(message, "connection_id", "") or None  # older nodes: every connection of the user
        asyncio.ensure_future(
            _late_answer(service, edge, room, user, sku, quantity, key, message.envelope.id, connection)
        )
        raise
    message.reply(*outcome_reply(outcome, key))


async def _late_answer(service: FlashSales, edge: Edge, room: str, user: str, sku: str, quantity: Any,
                       key: str, reply_to: str | None, connection: str | None) -> None:
    outcome = await service.reserve(room, sku, user, quantity, key)  # the same key: the same answer
    kind, data = outcome_reply(outcome, key)
    if reply_to is not None:
        data["reply_to"] = reply_to
    edge.send_to(room, user, kind, data, connection=connection)


async def settle(service: FlashSales, edge: Edge, message: MessageContext, action: str) -> None:
    order_id = message.envelope.data["order_id"]
    room, user = message.room, message.sender.identity
    try:
        kind, data = await _settle(service, room, user, order_id, action)
    except asyncio.CancelledError:
        # Over the budget, at the lookup or at the move: moving an order again is
        # harmless, so the whole settle runs again in a task and answers late.
        connection = getattr(message, "connection_id", "") or None
        asyncio.ensure_future(_late_settle(service, edge, room, user, order_id, action, message.envelope.id, connection))
        raise
    if kind == "error":
        message.reject(data["code"], data["reason"])
    else:
        message.reply(kind, data)


async def _settle(service: FlashSales, room: str, user: str, order_id: str, action: str) -> tuple[str, dict[str, Any]]:
    """(``order.status``, its data), or (``error``, code and reason) for an order that is
    not this user's in this room."""
    order = await service.order(order_id)
    if order is None or order.user != user or order.room != room:
        return "error", {"code": "not_found", "reason": f"you have no order {order_id!r} in this room"}
    move = service.confirm_payment if action == PAY else service.cancel
    return "order.status", order_status(order, await move(order_id))


async def _late_settle(service: FlashSales, edge: Edge, room: str, user: str, order_id: str, action: str,
                       reply_to: str | None, connection: str | None) -> None:
    try:
        kind, data = await _settle(service, room, user, order_id, action)
    except UnknownOrder:
        kind, data = "error", {"code": "not_found", "reason": "no such order"}
    except InventoryError:
        kind, data = "error", {"code": "unavailable", "reason": "the inventory is unavailable; retry"}
    if reply_to is not None:
        data["reply_to"] = reply_to
    edge.send_to(room, user, kind, data, connection=connection)


async def handle(plugin: "FlashSalePlugin", edge: Edge, message: MessageContext) -> None:
    kind = message.envelope.type
    if kind not in (RESERVE, PAY, CANCEL):
        return
    service = plugin.service
    if service is None:
        message.reject("unavailable", "flash sales are starting; retry")
        return
    if kind == RESERVE:
        await reserve(service, edge, message)
        return
    try:
        await settle(service, edge, message, kind)
    except UnknownOrder:
        message.reject("not_found", "no such order")
    except InventoryError:
        message.reject("unavailable", "the inventory is unavailable; retry")
