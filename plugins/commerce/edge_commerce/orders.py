"""Orders: the record, the state machine, idempotency keys, and what buyers are told.

States and the only transitions allowed::

    reserved ──► paid ──► refunded
        ├──────► expired      (not paid within reservation_seconds; stock returns)
        └──────► cancelled    (by the buyer, staff, or a declined payment; stock returns)

Every transition is a conditional update in the store (``... WHERE state =
<from>``), so two racing outcomes (payment confirmed vs. reservation expired)
produce exactly one. Each change is appended to the order's history.

An ``order.place`` is identified by (room, buyer, key): its acceptance, or a
refusal that looked at the stock (``sold_out``, ``insufficient_stock``), is
stored and a retry with the same key gets it again, unchanged; the same key
with another SKU or quantity is refused with ``idempotency_conflict``. Other
refusals (``not_found``, a flash sale not started yet) are not stored: a retry
may succeed.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from .currency import Rates

STATES = ("reserved", "paid", "expired", "cancelled", "refunded")
TRANSITIONS: dict[str, frozenset[str]] = {
    "reserved": frozenset({"paid", "expired", "cancelled"}),
    "paid": frozenset({"refunded"}),
    "expired": frozenset(),
    "cancelled": frozenset(),
    "refunded": frozenset(),
}
# Leaving "reserved" this way gives the reserved units back to the catalog.
RELEASES_STOCK = frozenset({"expired", "cancelled"})
FINAL = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)

# Idempotency keys: the flashsale plugin's rule, so one key works for either path.
KEY = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
KEY_RULE = "key must be 1-128 characters of letters, digits and . _ : -"

# Sources of an order: the room's own catalog stock, or the flashsale plugin's reserve().
CATALOG = "catalog"
FLASHSALE = "flashsale"


class InvalidTransition(ValueError):
    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"an order cannot go from {current} to {target}")
        self.current = current
        self.target = target


def check_transition(current: str, target: str) -> None:
    """``InvalidTransition`` unless ``current → target`` is allowed."""
    if target not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransition(current, target)


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def new_order_id() -> str:
    """Sortable by creation time (ms, hex) and unguessable."""
    return f"ord_{int(time.time() * 1000):011x}{secrets.token_hex(5)}"


def fingerprint(sku: str, quantity: int) -> str:
    """What a key stands for: the same key must always mean the same request."""
    return json.dumps({"sku": sku, "quantity": quantity}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    room: str
    buyer: str
    sku: str
    title: str
    quantity: int
    unit_price_minor: int  # what the buyer pays per unit, in ``currency``
    amount_minor: int  # unit_price_minor * quantity
    currency: str
    amount_base_minor: int  # the same amount in the base currency (GMV)
    state: str
    source: str  # CATALOG | FLASHSALE
    external_id: str  # the flashsale plugin's order id ('' for catalog orders)
    payment_ref: str
    idem_key: str
    created_at: float
    expires_at: float
    updated_at: float
    paid_at: float | None


@dataclass(frozen=True, slots=True)
class Answer:
    """What the buyer is told about one ``order.place``: ``order.accepted`` or ``order.rejected``."""

    type: str
    data: dict[str, Any]

    @property
    def accepted(self) -> bool:
        return self.type == "order.accepted"

    def dumps(self) -> str:
        return json.dumps({"type": self.type, "data": self.data}, sort_keys=True)

    @classmethod
    def loads(cls, text: str) -> "Answer":
        obj = json.loads(text)
        return cls(obj["type"], obj["data"])


def accepted(order: Order, rates: Rates) -> Answer:
    return Answer(
        "order.accepted",
        {
            "order_id": order.order_id,
            "sku": order.sku,
            "quantity": order.quantity,
            "amount": rates.to_major(order.amount_minor, order.currency),
            "currency": order.currency,
            "state": order.state,
            "key": order.idem_key,
            "expires_at": int(order.expires_at * 1000),
        },
    )


def rejected(sku: str, reason: str, key: str, detail: str = "", **extra: Any) -> Answer:
    data: dict[str, Any] = {"sku": sku, "reason": reason, "key": key}
    if detail:
        data["detail"] = detail
    data.update(extra)
    return Answer("order.rejected", data)


def order_view(order: Order, rates: Rates, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An order as the REST API shows it."""
    view: dict[str, Any] = {
        "order_id": order.order_id,
        "room": order.room,
        "buyer": order.buyer,
        "sku": order.sku,
        "title": order.title,
        "quantity": order.quantity,
        "unit_price": rates.to_major(order.unit_price_minor, order.currency),
        "amount": rates.to_major(order.amount_minor, order.currency),
        "amount_minor": order.amount_minor,
        "currency": order.currency,
        "amount_base": rates.to_major(order.amount_base_minor, rates.base),
        "base_currency": rates.base,
        "state": order.state,
        "source": order.source,
        "external_id": order.external_id,  # the flashsale plugin's order id ('' for catalog orders)
        "key": order.idem_key,
        "created_at": order.created_at,
        "expires_at": order.expires_at,
        "updated_at": order.updated_at,
        "paid_at": order.paid_at,
    }
    if history is not None:
        view["history"] = history
    return view


def updated(order: Order, reason: str = "") -> dict[str, Any]:
    """The ``order.updated`` data sent to the buyer on every state change."""
    data: dict[str, Any] = {"order_id": order.order_id, "state": order.state, "sku": order.sku}
    if reason:
        data["reason"] = reason
    return data
