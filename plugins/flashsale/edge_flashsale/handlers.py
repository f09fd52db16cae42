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

from .inventory import InventoryError, Order, UnknownOrder
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
    order = await service.order(order_id)
    if order is None or order.user != message.sender.identity or order.room != message.room:
        message.reject("not_found", f"you have no order {order_id!r} in this room")
        return
    move = service.confirm_payment if action == PAY else service.cancel
    try:
        status = await move(order_id)
    except asyncio.CancelledError:  # over the budget: moving an order again is harmless, answer late
        connection = getattr(message, "connection_id", "") or None
        asyncio.ensure_future(_late_status(edge, move, order, message.envelope.id, connection))
        raise
    message.reply("order.status", order_status(order, status))


async def _late_status(edge: Edge, move: Any, order: Order, reply_to: str | None, connection: str | None) -> None:
    data = order_status(order, await move(order.order_id))
    if reply_to is not None:
        data["reply_to"] = reply_to
    edge.send_to(order.room, order.user, "order.status", data, connection=connection)


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
