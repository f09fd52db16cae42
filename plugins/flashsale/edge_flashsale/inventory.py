"""The inventory contract: the records and the ``Inventory`` protocol both backends implement.

A backend owns three things and must make each atomic per attempt:

* the sale window and stock gate (never below zero, never more than the per-user limit),
* the idempotency record of an attempt (same key + same body -> the identical ``Outcome``),
* the order ledger (an accepted order is durable before ``reserve`` returns).

Times are Unix seconds (``float``) inside the plugin; messages and REST carry milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple, Protocol

# Reason codes of a rejected attempt (``Outcome.reason``), sent as ``order.rejected`` data.reason.
UNKNOWN_SKU = "unknown_sku"  # no sale for this SKU in this room
NOT_STARTED = "not_started"  # the sale exists but has not started
ENDED = "ended"  # the sale is over
INVALID_QUANTITY = "invalid_quantity"  # not a whole number >= 1
OVER_LIMIT = "over_limit"  # more than the per-user limit in one request
LIMIT_REACHED = "limit_reached"  # with what this user already holds, over the limit
SOLD_OUT = "sold_out"  # nothing left
INSUFFICIENT_STOCK = "insufficient_stock"  # something left, less than asked
INVALID_KEY = "invalid_key"  # missing or malformed idempotency key
KEY_REUSED = "key_reused"  # this key was used with a different body
UNAVAILABLE = "unavailable"  # the inventory could not answer: retry with the same key

REASONS: dict[str, str] = {
    UNKNOWN_SKU: "there is no flash sale for this SKU in this room",
    NOT_STARTED: "the sale has not started yet",
    ENDED: "the sale is over",
    INVALID_QUANTITY: "quantity must be a whole number of at least 1",
    OVER_LIMIT: "more than the per-customer limit in one order",
    LIMIT_REACHED: "you already hold as many as one customer may buy",
    SOLD_OUT: "sold out",
    INSUFFICIENT_STOCK: "not that many left",
    INVALID_KEY: "key must be 1-128 characters of letters, digits and . _ : -",
    KEY_REUSED: "this key was already used for a different request",
    UNAVAILABLE: "the inventory is unavailable; retry with the same key",
}

# Outcomes remembered under their idempotency key, besides acceptances: these
# consumed a look at the stock, so a retry must see the same answer. Window and
# input rejections are not remembered (a retry after the start may succeed).
STORED_REJECTIONS = frozenset({LIMIT_REACHED, SOLD_OUT, INSUFFICIENT_STOCK})

# Order states. ``reserved`` moves exactly once, to one of the other three.
RESERVED = "reserved"
PAID = "paid"
EXPIRED = "expired"
CANCELLED = "cancelled"

MAX_QUANTITY = 1_000_000


class InventoryError(Exception):
    """The backend failed (storage error, Redis down): nothing can be promised."""


class UnknownOrder(LookupError):
    """No order with this id."""


@dataclass(frozen=True, slots=True)
class Sale:
    sale_id: str
    room: str
    sku: str
    title: str
    stock: int
    per_user_limit: int
    starts_at: float
    ends_at: float
    hold_seconds: float
    created_at: float
    price_minor: int | None = None  # the flash price in minor units of ``currency`` (None: catalog price)
    currency: str | None = None

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "scheduled"
        if now < self.ends_at:
            return "live"
        return "ended"

    def overlaps(self, starts_at: float, ends_at: float) -> bool:
        return starts_at < self.ends_at and self.starts_at < ends_at


class ReserveRequest(NamedTuple):
    room: str
    sku: str
    user: str
    quantity: int
    key: str

    @property
    def body(self) -> str:
        """What a retry under the same key must repeat (the key is scoped to the user)."""
        return f"{self.room}\x1f{self.sku}\x1f{self.user}\x1f{self.quantity}"


class Outcome(NamedTuple):
    """The answer to one attempt (a tuple: cheap to make on the hot path, immutable, compared by value)."""

    accepted: bool
    reason: str | None = None
    order_id: str | None = None
    expires_at: float | None = None  # Unix seconds
    remaining: int | None = None
    sale_id: str | None = None
    sku: str | None = None
    quantity: int = 0

    @classmethod
    def reject(cls, reason: str, *, remaining: int | None = None, sale: Sale | None = None,
               sku: str | None = None, quantity: int = 0) -> "Outcome":
        return cls(False, reason, None, None, remaining, sale.sale_id if sale else None,
                   sale.sku if sale else sku, quantity)


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    sale_id: str
    room: str
    sku: str
    user: str
    quantity: int
    status: str
    created_at: float
    expires_at: float
    key: str


@dataclass(frozen=True, slots=True)
class Counters:
    """A sale's stock: ``sold + reserved + remaining == stock`` always."""

    stock: int
    sold: int  # paid
    reserved: int  # held, not paid yet
    remaining: int
    orders: int  # orders ever accepted (any state)
    expired: int = 0
    cancelled: int = 0


def decide(sale: Sale, quantity: int, held: int, remaining: int, now: float) -> str | None:
    """The gate, in order: window, per-request limit, per-user limit, stock.

    The Redis backend runs the same rules in Lua (lua/reserve.lua); a test keeps
    them in step.
    """
    if now < sale.starts_at:
        return NOT_STARTED
    if now >= sale.ends_at:
        return ENDED
    if quantity > sale.per_user_limit:
        return OVER_LIMIT
    if held + quantity > sale.per_user_limit:
        return LIMIT_REACHED
    if remaining <= 0:
        return SOLD_OUT
    if remaining < quantity:
        return INSUFFICIENT_STOCK
    return None


class Inventory(Protocol):
    """What ``FlashSales`` needs of a backend. All methods run on the event loop."""

    name: str

    async def open(self, now: float) -> list[Sale]:
        """Open storage, recover (reconcile) and return every known sale."""

    async def close(self) -> None:
        """Flush what is pending and release connections."""

    async def create_sale(self, sale: Sale) -> None:
        """Persist a new sale (durable before it returns)."""

    async def reserve(self, sale: Sale, request: ReserveRequest, order_id: str, now: float) -> Outcome:
        """One attempt: idempotency, window, limits, stock, order - atomically and durably."""

    async def transition(self, order_id: str, action: str, now: float) -> str:
        """``action`` is "pay" or "cancel"; returns the order's state afterwards.
        A reserved order past its hold expires instead. Raises ``UnknownOrder``."""

    async def expire_due(self, sales: Iterable[Sale], now: float) -> list[Order]:
        """Expire every reserved order of ``sales`` whose hold has run out; each returns
        its stock exactly once. Returns the orders it expired."""

    async def remaining(self, sale_ids: list[str]) -> dict[str, int]:
        """Stock left per sale (for display)."""

    async def counters(self, sale: Sale) -> Counters: ...

    async def orders(self, sale: Sale) -> list[Order]:
        """Every stored order of the sale (the ledger)."""

    async def order(self, order_id: str) -> Order | None: ...

    async def sync(self) -> None:
        """Make the durable ledger current (Redis: reconcile the order log into SQLite)."""

    async def prune(self, before: float) -> None:
        """Forget idempotency records created before ``before``."""
