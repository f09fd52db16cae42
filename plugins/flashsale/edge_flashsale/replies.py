"""Wire shapes: what buyers, rooms and REST callers see (times in milliseconds)."""

from __future__ import annotations

from typing import Any

from .inventory import REASONS, Counters, Order, Outcome, Sale


def ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def outcome_reply(outcome: Outcome, key: Any) -> tuple[str, dict[str, Any]]:
    """``order.accepted`` or ``order.rejected`` for one attempt."""
    if outcome.accepted:
        return "order.accepted", {
            "order_id": outcome.order_id, "sale_id": outcome.sale_id, "sku": outcome.sku,
            "quantity": outcome.quantity, "expires_at": ms(outcome.expires_at),
            "remaining": outcome.remaining, "key": key,
        }
    data: dict[str, Any] = {
        "sku": outcome.sku, "reason": outcome.reason, "key": key,
        "message": REASONS.get(outcome.reason or "", outcome.reason),
    }
    if outcome.sale_id is not None:
        data["sale_id"] = outcome.sale_id
    if outcome.remaining is not None and outcome.remaining >= 0:
        data["remaining"] = outcome.remaining
    return "order.rejected", data


def order_status(order: Order, status: str) -> dict[str, Any]:
    return {"order_id": order.order_id, "sale_id": order.sale_id, "sku": order.sku,
            "quantity": order.quantity, "status": status}


def sale_json(sale: Sale, now: float, *, remaining: int | None = None,
              counters: Counters | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sale_id": sale.sale_id, "room": sale.room, "sku": sale.sku, "title": sale.title,
        "stock": sale.stock, "per_user_limit": sale.per_user_limit, "starts_at": ms(sale.starts_at),
        "ends_at": ms(sale.ends_at), "hold_seconds": sale.hold_seconds, "created_at": ms(sale.created_at),
        "state": sale.state(now),
    }
    if sale.price_minor is not None:
        out.update(price_minor=sale.price_minor, currency=sale.currency)
    if remaining is not None:
        out["remaining"] = remaining
    if counters is not None:
        out.update(sold=counters.sold, reserved=counters.reserved, remaining=counters.remaining,
                   orders=counters.orders, expired=counters.expired, cancelled=counters.cancelled)
    return out


def price(sale: Sale) -> dict[str, Any]:
    return {} if sale.price_minor is None else {"price_minor": sale.price_minor, "currency": sale.currency}


def order_json(order: Order) -> dict[str, Any]:
    return {"order_id": order.order_id, "sale_id": order.sale_id, "sku": order.sku, "user": order.user,
            "quantity": order.quantity, "status": order.status, "created_at": ms(order.created_at),
            "expires_at": ms(order.expires_at)}
