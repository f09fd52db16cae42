"""What commerce does: pins, clicks, orders and their payments, expiry, stats.

One ``Commerce`` per node, built by the plugin. Hooks (plugin.py) and routes
(http.py) call it; it talks to the store (store.py, on its own thread), the
payment provider (payment.py), the optional flashsale service (flash.py), and
clients through the ``Edge`` facade. It is also offered to other plugins as
``edge.service("commerce")``.

Prices a client sees are in that client's currency: the one it chose with
``currency.set`` on this room, else the one ``region_currency`` maps its
token's ``region`` to, else the base currency. Room-wide envelopes whose data
depends on the currency (``product.pinned``) are sent once per currency group.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge.plugins.api import Edge

from .analytics import EventBuffer, room_stats
from .catalog import Product, check_countdown, pinned_data
from .config import CommerceConfig
from .flash import FlashSales, Sale
from .orders import (
    FLASHSALE,
    KEY,
    KEY_RULE,
    Answer,
    Order,
    fingerprint,
    new_order_id,
    rejected,
    updated,
)
from .payment import PaymentProvider, PaymentRequest, PaymentResult
from .store import Store, idempotency_conflict

PRUNE_EVERY = 600.0  # seconds between idempotency-key prunes


class CommerceError(Exception):
    """A refusal with a reason code: an ``error`` envelope or a problem+json answer."""

    def __init__(self, code: str, detail: str, status: int = 400, **extra: Any) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Pin:
    sku: str
    by: str
    pinned_at: float
    ends_at: float | None

    def countdown(self, now: float) -> int | None:
        if self.ends_at is None:
            return None
        return max(0, round(self.ends_at - now))


class Commerce:
    def __init__(self, edge: Edge, config: CommerceConfig, provider: PaymentProvider, store: Store) -> None:
        self.edge = edge
        self.config = config
        self.rates = config.rates
        self.provider = provider
        self.store = store
        self.flash = FlashSales(edge, config.rates)
        self.log = edge.logger("commerce")
        self.pins: dict[str, Pin] = {}
        self.chosen: dict[tuple[str, str], str] = {}  # (room, identity) -> currency.set
        self.events = EventBuffer()
        self._inflight: dict[tuple[str, str, str], tuple[str, asyncio.Future[Answer]]] = {}
        self._payments: dict[str, asyncio.Task[None]] = {}
        # One lock per order while anyone holds it: transitions of one order never interleave.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._housekeeping: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._closing = False

    # life cycle --------------------------------------------------------------------------

    async def start(self, path: Path) -> None:
        await self.store.open(path)
        for room, sku, by, pinned_at, ends_at in await self.store.run(lambda db: db.pins()):
            self.pins[room] = Pin(sku, by, pinned_at, ends_at)
        # Reserved orders of a previous run: collect again (a provider must treat
        # the order id as its idempotency key); overdue ones expire on the first tick.
        now = time.time()
        for order in await self.store.run(lambda db: db.open_orders()):
            if order.expires_at > now:
                self._start_payment(order)

    async def stop(self) -> None:
        self._closing = True
        tasks = [t for t in [self._housekeeping, *self._payments.values()] if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._flush()
        except Exception:
            self.log.exception("commerce_flush_failed")
        await self.store.close()

    def tick(self, now: float) -> None:
        """Start a round of housekeeping unless the last one is still running."""
        if self._closing or (self._housekeeping is not None and not self._housekeeping.done()):
            return
        self._housekeeping = asyncio.ensure_future(self.housekeeping(now))

    async def housekeeping(self, now: float) -> None:
        try:
            await self._flush()
            for order in await self.store.run(lambda db: db.due_orders(now)):
                await self._end(order, "expired", "not paid in time")
            for room, pin in list(self.pins.items()):
                if pin.ends_at is not None and pin.ends_at <= now:
                    await self.unpin(room, sku=pin.sku, reason="countdown_ended")
            if now - self._last_prune > PRUNE_EVERY:
                self._last_prune = now
                before = now - self.config.idempotency_hours * 3600
                await self.store.run(lambda db: db.prune_keys(before))
        except Exception:
            self.log.exception("commerce_housekeeping_failed")

    async def _flush(self) -> None:
        if len(self.events):
            views, clicks = self.events.take()
            await self.store.run(lambda db: db.record_events(views, clicks))

    # domain events (docs/events.md) ----------------------------------------------------------

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Publish ``commerce.<name>`` to every plugin's ``edge_event``."""
        try:
            self.edge.emit(f"commerce.{name}", {**data, "at": time.time()}, source="commerce")
        except Exception:
            self.log.exception("commerce_emit_failed", event=name)

    def emit_order(self, order: Order) -> None:
        """``commerce.order_<state>`` (accepted for a new, reserved order)."""
        kind = "accepted" if order.state == "reserved" else order.state
        self.emit(
            f"order_{kind}",
            {
                "room": order.room,
                "order_id": order.order_id,
                "buyer": order.buyer,
                "sku": order.sku,
                "title": order.title,
                "quantity": order.quantity,
                "amount": self.rates.to_decimal(order.amount_minor, order.currency),
                "currency": order.currency,
                "amount_base": self.rates.to_decimal(order.amount_base_minor, self.rates.base),
                "base_currency": self.rates.base,
                "source": order.source,
            },
        )

    # currencies ---------------------------------------------------------------------------

    def currency_of(self, room: str, identity: str, region: str = "") -> str:
        return self.chosen.get((room, identity)) or self.config.currency_for_region(region)

    def choose_currency(self, room: str, identity: str, currency: str) -> None:
        if not self.rates.has(currency):
            raise CommerceError(
                "invalid_data", f"unknown currency {currency!r} (known: {', '.join(self.rates.codes)})"
            )
        self.chosen[(room, identity)] = currency

    def forget(self, room: str, identity: str) -> None:
        self.chosen.pop((room, identity), None)

    def _per_currency(self, room: str, type: str, build: Callable[[str], dict[str, Any]]) -> int:
        """Send ``type`` to the room, its data built once per currency group."""
        groups: dict[str, set[str]] = {}
        for participant in self.edge.participants(room):
            currency = self.currency_of(room, participant.identity, participant.region)
            groups.setdefault(currency, set()).add(participant.identity)
        if not groups:
            return 0
        if len(groups) == 1:
            return self.edge.broadcast(room, type, build(next(iter(groups))))
        everyone = set().union(*groups.values())
        return sum(
            self.edge.broadcast(room, type, build(currency), exclude=everyone - identities)
            for currency, identities in sorted(groups.items())
        )

    # pins -----------------------------------------------------------------------------------

    def sale(self, room: str, sku: str) -> Sale | None:
        try:
            return self.flash.sale(room, sku)
        except Exception:
            self.log.exception("flashsale_active_sale_failed", room=room, sku=sku)
            return None

    async def card(self, room: str, product: Product) -> Callable[[str], dict[str, Any]]:
        """A builder of ``product.pinned`` data per currency, for ``product`` in ``room``.

        The pin's countdown (else a flash sale's time left) and the flash sale's
        price and remaining units are looked up once, here."""
        now = time.time()
        pin = self.pins.get(room)
        countdown = pin.countdown(now) if pin is not None and pin.sku == product.sku else None
        sale = self.sale(room, product.sku)
        overrides: dict[str, Any] | None = None
        if sale is not None:
            overrides = sale.pinned_overrides(self.rates, product.currency)
            if "remaining" not in overrides:
                try:
                    remaining = await self.flash.remaining(sale)
                except Exception:
                    self.log.exception("flashsale_remaining_failed", room=room, sku=product.sku)
                    remaining = None
                if remaining is not None:
                    overrides["remaining"] = remaining
            if countdown is None and sale.ends_at is not None:
                countdown = max(0, round(sale.ends_at - now))
        return lambda currency: pinned_data(product, self.rates, currency, countdown=countdown, sale=overrides)

    async def pin(self, room: str, sku: str, countdown: Any, by: str) -> dict[str, Any]:
        seconds = check_countdown(countdown)
        product = await self.store.run(lambda db: db.product(room, sku))
        if product is None:
            raise CommerceError("not_found", f"no product {sku!r} in room {room!r}", 404)
        now = time.time()
        ends_at = now + seconds if seconds is not None else None
        await self.store.run(lambda db: db.set_pin(room, sku, by, now, ends_at))
        self.pins[room] = Pin(sku, by, now, ends_at)
        self._per_currency(room, "product.pinned", await self.card(room, product))
        self.emit(
            "product_pinned",
            {
                "room": room, "sku": sku, "title": product.title,
                "price": self.rates.to_decimal(product.price_minor, product.currency),
                "currency": product.currency, "countdown": seconds,
            },
        )
        return {"room": room, "sku": sku, "countdown": seconds, "ends_at": ends_at, "pinned_by": by}

    async def unpin(self, room: str, *, sku: str | None = None, reason: str = "unpinned") -> str | None:
        """Unpin (only ``sku`` when given); returns the SKU that was pinned, or None."""
        pin = self.pins.get(room)
        if pin is None or (sku is not None and pin.sku != sku):
            return None
        await self.store.run(lambda db: db.clear_pin(room, pin.sku))
        if self.pins.get(room) is pin:
            del self.pins[room]
        self.edge.broadcast(room, "product.unpinned", {"sku": pin.sku, "reason": reason})
        self.emit("product_unpinned", {"room": room, "sku": pin.sku, "reason": reason})
        return pin.sku

    async def current_pin(self, room: str, currency: str) -> dict[str, Any] | None:
        """The room's ``product.pinned`` data in ``currency``, or None when nothing is pinned."""
        pin = self.pins.get(room)
        if pin is None:
            return None
        product = await self.store.run(lambda db: db.product(room, pin.sku))
        if product is None:
            return None
        return (await self.card(room, product))(currency)

    async def send_pin(self, room: str, identity: str, region: str, connection: str | None = None) -> None:
        """The room's current pin to one participant (a new connection)."""
        if room not in self.pins:
            return
        data = await self.current_pin(room, self.currency_of(room, identity, region))
        if data is not None:
            self.edge.send_to(room, identity, "product.pinned", data, connection=connection)

    async def product_changed(self, room: str, before: Product | None, after: Product | None) -> None:
        """After a catalog change: ``stock.updated`` and a fresh pinned card where needed."""
        if after is None:
            return
        if before is not None and before.stock != after.stock:
            self.stock_changed(after)
        pin = self.pins.get(room)
        if pin is not None and pin.sku == after.sku and before is not None and (
            before.title, before.image_url, before.price_minor, before.currency
        ) != (after.title, after.image_url, after.price_minor, after.currency):
            self._per_currency(room, "product.pinned", await self.card(room, after))

    def stock_changed(self, product: Product) -> None:
        self.edge.broadcast(
            product.room,
            "stock.updated",
            # remaining: the same number under the flashsale plugin's name for it
            {"sku": product.sku, "stock": product.stock, "remaining": product.stock, "sold_out": product.stock == 0},
        )

    # clicks ------------------------------------------------------------------------------------

    async def click(self, room: str, identity: str, sku: str) -> None:
        product = await self.store.run(lambda db: db.product(room, sku))
        if product is None and self.sale(room, sku) is None:
            raise CommerceError("not_found", f"no product {sku!r} in this room", 404)
        self.events.click(room, identity, sku, time.time())
        self.emit("product_click", {"room": room, "sku": sku, "viewer": identity})

    def view(self, room: str, identity: str) -> None:
        self.events.view(room, identity, time.time())

    # orders -------------------------------------------------------------------------------------

    def check_order(self, quantity: Any, key: Any) -> None:
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= self.config.max_quantity:
            raise CommerceError("invalid_data", f"quantity must be an integer from 1 to {self.config.max_quantity}")
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise CommerceError("invalid_data", KEY_RULE)

    async def place(self, room: str, buyer: str, region: str, sku: str, quantity: int, key: str) -> Answer:
        """An ``order.place``: the answer for the buyer (``order.accepted`` or ``order.rejected``).

        Concurrent requests with one key are answered by the first one's outcome."""
        self.check_order(quantity, key)
        fp = fingerprint(sku, quantity)
        ident = (room, buyer, key)
        running = self._inflight.get(ident)
        if running is not None:
            if running[0] != fp:
                return idempotency_conflict(sku, key)
            return await asyncio.shield(running[1])
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[ident] = (fp, future)
        try:
            answer = await self._place(room, buyer, region, sku, quantity, key, fp)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody may be waiting
            raise
        finally:
            del self._inflight[ident]
        future.set_result(answer)
        return answer

    async def _place(
        self, room: str, buyer: str, region: str, sku: str, quantity: int, key: str, fp: str
    ) -> Answer:
        currency = self.currency_of(room, buyer, region)
        now = time.time()
        sale = self.sale(room, sku)
        if sale is None:
            ttl = self.config.reservation_seconds
            answer, order, product = await self.store.run(
                lambda db: db.place_catalog_order(
                    room=room, buyer=buyer, key=key, fp=fp, sku=sku, quantity=quantity,
                    currency=currency, rates=self.rates, now=now, ttl=ttl,
                )
            )
            if order is not None:
                self.emit_order(order)
                self._start_payment(order)
                if product is not None:
                    self.stock_changed(product)
            return answer
        return await self._place_flash(room, buyer, sku, quantity, key, fp, currency, sale, now)

    async def _place_flash(
        self, room: str, buyer: str, sku: str, quantity: int, key: str, fp: str, currency: str, sale: Sale, now: float
    ) -> Answer:
        found = await self.store.run(lambda db: db.answer_for(room, buyer, key))
        if found is not None:
            return found[1] if found[0] == fp else idempotency_conflict(sku, key)
        product = await self.store.run(lambda db: db.product(room, sku))
        if sale.price_minor is not None and sale.currency is not None and self.rates.has(sale.currency):
            price_minor, price_currency = sale.price_minor, sale.currency
        elif product is not None:
            price_minor, price_currency = product.price_minor, product.currency
        else:
            return rejected(sku, "not_found", key, f"the flash sale on {sku!r} has no price in a known currency")
        try:
            outcome = await self.flash.reserve(room, sku, buyer, quantity, key)
        except Exception as exc:
            self.log.exception("flashsale_reserve_failed", room=room, sku=sku)
            return rejected(sku, "unavailable", key, f"the flash sale could not take the order: {exc}")
        if not outcome.accepted:
            extra = {} if outcome.remaining is None else {"available": outcome.remaining}
            # Not stored here: the flash sale keeps (and replays) the refusals that must stick.
            return rejected(sku, outcome.reason or "rejected", key, "refused by the flash sale", **extra)
        unit = self.rates.convert(price_minor, price_currency, currency)
        unit_base = self.rates.convert(price_minor, price_currency, self.rates.base)
        title = sale.title or (product.title if product is not None else sku)
        order = Order(
            order_id=new_order_id(), room=room, buyer=buyer, sku=sku, title=title, quantity=quantity,
            unit_price_minor=unit, amount_minor=unit * quantity, currency=currency,
            amount_base_minor=unit_base * quantity, state="reserved", source=FLASHSALE,
            external_id=outcome.order_id, payment_ref="", idem_key=key, created_at=now,
            expires_at=outcome.expires_at, updated_at=now, paid_at=None,
        )
        answer, created = await self.store.run(lambda db: db.record_order(order, fp, self.rates, "placed (flash sale)"))
        if created:
            self.emit_order(order)
            self._start_payment(order)
        return answer

    def _lock(self, order_id: str) -> asyncio.Lock:
        lock = self._locks.get(order_id)
        if lock is None:
            lock = self._locks[order_id] = asyncio.Lock()
        return lock

    def _start_payment(self, order: Order) -> None:
        if self._closing or order.order_id in self._payments:
            return
        task = asyncio.ensure_future(self._pay(order))
        self._payments[order.order_id] = task
        task.add_done_callback(lambda _t: self._payments.pop(order.order_id, None))

    @staticmethod
    def _request(order: Order) -> PaymentRequest:
        return PaymentRequest(order.order_id, order.room, order.buyer, order.amount_minor, order.currency)

    async def _pay(self, order: Order) -> None:
        request = self._request(order)
        try:
            result = await self.provider.collect(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.exception("commerce_payment_failed", order_id=order.order_id)
            result = PaymentResult(False, "", f"provider_error: {exc}")
        try:
            await self._settle(order, request, result)
        except Exception:
            self.log.exception("commerce_settle_failed", order_id=order.order_id)

    async def _settle(self, order: Order, request: PaymentRequest, result: PaymentResult) -> None:
        """The payment is settled one way or the other: paid, cancelled, or given back."""
        async with self._lock(order.order_id):
            current = await self.store.run(lambda db: db.order(order.order_id))
            if current is None or current.state != "reserved":
                if result.ok:  # too late: the order expired or was cancelled meanwhile
                    await self._give_back(order.order_id, request, result.reference)
                return
            if not result.ok:
                await self._release_flash(current)
                await self._transition(current, "cancelled", f"payment_{result.reason or 'failed'}")
                return
            if current.source == FLASHSALE:
                try:
                    verdict = await self.flash.confirm_payment(current.external_id)
                except Exception:
                    self.log.exception("flashsale_confirm_failed", order_id=current.order_id)
                    verdict = "unavailable"
                if verdict != "paid":
                    await self.provider.refund(request, result.reference)
                    target = "expired" if verdict == "expired" else "cancelled"
                    await self._transition(
                        current, target, f"flash sale: {verdict}; payment returned", payment_ref=result.reference
                    )
                    return
            paid = await self._transition(current, "paid", "payment confirmed", payment_ref=result.reference)
            if paid is None:
                await self._give_back(order.order_id, request, result.reference)

    async def _give_back(self, order_id: str, request: PaymentRequest, reference: str) -> None:
        """Refund a payment that arrived for an order no longer waiting for it."""
        await self.provider.refund(request, reference)

        def note(db: Any) -> None:
            current = db.order(order_id)
            db.note(order_id, current.state if current is not None else "unknown", "late payment returned", time.time())

        await self.store.run(note)

    async def _release_flash(self, order: Order) -> None:
        """A flash-sale order that will not be paid: the sale gets its units back."""
        if order.source != FLASHSALE:
            return
        try:
            await self.flash.cancel(order.external_id)
        except Exception:
            self.log.exception("flashsale_cancel_failed", order_id=order.order_id)

    async def _transition(
        self, order: Order, target: str, reason: str, *, payment_ref: str | None = None
    ) -> Order | None:
        """Move a reserved/paid order on and tell the buyer (and the room, for stock)."""
        now = time.time()
        result = await self.store.run(
            lambda db: db.transition(order.order_id, order.state, target, now=now, reason=reason, payment_ref=payment_ref)
        )
        if result is None:
            return None
        after, product = result
        self.edge.send_to(after.room, after.buyer, "order.updated", updated(after, reason))
        self.emit_order(after)
        if product is not None:
            self.stock_changed(product)
        return after

    async def _end(self, order: Order, target: str, reason: str) -> Order | None:
        """Expire or cancel a reserved order (the flash sale gives its units back first)."""
        async with self._lock(order.order_id):
            current = await self.store.run(lambda db: db.order(order.order_id))
            if current is None or current.state != "reserved":
                return None
            await self._release_flash(current)
            return await self._transition(current, target, reason)

    async def cancel(self, room: str, identity: str, role: str, order_id: str) -> Order:
        order = await self.store.run(lambda db: db.order(order_id))
        if order is None or order.room != room or (role == "viewer" and order.buyer != identity):
            raise CommerceError("not_found", f"no order {order_id!r} of yours in this room", 404)
        if order.state != "reserved":
            raise CommerceError("invalid_state", f"order {order_id} is {order.state}; only a reserved order can be cancelled", 409)
        after = await self._end(order, "cancelled", f"cancelled by {identity}")
        if after is None:
            current = await self.store.run(lambda db: db.order(order_id))
            state = current.state if current is not None else "gone"
            raise CommerceError("invalid_state", f"order {order_id} is {state}; only a reserved order can be cancelled", 409)
        return after

    async def refund(self, order: Order, by: str) -> Order:
        async with self._lock(order.order_id):
            current = await self.store.run(lambda db: db.order(order.order_id))
            assert current is not None
            if current.state != "paid":
                raise CommerceError("invalid_state", f"order {order.order_id} is {current.state}; only a paid order can be refunded", 409)
            result = await self.provider.refund(self._request(current), current.payment_ref)
            if not result.ok:
                raise CommerceError("refund_failed", f"the payment provider refused the refund: {result.reason}", 502)
            after = await self._transition(current, "refunded", f"refunded by {by}")
        if after is None:
            raise CommerceError("invalid_state", f"order {order.order_id} changed while refunding", 409)
        return after

    # stats ----------------------------------------------------------------------------------------

    async def stats(self, room: str) -> dict[str, Any]:
        await self._flush()
        counts = await self.store.run(lambda db: db.counts(room))
        return room_stats(room, counts, self.rates)
