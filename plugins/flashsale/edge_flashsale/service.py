"""``FlashSales``: the service other plugins use (``edge.service("flashsale")``).

It owns the sale catalogue (which sale a room's SKU means now), checks input
that needs no state (quantity, key), and hands each attempt to the inventory
backend, which decides atomically and durably. It never raises for a buyer's
mistake: every attempt ends in an ``Outcome`` with a reason code.

    sales = edge.service("flashsale")
    sale = sales.active_sale("shop1", "sku-42")          # Sale | None, live now
    outcome = await sales.reserve("shop1", "sku-42", "fan7", 1, "tap-9f1c")
    state = await sales.confirm_payment(outcome.order_id)  # "paid" | "expired"
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from typing import Any, Callable, Iterable

from .inventory import (
    CANCELLED,
    EXPIRED,
    INVALID_KEY,
    INVALID_QUANTITY,
    MAX_QUANTITY,
    PAID,
    UNAVAILABLE,
    UNKNOWN_SKU,
    Counters,
    Inventory,
    InventoryError,
    Order,
    Outcome,
    ReserveRequest,
    Sale,
    UnknownOrder,  # noqa: F401 (re-exported for users of the service)
)

KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
CURRENCY_PATTERN = re.compile(r"^[A-Z]{3}$")
SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
MAX_TITLE = 200
MAX_STOCK = 1_000_000_000
MAX_DURATION = 7 * 86400.0
MAX_HOLD = 86400.0
# Sales whose holds may still run out are swept; after that a sale is history.
SWEEP_AFTER_END = MAX_HOLD

Listener = Callable[[Sale | None, Outcome], None]


class UnknownSale(LookupError):
    """No sale with this id."""


class SaleConflict(ValueError):
    """Another sale of the same SKU in the same room overlaps this one."""


class FlashSales:
    def __init__(
        self,
        inventory: Inventory,
        *,
        hold_seconds: float = 300.0,
        idempotency_ttl: float = 86400.0,
        clock: Callable[[], float] = time.time,
        log: Any = None,
    ) -> None:
        self.inventory = inventory
        self.hold_seconds = hold_seconds
        self.idempotency_ttl = idempotency_ttl
        self.clock = clock
        self._log = log
        self._sales: dict[str, Sale] = {}
        self._by_sku: dict[tuple[str, str], list[Sale]] = {}
        self._listeners: list[Listener] = []
        self._sale_listeners: list[Callable[[Sale], None]] = []
        self._order_prefix = secrets.token_hex(6)
        self._order_seq = itertools.count(1)
        self.ready = False

    # lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        for sale in await self.inventory.open(self.clock()):
            self._index(sale)
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        await self.inventory.close()

    def on_outcome(self, listener: Listener) -> None:
        """Call ``listener(sale, outcome)`` after every attempt (``sale`` is None when
        the attempt was refused before a sale was found: bad input, unknown SKU)."""
        self._listeners.append(listener)

    def on_sale_created(self, listener: Callable[[Sale], None]) -> None:
        self._sale_listeners.append(listener)

    # catalogue -------------------------------------------------------------------------

    def _index(self, sale: Sale) -> None:
        self._sales[sale.sale_id] = sale
        same = self._by_sku.setdefault((sale.room, sale.sku), [])
        same.append(sale)
        same.sort(key=lambda s: s.starts_at)

    async def create_sale(
        self,
        room: str,
        sku: str,
        *,
        stock: int,
        starts_at: float,
        ends_at: float,
        per_user_limit: int = 1,
        hold_seconds: float | None = None,
        title: str | None = None,
        price_minor: int | None = None,
        currency: str | None = None,
    ) -> Sale:
        """Validate and persist a sale; ``ValueError`` says what is wrong, ``SaleConflict``
        when the SKU already has an overlapping sale in the room."""
        now = self.clock()
        hold = self.hold_seconds if hold_seconds is None else hold_seconds
        title = sku if title is None else title
        if not isinstance(sku, str) or not SKU_PATTERN.match(sku):
            raise ValueError("sku must be 1-64 characters: letters, digits and . _ : / -")
        if not isinstance(title, str) or not 0 < len(title) <= MAX_TITLE:
            raise ValueError(f"title must be 1-{MAX_TITLE} characters")
        if not _whole(stock) or not 1 <= stock <= MAX_STOCK:
            raise ValueError(f"stock must be a whole number from 1 to {MAX_STOCK}")
        if not _whole(per_user_limit) or not 1 <= per_user_limit <= min(stock, MAX_QUANTITY):
            raise ValueError("per_user_limit must be a whole number from 1 to the stock")
        if not _number(hold) or not 1 <= hold <= MAX_HOLD:
            raise ValueError(f"hold_seconds must be from 1 to {int(MAX_HOLD)}")
        if not _number(starts_at) or not _number(ends_at):
            raise ValueError("starts_at and ends_at must be times")
        if ends_at <= starts_at:
            raise ValueError("ends_at must be after starts_at")
        if ends_at <= now:
            raise ValueError("ends_at is in the past")
        if ends_at - starts_at > MAX_DURATION:
            raise ValueError("a flash sale lasts at most 7 days")
        if (price_minor is None) != (currency is None):
            raise ValueError("price_minor and currency go together")
        if price_minor is not None and (not _whole(price_minor) or price_minor < 0):
            raise ValueError("price_minor must be a whole number >= 0 (minor units, e.g. cents)")
        if currency is not None and (not isinstance(currency, str) or not CURRENCY_PATTERN.match(currency)):
            raise ValueError("currency must be an ISO 4217 code such as USD")
        for other in self._by_sku.get((room, sku), []):
            if other.overlaps(starts_at, ends_at):
                raise SaleConflict(f"sale {other.sale_id} of {sku} overlaps this one")
        sale = Sale(
            sale_id="s" + secrets.token_hex(6), room=room, sku=sku, title=title, stock=int(stock),
            per_user_limit=int(per_user_limit), starts_at=float(starts_at), ends_at=float(ends_at),
            hold_seconds=float(hold), created_at=now, price_minor=price_minor, currency=currency,
        )
        await self.inventory.create_sale(sale)
        self._index(sale)
        for listener in self._sale_listeners:
            listener(sale)
        return sale

    def sale(self, sale_id: str) -> Sale | None:
        return self._sales.get(sale_id)

    def sales(self, room: str | None = None) -> list[Sale]:
        found = [s for s in self._sales.values() if room is None or s.room == room]
        return sorted(found, key=lambda s: (s.starts_at, s.sale_id))

    def active_sale(self, room: str, sku: str, now: float | None = None) -> Sale | None:
        """The sale of ``sku`` in ``room`` that is live now, if any."""
        now = self.clock() if now is None else now
        for sale in self._by_sku.get((room, sku), []):
            if sale.starts_at <= now < sale.ends_at:
                return sale
        return None

    def current_sale(self, room: str, sku: str, now: float | None = None) -> Sale | None:
        """The sale a buyer of ``sku`` means: live, else the next one, else the last one."""
        now = self.clock() if now is None else now
        same = self._by_sku.get((room, sku))
        if not same:
            return None
        for sale in same:
            if now < sale.ends_at:
                return sale
        return same[-1]

    def watched(self, now: float, horizon: float = SWEEP_AFTER_END) -> list[Sale]:
        """Sales not yet history: scheduled, live, or ended less than ``horizon`` ago."""
        return [s for s in self._sales.values() if s.ends_at + horizon > now]

    # buying -----------------------------------------------------------------------------

    def _new_order_id(self, sale: Sale) -> str:
        return f"{sale.sale_id}.{self._order_prefix}{next(self._order_seq):x}"

    async def reserve(self, room: str, sku: str, user: str, quantity: Any, idempotency_key: Any) -> Outcome:
        """One buyer's attempt. The same key with the same (room, sku, user, quantity)
        returns the identical outcome; with a different body, ``key_reused``."""
        sale, outcome = await self._reserve(room, sku, user, quantity, idempotency_key)
        for listener in self._listeners:
            listener(sale, outcome)
        return outcome

    async def _reserve(self, room: str, sku: str, user: str, quantity: Any,
                       idempotency_key: Any) -> tuple[Sale | None, Outcome]:
        if not isinstance(idempotency_key, str) or not KEY_PATTERN.match(idempotency_key):
            return None, Outcome.reject(INVALID_KEY, sku=_str(sku), quantity=_int(quantity))
        if not _whole(quantity) or not 1 <= quantity <= MAX_QUANTITY:
            return None, Outcome.reject(INVALID_QUANTITY, sku=_str(sku), quantity=_int(quantity))
        if not isinstance(sku, str) or not isinstance(user, str) or not user:
            return None, Outcome.reject(UNKNOWN_SKU, sku=_str(sku), quantity=quantity)
        now = self.clock()
        sale = self.current_sale(room, sku, now)
        if sale is None:
            return None, Outcome.reject(UNKNOWN_SKU, sku=sku, quantity=quantity)
        if not self.ready:
            return sale, Outcome.reject(UNAVAILABLE, sale=sale, quantity=quantity)
        request = ReserveRequest(room, sku, user, int(quantity), idempotency_key)
        try:
            return sale, await self.inventory.reserve(sale, request, self._new_order_id(sale), now)
        except InventoryError as exc:
            if self._log is not None:
                self._log.warning("flashsale_unavailable", error=str(exc))
            return sale, Outcome.reject(UNAVAILABLE, sale=sale, quantity=quantity)

    async def confirm_payment(self, order_id: str) -> str:
        """Payment for ``order_id`` succeeded: ``"paid"`` if its hold was still on (or it
        was already paid), ``"expired"`` if the hold ran out or was cancelled first (the
        stock went back: refund the payment). Raises ``UnknownOrder``, ``InventoryError``."""
        state = await self.inventory.transition(order_id, "pay", self.clock())
        return PAID if state == PAID else EXPIRED

    async def cancel(self, order_id: str) -> str:
        """Give up a reservation: its stock goes back (once). Returns the order's state
        afterwards: ``"cancelled"``, or ``"paid"`` / ``"expired"`` if it had moved already."""
        state = await self.inventory.transition(order_id, "cancel", self.clock())
        return state if state in (PAID, EXPIRED, CANCELLED) else CANCELLED

    async def expire_due(self, now: float | None = None) -> list[Order]:
        """Expire every reservation whose hold ran out; returns those orders."""
        now = self.clock() if now is None else now
        return await self.inventory.expire_due(self.watched(now), now)

    async def prune(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        await self.inventory.prune(now - self.idempotency_ttl)

    # reading ----------------------------------------------------------------------------

    async def order(self, order_id: str) -> Order | None:
        if not isinstance(order_id, str) or not order_id:
            return None
        return await self.inventory.order(order_id)

    async def orders(self, sale_id: str) -> list[Order]:
        sale = self._require(sale_id)
        return await self.inventory.orders(sale)

    async def counters(self, sale_id: str) -> Counters:
        return await self.inventory.counters(self._require(sale_id))

    async def remaining(self, sale_ids: Iterable[str]) -> dict[str, int]:
        return await self.inventory.remaining(list(sale_ids))

    def _require(self, sale_id: str) -> Sale:
        sale = self._sales.get(sale_id)
        if sale is None:
            raise UnknownSale(sale_id)
        return sale


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if _whole(value) else 0
