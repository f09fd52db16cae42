"""The after-sales service: orders learnt from commerce events, tickets, FAQ answers.

Every client message is handled by one ``async`` method of ``Aftersales`` that
returns the replies for the sender (``[(type, data), ...]``) or raises
``AftersalesError`` (the sender gets an ``error`` envelope with its code). What
others must see goes out with ``edge.send_to``: to the buyer's connections in
every room the buyer is in, and to the agents (``service``, ``admin``) connected
to the ticket's room.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from edge.plugins.api import Edge

from .config import AftersalesConfig
from .faq import SKU, Faq, best_match
from .messages import AGENT_ROLES
from .store import Message, Order, Store, Ticket
from .tracking import QUEUES, FirstResponseTracker, Metrics

NAME = "aftersales"
PRIORITY_PRIVILEGE = "priority_service"
ORDER_EVENTS = {
    "commerce.order_accepted": "accepted",
    "commerce.order_paid": "paid",
    "commerce.order_expired": "expired",
    "commerce.order_cancelled": "cancelled",
    "commerce.order_refunded": "refunded",
}
ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
LOYALTY_TIMEOUT = 0.1
NO_MATCH_HINT = (
    "We have no ready answer for that. To reach an agent, open a service request "
    "for your order and tell us what happened."
)
TICKET_HINT = "No ready answer for that: an agent will answer you here."

Replies = list[tuple[str, dict[str, Any]]]


class AftersalesError(Exception):
    """A refused request: ``code`` goes to the client (``error`` envelope or problem+json)."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    room: str
    identity: str
    role: str
    data: dict[str, Any]
    reply_to: str | None = None


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _field(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


class Aftersales:
    def __init__(self, edge: Edge, config: AftersalesConfig, metrics: Metrics) -> None:
        self.edge = edge
        self.config = config
        self.metrics = metrics
        self.log = edge.logger(NAME)
        self.store = Store()
        self.tracker = FirstResponseTracker(config, metrics, self.log, self.emit)
        self.presence: dict[str, set[str]] = {}  # identity -> rooms it is in
        self.agents: dict[str, set[str]] = {}  # room -> agent identities in it
        self.faq_cache: dict[str, list[Faq]] = {}
        self.open_counts = {queue: 0 for queue in QUEUES}

    # life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        path = self.edge.data_dir(NAME) / "aftersales.sqlite3"
        await asyncio.wrap_future(self.store.open(path))
        window = self.config.median_window
        recent, counts = await self.store.run(lambda db: (db.recent(window), db.counts()))
        self.tracker.load(recent)
        self.open_counts = {"priority": counts["open_priority"], "normal": counts["open"] - counts["open_priority"]}
        self._set_open_gauges()
        self.tracker.evaluate(time.time())
        self.log.info("aftersales_started", path=str(path), open_tickets=counts["open"])

    async def stop(self) -> None:
        await self.store.close()

    def tick(self, now: float) -> None:
        self.tracker.evaluate(now)

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.edge.emit(name, data, source=NAME)

    # who is where -------------------------------------------------------------------------

    def joined(self, room: str, identity: str, role: str) -> None:
        self.presence.setdefault(identity, set()).add(room)
        if role in AGENT_ROLES:
            self.agents.setdefault(room, set()).add(identity)

    def left(self, room: str, identity: str) -> None:
        rooms = self.presence.get(identity)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self.presence[identity]
        agents = self.agents.get(room)
        if agents is not None:
            agents.discard(identity)
            if not agents:
                del self.agents[room]

    def to_buyer(self, buyer: str, type: str, data: dict[str, Any]) -> int:
        return sum(self.edge.send_to(room, buyer, type, data) for room in list(self.presence.get(buyer, ())))

    def to_agents(self, room: str, type: str, data: dict[str, Any], *, skip: str | None = None) -> int:
        return sum(
            self.edge.send_to(room, agent, type, data)
            for agent in list(self.agents.get(room, ()))
            if agent != skip
        )

    def to_ticket(self, ticket: Ticket, type: str, data: dict[str, Any]) -> None:
        """To the ticket's buyer (every room) and the agents of its room."""
        self.to_buyer(ticket.buyer, type, data)
        self.to_agents(ticket.room, type, data, skip=ticket.buyer)

    def _ticket_changed(self, ticket: Ticket, event: str, message: Message | None = None) -> None:
        data: dict[str, Any] = {"event": event, "ticket": ticket.view()}
        if message is not None:
            data["message"] = message.view()
        self.to_ticket(ticket, "aftersales.ticket", data)

    # orders from commerce events -------------------------------------------------------------

    def order_event(self, name: str, data: dict[str, Any]) -> None:
        state = ORDER_EVENTS.get(name)
        if state is None or not self.store.is_open:
            return
        order_id, buyer, room, sku = (data.get(k) for k in ("order_id", "buyer", "room", "sku"))
        if not all(isinstance(v, str) and v for v in (order_id, buyer, room, sku)):
            self.log.warning("aftersales_bad_order_event", event=name, order_id=order_id)
            return
        at = data.get("at")
        at = float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else time.time()
        future = self.store.submit(lambda db: db.record_order(order_id, room, buyer, sku, state, at))

        def recorded(done: Any) -> None:
            error = None if done.cancelled() else done.exception()
            if done.cancelled() or error is not None:
                self.log.error("aftersales_order_not_recorded", order_id=order_id, error=repr(error))

        future.add_done_callback(recorded)

    # checks ----------------------------------------------------------------------------------

    def _text(self, req: Request, key: str) -> str:
        text = req.data[key].strip()
        if not 1 <= len(text) <= self.config.max_text:
            raise AftersalesError("invalid_data", f"{key} must be 1-{self.config.max_text} characters")
        return text

    @staticmethod
    def _id(req: Request, key: str) -> str:
        value = req.data[key]
        if not ID.fullmatch(value):
            raise AftersalesError("invalid_data", f"{key} must be 1-64 letters, digits, '_', '.', ':' or '-'")
        return value

    async def _own_order(self, req: Request, order_id: str) -> Order:
        order = await self.store.run(lambda db: db.order(order_id))
        if order is None or order.buyer != req.identity:
            # the same answer for someone else's order: existence is not disclosed
            raise AftersalesError("not_found", f"you have no order {order_id!r}")
        return order

    async def _ticket_for(self, req: Request, ticket_id: str) -> tuple[Ticket, str]:
        """The ticket and the sender's side (``buyer`` or ``agent``), or not_found."""
        ticket = await self.store.run(lambda db: db.ticket(ticket_id))
        if ticket is not None:
            if ticket.buyer == req.identity:
                return ticket, "buyer"
            if req.role in AGENT_ROLES and ticket.room == req.room:
                return ticket, "agent"
        raise AftersalesError("not_found", f"no ticket {ticket_id!r} here")

    async def tier(self, identity: str) -> tuple[bool, str | None]:
        """(priority queue?, tier name) from the loyalty service, if it is loaded."""
        loyalty = self.edge.service("loyalty")
        if loyalty is None:
            return False, None
        try:
            info = await asyncio.wait_for(_maybe(loyalty.tier(identity)), LOYALTY_TIMEOUT)
        except Exception as exc:  # the loyalty service is another plugin: never fail a ticket for it
            self.log.warning("aftersales_loyalty_failed", identity=identity, error=repr(exc))
            return False, None
        if info is None:
            return False, None
        privileges = _field(info, "privileges") or ()
        name = _field(info, "name")
        return PRIORITY_PRIVILEGE in privileges, (str(name) if name is not None else None)

    # tickets ---------------------------------------------------------------------------------

    async def open(self, req: Request) -> Replies:
        order_id = self._id(req, "order_id")
        reason = req.data["reason"]
        if reason not in self.config.reasons:
            raise AftersalesError("invalid_data", f"reason must be one of {', '.join(self.config.reasons)}")
        text = self._text(req, "text")
        order = await self._own_order(req, order_id)
        ticket, message, existing = await self._open(req, order, reason, text)
        return [("aftersales.opened", {"ticket": ticket.view(), "message": message.view(), "existing": existing})]

    async def _open(self, req: Request, order: Order, reason: str, text: str) -> tuple[Ticket, Message, bool]:
        """A new ticket for the order, or its open one with ``text`` appended."""
        current = await self.store.run(lambda db: db.open_ticket_for(order.order_id))
        if current is not None:
            ticket, message = await self._post(current, req, "buyer", text)
            return ticket, message, True
        if await self.store.run(lambda db: db.open_count_of(req.identity)) >= self.config.max_open_per_buyer:
            raise AftersalesError(
                "too_many_tickets", f"at most {self.config.max_open_per_buyer} open tickets; close or finish one first"
            )
        priority, tier = await self.tier(req.identity)
        now = time.time()
        ticket, message = await self.store.run(
            lambda db: db.create_ticket(
                order, reason, text, priority=priority, tier=tier, opened_in=req.room, role=req.role, at=now
            )
        )
        self.tracker.opened(ticket.ticket_id, ticket.created_at)
        self.metrics.opened.labels(ticket.queue).inc()
        self.open_counts[ticket.queue] += 1
        self._set_open_gauges()
        self._ticket_changed(ticket, "opened", message)
        self.emit(
            "aftersales.ticket_opened",
            {
                "room": ticket.room, "ticket_id": ticket.ticket_id, "order_id": ticket.order_id,
                "buyer": ticket.buyer, "sku": ticket.sku, "reason": reason, "priority": priority, "at": now,
            },
        )
        self.log.info("aftersales_ticket_opened", ticket_id=ticket.ticket_id, room=ticket.room, queue=ticket.queue)
        return ticket, message, False

    async def _post(self, ticket: Ticket, req: Request, side: str, text: str) -> tuple[Ticket, Message]:
        if ticket.status != "open":
            raise AftersalesError("ticket_closed", f"ticket {ticket.ticket_id} is closed")
        now = time.time()
        result = await self.store.run(
            lambda db: db.add_message(ticket.ticket_id, req.identity, req.role, side, text, now)
        )
        if result is None:
            raise AftersalesError("ticket_closed", f"ticket {ticket.ticket_id} is closed")
        after, message, first = result
        self.to_ticket(after, "aftersales.message", message.view())
        if first:
            self._answered(after, now)
            self._ticket_changed(after, "answered")
        return after, message

    def _answered(self, ticket: Ticket, now: float) -> None:
        seconds = ticket.first_response_seconds or 0.0
        self.tracker.answered(ticket.ticket_id, ticket.queue, seconds, now)
        self.emit(
            "aftersales.first_response",
            {"room": ticket.room, "ticket_id": ticket.ticket_id, "seconds": seconds, "queue": ticket.queue, "at": now},
        )

    async def message(self, req: Request) -> Replies:
        ticket_id = self._id(req, "ticket_id")
        text = self._text(req, "text")
        ticket, side = await self._ticket_for(req, ticket_id)
        ticket, message = await self._post(ticket, req, side, text)
        return [("aftersales.sent", {"ticket_id": ticket.ticket_id, "message_id": message.message_id})]

    async def close(self, req: Request) -> Replies:
        ticket_id = self._id(req, "ticket_id")
        resolution = self._text(req, "resolution")
        ticket, side = await self._ticket_for(req, ticket_id)
        if side != "agent":
            raise AftersalesError("forbidden", "only an agent of the ticket's room closes it")
        now = time.time()
        result = await self.store.run(lambda db: db.close_ticket(ticket_id, req.identity, resolution, now))
        if result is None:
            raise AftersalesError("ticket_closed", f"ticket {ticket_id} is closed already")
        after, first = result
        if first:
            self._answered(after, now)
        self.metrics.closed.inc()
        self.open_counts[after.queue] = max(0, self.open_counts[after.queue] - 1)
        self._set_open_gauges()
        self._ticket_changed(after, "closed")
        self.emit(
            "aftersales.ticket_closed",
            {
                "room": after.room, "ticket_id": after.ticket_id, "order_id": after.order_id, "buyer": after.buyer,
                "resolution": resolution, "closed_by": req.identity, "at": now,
            },
        )
        return [("aftersales.sent", {"ticket_id": ticket_id, "closed": True})]

    def _set_open_gauges(self) -> None:
        for queue, count in self.open_counts.items():
            self.metrics.open.labels(queue).set(count)

    async def history(self, req: Request) -> Replies:
        ticket, _ = await self._ticket_for(req, self._id(req, "ticket_id"))
        messages = await self.store.run(lambda db: db.messages(ticket.ticket_id))
        return [("aftersales.history", {"ticket": ticket.view(), "messages": [m.view() for m in messages]})]

    async def queue(self, req: Request) -> Replies:
        tickets = await self.store.run(lambda db: db.queue(req.room))
        return [("aftersales.queue", {"room": req.room, "tickets": [t.view() for t in tickets]})]

    async def mine(self, req: Request) -> Replies:
        orders, tickets = await self.store.run(lambda db: (db.orders_of(req.identity), db.tickets_of(req.identity)))
        return [
            (
                "aftersales.mine",
                {
                    "orders": [o.view() for o in orders],
                    "tickets": [t.view() for t in tickets],
                    "reasons": list(self.config.reasons),
                },
            )
        ]

    # FAQ -------------------------------------------------------------------------------------

    async def faqs(self, room: str) -> list[Faq]:
        cached = self.faq_cache.get(room)
        if cached is None:
            cached = await self.store.run(lambda db: db.faqs(room))
            self.faq_cache[room] = cached
        return cached

    def faq_changed(self, room: str) -> None:
        self.faq_cache.pop(room, None)

    async def ask(self, req: Request) -> Replies:
        text = self._text(req, "text")
        sku = req.data.get("sku")
        if sku is not None and not SKU.fullmatch(sku):
            raise AftersalesError("invalid_data", "sku must be 1-64 letters, digits, '_', '.', ':' or '-'")
        order_id = self._id(req, "order_id") if "order_id" in req.data else None
        match = best_match(await self.faqs(req.room), text, sku, self.config.faq_threshold)
        if match is not None:
            self.metrics.questions.labels("answered").inc()
            faq = match.faq
            return [
                (
                    "aftersales.answer",
                    {
                        "faq_id": faq.faq_id,
                        "question": faq.question,
                        "answer": faq.answer,
                        "sku": faq.sku,
                        "score": match.score,
                        "clip": await self.clip(req.room, faq),
                    },
                )
            ]
        order = await self._order_for_question(req, order_id, sku)
        if order is None:
            self.metrics.questions.labels("no_match").inc()
            orders = await self.store.run(lambda db: db.orders_of(req.identity))
            return [("aftersales.no_match", {"ticket": None, "hint": NO_MATCH_HINT, "orders": [o.view() for o in orders]})]
        ticket, _, _ = await self._open(req, order, "question", text)
        self.metrics.questions.labels("ticket").inc()
        return [("aftersales.no_match", {"ticket": ticket.view(), "hint": TICKET_HINT, "orders": [order.view()]})]

    async def _order_for_question(self, req: Request, order_id: str | None, sku: str | None) -> Order | None:
        """The order an unanswered question is about: the one named, else the
        buyer's latest order in this room (for ``sku`` when given)."""
        if order_id is not None:
            return await self._own_order(req, order_id)
        orders = await self.store.run(lambda db: db.orders_of(req.identity))
        for order in orders:
            if order.room == req.room and (sku is None or order.sku == sku):
                return order
        return None

    async def clip(self, room: str, faq: Faq) -> dict[str, Any] | None:
        """``{"url", "at_seconds"}`` of the recorded live that shows the answer, or None."""
        if faq.clip_at_seconds is None and faq.sku is None:
            return None
        recordings = self.edge.service("recordings")
        if recordings is None:
            return None
        try:
            return await asyncio.wait_for(self._clip(recordings, room, faq), self.config.clip_timeout_seconds)
        except Exception as exc:  # another plugin's service: the answer goes without a clip
            self.log.warning("aftersales_clip_failed", room=room, faq_id=faq.faq_id, error=repr(exc))
            return None

    @staticmethod
    async def _clip(recordings: Any, room: str, faq: Faq) -> dict[str, Any] | None:
        at = faq.clip_at_seconds
        if at is None and faq.sku is not None:
            latest = None
            for marker in await _maybe(recordings.markers(room)) or ():
                # the recordings service's markers: {"sku", "offset" (seconds into the recording), "at" (epoch), ...}
                seconds = _field(marker, "offset", "at_seconds", "offset_seconds")
                if _field(marker, "sku") == faq.sku and isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
                    latest = seconds if latest is None else max(latest, seconds)
            at = latest
        if at is None:
            return None
        url = await _maybe(recordings.replay_url(room, at))
        if not url:
            return None
        return {"url": str(url), "at_seconds": float(at)}

    # stats -------------------------------------------------------------------------------------

    async def stats(self, room: str | None) -> dict[str, Any]:
        window = self.config.median_window
        counts, recent = await self.store.run(lambda db: (db.counts(room), db.recent(window, room)))
        answered = sorted(s for _, _, s in recent if s is not None)
        now = time.time()
        if room is None:
            self.tracker.evaluate(now)
            first = self.tracker.summary(now)
        else:
            first = {
                "median_seconds": None if not answered else round(_median(answered), 3),
                "target_seconds": self.config.first_response_target_seconds,
                "tickets": len(answered),
                "window": window,
            }
        first["answered_within_target"] = sum(1 for s in answered if s <= self.config.first_response_target_seconds)
        out: dict[str, Any] = {**counts, "first_response": first}
        if room is not None:
            out["room"] = room
        return out


def _median(values: list[float]) -> float:
    n = len(values)
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


Handler = Callable[[Aftersales, Request], Awaitable[Replies]]

HANDLERS: dict[str, Handler] = {
    "aftersales.open": Aftersales.open,
    "aftersales.message": Aftersales.message,
    "aftersales.close": Aftersales.close,
    "aftersales.ask": Aftersales.ask,
    "aftersales.mine": Aftersales.mine,
    "aftersales.history": Aftersales.history,
    "aftersales.queue": Aftersales.queue,
}
