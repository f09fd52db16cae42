"""The flashsale plugin as commerce sees it: ``edge.service("flashsale")``, or nothing.

The flashsale plugin (distribution ``edge-flashsale``) owns limited-stock sales:
``active_sale(room, sku)`` → a sale view or None; ``await reserve(room, sku,
user, quantity, idempotency_key)`` → an outcome (accepted, reason, order_id,
expires_at, remaining); ``await confirm_payment(order_id)`` → ``"paid"`` or
``"expired"``; ``await cancel(order_id)``. Commerce works the same with or
without it: when it is loaded and a SKU has an active sale, ``order.place``
reserves through it instead of the catalog's stock.

This module reads the service's answers by name, whether they are objects or
dicts, so commerce depends only on the documented fields.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from edge.plugins.api import Edge

from .currency import Rates

SERVICE = "flashsale"


def field(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` that ``obj`` has (attribute or key)."""
    for name in names:
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return default


def epoch_seconds(value: Any, default: float) -> float:
    """A time the service gave (seconds or milliseconds since the epoch, or a datetime)."""
    if value is None:
        return default
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    return default


@dataclass(frozen=True, slots=True)
class Sale:
    """An active flash sale on one SKU, in commerce's terms."""

    sku: str
    sale_id: str
    price_minor: int | None  # in ``currency``; None = the catalog price
    currency: str | None
    remaining: int | None
    title: str | None
    image_url: str | None
    ends_at: float | None

    def pinned_overrides(self, rates: Rates, product_currency: str) -> dict[str, Any]:
        """What ``catalog.pinned_data`` takes as ``sale``: price in the product's currency."""
        out: dict[str, Any] = {}
        if self.price_minor is not None and self.currency is not None and rates.has(self.currency):
            out["price_minor"] = rates.convert(self.price_minor, self.currency, product_currency)
        if self.remaining is not None:
            out["remaining"] = self.remaining
        return out


@dataclass(frozen=True, slots=True)
class Reservation:
    accepted: bool
    reason: str
    order_id: str
    expires_at: float
    remaining: int | None


def _price(view: Any, rates: Rates) -> tuple[int | None, str | None]:
    currency = field(view, "currency")
    minor = field(view, "price_minor", "sale_price_minor")
    if isinstance(minor, int) and not isinstance(minor, bool):
        return minor, currency if isinstance(currency, str) else None
    major = field(view, "price", "sale_price")
    if major is not None and isinstance(currency, str) and rates.has(currency):
        try:
            return rates.parse_amount(major, currency), currency
        except ValueError:
            return None, None
    return None, None


class FlashSales:
    """The optional flashsale service, looked up at each use (it may come later)."""

    def __init__(self, edge: Edge, rates: Rates) -> None:
        self.edge = edge
        self.rates = rates

    @property
    def service(self) -> Any | None:
        return self.edge.service(SERVICE)

    @property
    def loaded(self) -> bool:
        return self.service is not None

    def sale(self, room: str, sku: str) -> Sale | None:
        service = self.service
        if service is None:
            return None
        view = service.active_sale(room, sku)
        if view is None:
            return None
        price_minor, currency = _price(view, self.rates)
        remaining = field(view, "remaining")
        return Sale(
            sku=sku,
            sale_id=str(field(view, "sale_id", default="") or ""),
            price_minor=price_minor,
            currency=currency,
            remaining=int(remaining) if isinstance(remaining, int) and not isinstance(remaining, bool) else None,
            title=field(view, "title"),
            image_url=field(view, "image_url"),
            ends_at=epoch_seconds(field(view, "ends_at"), 0.0) or None,
        )

    async def remaining(self, sale: Sale) -> int | None:
        """Units left in the sale, when the service can say."""
        service = self.service
        if service is None or not sale.sale_id or not hasattr(service, "remaining"):
            return None
        left = await service.remaining([sale.sale_id])
        value = left.get(sale.sale_id) if isinstance(left, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    async def reserve(self, room: str, sku: str, user: str, quantity: int, key: str) -> Reservation:
        service = self.service
        assert service is not None
        outcome = await service.reserve(room, sku, user, quantity, key)
        remaining = field(outcome, "remaining")
        return Reservation(
            accepted=bool(field(outcome, "accepted", default=False)),
            reason=str(field(outcome, "reason", default="") or ""),
            order_id=str(field(outcome, "order_id", default="") or ""),
            expires_at=epoch_seconds(field(outcome, "expires_at"), time.time() + 600),
            remaining=remaining if isinstance(remaining, int) and not isinstance(remaining, bool) else None,
        )

    async def confirm_payment(self, order_id: str) -> str:
        service = self.service
        if service is None:
            return "unavailable"
        return str(await service.confirm_payment(order_id))

    async def cancel(self, order_id: str) -> None:
        service = self.service
        if service is not None:
            await service.cancel(order_id)
