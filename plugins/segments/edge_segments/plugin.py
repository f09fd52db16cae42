"""The segments plugin's hook implementations: wiring between edge, the engine,
the store and the notifier.

Registered through the ``edge`` entry point as ``segments``; its config section
is ``[plugins.segments]``, its routes are under ``/v1/plugins/segments/``. It
provides the ``notifier`` service (docs/events.md) and a small ``segments``
service (segments of a viewer, coupon look-up and redemption).

Inputs: node hooks (presence, WHEP sessions for node-measured watch time,
chat/like messages for interactions) and commerce's domain events
(``commerce.product_click``, ``commerce.product_pinned``,
``commerce.order_paid``, ``commerce.order_refunded``). Every hook is a plain
function: the engine is O(1) per event, SQLite writes are batched on the tick
except the few that guard uniqueness, and notifications to adapters run as
tasks of the plugin's own.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Callable

from prometheus_client import Counter, Gauge
from starlette.routing import Route

from edge.plugins import hookimpl
from edge.plugins.api import ConnectionInfo, Edge, MessageContext, ParticipantInfo, RoomInfo

from . import draws, http
from .config import Action, SegmentsConfig, parse_config
from .engine import SEGMENTS, Engine, Profile, Transition, parse_amount
from .messages import message_types
from .notifier import Notifier
from .store import Coupon, Store

NAME = "segments"
DB_FILE = "segments.sqlite3"
MAX_IDENTITY = 256
MAX_SKU = 128
MAX_OPEN_POLLS = 5
MAX_POLL_OPTIONS = 10
MAX_QUESTION = 300
MAX_OPTION = 100
MAX_TITLE = 200
MAX_WINNERS = 100
SWEEP_BATCH = 1000
SHUTDOWN_WAIT = 0.2  # seconds edge_shutdown waits for notifications still running


class SegmentsService:
    """``edge.service("segments")``: what other plugins may ask (e.g. commerce at checkout)."""

    def __init__(self, plugin: "SegmentsPlugin") -> None:
        self._plugin = plugin

    def segments(self, room: str, identity: str) -> list[str]:
        p = self._plugin.profile(room, identity)
        return [] if p is None else p.segments()

    def profile(self, room: str, identity: str) -> dict[str, Any] | None:
        p = self._plugin.profile(room, identity)
        return None if p is None else p.view(self._plugin.clock())

    def coupon(self, code: str) -> dict[str, Any] | None:
        store = self._plugin.store
        coupon = None if store is None else store.coupon(code)
        return None if coupon is None else coupon.view()

    def redeem_coupon(self, code: str, identity: str, order_id: str) -> bool:
        """Use a coupon of ``identity`` once, before it expires; False otherwise."""
        store = self._plugin.store
        return store is not None and store.redeem_coupon(code, identity, order_id, self._plugin.clock())


class SegmentsPlugin:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.config = SegmentsConfig()
        self.engine = Engine(self.config.rules)
        self.edge: Edge | None = None
        self.store: Store | None = None
        self.notifier: Notifier | None = None
        self.present: dict[str, set[str]] = {}  # room -> viewers present now
        self.live: dict[str, tuple[str, str]] = {}  # WHEP session id -> (room, identity)
        self.events: list[tuple[Any, ...]] = []  # event log rows not flushed yet
        self.polls: dict[str, dict[str, Any]] = {}  # open polls: poll_id -> poll (+ counts)
        self.poll_news: set[str] = set()  # open polls with votes since the last poll.results
        self.tasks: set[asyncio.Task[Any]] = set()
        self.last_sweep = float("-inf")
        self.m: dict[str, Any] = {}
        self._counters: dict[tuple[str, ...], Any] = {}  # counter children by (metric, *labels)

    # life cycle --------------------------------------------------------------------------

    @hookimpl
    def edge_configure(self, edge: Edge, config: dict[str, Any]) -> None:
        self.config = parse_config(config)
        self.edge = edge
        self.engine = Engine(self.config.rules, loader=self._load)
        self._counters = {}
        registry = edge.metrics_registry
        self.m = {
            "events": Counter("segments_events", "Events the segments plugin took in", ["kind"], registry=registry),
            "bad": Counter("segments_bad_events", "Events ignored for bad fields", ["name"], registry=registry),
            "transitions": Counter(
                "segments_transitions", "Segment entries and departures", ["segment", "direction"], registry=registry
            ),
            "coupons": Counter("segments_coupons", "Coupons granted", ["reason"], registry=registry),
            "notifications": Counter(
                "segments_notifications", "Notifications by channel and result", ["channel", "result"],
                registry=registry,
            ),
            "cached": Gauge("segments_profiles_cached", "Viewer profiles held in memory", registry=registry),
        }
        self.notifier = Notifier(
            edge,
            self.config.notifiers,
            timeout=self.config.notify_timeout_ms / 1000.0,
            pending_seconds=self.config.pending_hours * 3600.0,
            store=lambda: self.store,
            clock=self.clock,
            count=lambda channel, result: self.count("notifications", channel, result),
        )
        # Offered while the node is built, so every plugin finds them from its own edge_startup on.
        for name, service in (("notifier", self.notifier), (NAME, SegmentsService(self))):
            try:
                edge.provide(name, service)
            except ValueError:
                edge.logger(NAME).warning("service_taken", service=name)

    @hookimpl
    def edge_message_types(self, edge: Edge) -> list[Any]:
        return message_types()

    @hookimpl
    def edge_http_routes(self, edge: Edge) -> list[Route]:
        return http.routes(edge, self)

    @hookimpl
    def edge_startup(self, edge: Edge) -> None:
        self.store = Store(edge.data_dir(NAME) / DB_FILE)
        for poll in self.store.polls():
            poll["counts"] = _counts(self.store.tally(poll["poll_id"]), len(poll["options"]))
            self.polls[poll["poll_id"]] = poll

    @hookimpl
    async def edge_shutdown(self, edge: Edge) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=SHUTDOWN_WAIT)
            for task in list(self.tasks):
                task.cancel()
        if self.store is not None:
            self.flush()
            self.store.close()
            self.store = None

    @hookimpl
    def edge_tick(self, edge: Edge, now: float) -> None:
        if self.store is None:
            return
        now = self.clock()
        self._transitions(self.engine.advance(now))
        self.flush()
        if now - self.last_sweep >= self.config.sweep_seconds:
            self.last_sweep = now
            self.sweep(now)
        for poll_id in list(self.poll_news):
            self.poll_news.discard(poll_id)
            poll = self.polls.get(poll_id)
            if poll is not None and self.config.poll_live_results:
                edge.broadcast(poll["room"], "poll.results", _results(poll, closed=False))

    # presence and watch time -------------------------------------------------------------

    @hookimpl
    def edge_participant_joined(self, edge: Edge, room: str, participant: ParticipantInfo) -> None:
        if participant.role != "viewer" or self.store is None:
            return
        now = self.clock()
        identity = participant.identity
        self.present.setdefault(room, set()).add(identity)
        created, transitions = self.engine.seen(room, identity, now)
        self._log_event(now, room, identity, "join")
        if created:
            self._grant(room, identity, "welcome", "", now)
        self._transitions(transitions)

    @hookimpl
    def edge_participant_left(self, edge: Edge, room: str, participant: ParticipantInfo) -> None:
        if participant.role != "viewer" or self.store is None:
            return
        viewers = self.present.get(room)
        if viewers is not None:
            viewers.discard(participant.identity)
        now = self.clock()
        self._transitions(self.engine.seen(room, participant.identity, now)[1])

    @hookimpl
    def edge_room_closed(self, edge: Edge, room: RoomInfo) -> None:
        self.present.pop(room.name, None)

    @hookimpl
    def edge_connection_opened(
        self, edge: Edge, room: str, participant: ParticipantInfo, connection: ConnectionInfo
    ) -> None:
        if self.store is None:
            return
        for poll in self.polls.values():  # a late joiner sees the open polls, counts and own vote
            if poll["room"] == room:
                edge.send_to(room, participant.identity, "poll.created", _poll_view(poll), connection=connection.id)
                view = {**_results(poll, closed=False), "voted": poll.get("voters", {}).get(participant.identity)}
                edge.send_to(room, participant.identity, "poll.results", view, connection=connection.id)
        if participant.role == "viewer" and self.notifier is not None:
            self.notifier.deliver_pending(room, participant.identity, connection.id)

    @hookimpl
    def edge_session_started(self, edge: Edge, room: str, participant: ParticipantInfo, session: Any) -> None:
        if session.kind != "whep" or participant.role != "viewer" or self.store is None:
            return
        at = session.connected_at or self.clock()
        self.live[session.id] = (room, participant.identity)
        self._log_event(at, room, participant.identity, "watch_start")
        self._transitions(self.engine.watch_started(room, participant.identity, at))

    @hookimpl
    def edge_session_ended(self, edge: Edge, room: str, participant: ParticipantInfo, session: Any) -> None:
        if session.kind != "whep" or participant.role != "viewer" or self.store is None:
            return
        tracked = self.live.pop(session.id, None) is not None
        if session.connected_at is None:
            return  # media never flowed: nothing was watched
        ended = session.ended_at or self.clock()
        self._log_event(ended, room, participant.identity, "watch_end", value=f"{session.media_seconds:.3f}")
        self._transitions(
            self.engine.watch_ended(room, participant.identity, session.connected_at, ended, tracked)
        )

    # messages ----------------------------------------------------------------------------

    @hookimpl(trylast=True)
    def edge_message_received(self, edge: Edge, message: MessageContext) -> None:
        if self.store is None:
            return
        kind = message.envelope.type
        handler = HANDLERS.get(kind)
        if handler is not None:
            handler(self, edge, message, self.clock())
        elif kind in self.config.interaction_types and message.sender.role == "viewer":
            # trylast: a message refused by another plugin (muted, slow mode) never gets here
            now = self.clock()
            self._log_event(now, message.room, message.sender.identity, "interaction", value=kind)
            self._transitions(self.engine.interaction(message.room, message.sender.identity, now))

    def explain(self, edge: Edge, message: MessageContext, now: float) -> None:
        sku = message.envelope.data["sku"]
        if not 1 <= len(sku) <= MAX_SKU:
            return message.reject("invalid_data", f"sku must be 1-{MAX_SKU} characters")
        granted = self.targeted(message.room, sku, now)
        message.reply("segments.explained", {"sku": sku, "coupons": granted})

    def referred(self, edge: Edge, message: MessageContext, now: float) -> None:
        data = message.envelope.data
        referrer, invitee = data["referrer"], message.sender.identity
        source = data.get("source", "link")
        if not 1 <= len(referrer) <= MAX_IDENTITY:
            return message.reject("invalid_data", f"referrer must be 1-{MAX_IDENTITY} characters")
        if not 1 <= len(source) <= 64:
            return message.reject("invalid_data", "source must be 1-64 characters")
        if referrer == invitee:
            return message.reject("invalid_data", "a viewer cannot refer themselves")
        assert self.store is not None
        existing = self.store.referral(message.room, invitee)
        if existing is not None:
            status = "recorded" if existing["referrer"] == referrer else "already_referred"
            return message.reply("segments.referral", {"referrer": existing["referrer"], "status": status})
        p = self.profile(message.room, invitee)
        if p is not None and p.first_order_at is not None:
            return message.reject("already_customer", "referrals count for viewers who have not ordered yet")
        if self.profile(message.room, referrer) is None:
            return message.reject("not_found", f"no viewer {referrer!r} was ever seen in this room")
        self.store.add_referral(message.room, invitee, referrer, source, now)
        self._log_event(now, message.room, invitee, "referred", value=referrer)
        message.reply("segments.referral", {"referrer": referrer, "status": "recorded"})

    def draw_create(self, edge: Edge, message: MessageContext, now: float) -> None:
        data = message.envelope.data
        title = data.get("title", "Draw")
        count = data.get("winners", 1)
        if not 1 <= len(title) <= MAX_TITLE:
            return message.reject("invalid_data", f"title must be 1-{MAX_TITLE} characters")
        if not 1 <= count <= MAX_WINNERS:
            return message.reject("invalid_data", f"winners must be 1-{MAX_WINNERS}")
        seed = draws.new_seed()
        draw = {
            "draw_id": secrets.token_hex(8), "room": message.room, "title": title, "winners_wanted": count,
            "seed": seed, "commitment": draws.commitment(seed), "created_by": message.sender.identity,
            "created_at": now,
        }
        assert self.store is not None
        self.store.add_draw(draw)
        edge.broadcast(message.room, "draw.created", {
            "draw_id": draw["draw_id"], "title": title, "winners": count,
            "commitment": draw["commitment"], "created_at": now,
        })

    def draw_run(self, edge: Edge, message: MessageContext, now: float) -> None:
        assert self.store is not None
        draw_id = message.envelope.data["draw_id"]
        draw = self.store.draw(message.room, draw_id) if len(draw_id) <= 64 else None
        if draw is None:
            return message.reject("not_found", f"no draw {draw_id!r} in this room")
        if draw["run_at"] is not None:
            return message.reject("already_run", "this draw was run already; its result is published")
        participants = sorted({p.identity for p in edge.participants(message.room) if p.role == "viewer"})
        if not participants:
            return message.reject("no_participants", "no viewer is present to take part")
        chosen = draws.winners(draw["seed"], participants, draw["winners_wanted"])
        self.store.finish_draw(draw_id, participants, chosen, now)
        result = {
            "draw_id": draw_id, "title": draw["title"], "commitment": draw["commitment"], "seed": draw["seed"],
            "winners": chosen, "participants": len(participants),
            "verify": f"/v1/plugins/{NAME}/rooms/{message.room}/draws/{draw_id}",
        }
        edge.broadcast(message.room, "draw.result", result)
        for winner in chosen:
            self.notify(message.room, winner, "draw.won", {"draw_id": draw_id, "title": draw["title"]})
            edge.emit("segments.draw_won", {"room": message.room, "identity": winner, "draw_id": draw_id, "at": now},
                      source=NAME)

    def poll_create(self, edge: Edge, message: MessageContext, now: float) -> None:
        data = message.envelope.data
        question, options = data["question"].strip(), data["options"]
        if not 1 <= len(question) <= MAX_QUESTION:
            return message.reject("invalid_data", f"question must be 1-{MAX_QUESTION} characters")
        if (
            not 2 <= len(options) <= MAX_POLL_OPTIONS
            or not all(isinstance(o, str) and 1 <= len(o.strip()) <= MAX_OPTION for o in options)
            or len({o.strip() for o in options}) != len(options)
        ):
            return message.reject(
                "invalid_data", f"options must be 2-{MAX_POLL_OPTIONS} different strings of 1-{MAX_OPTION} characters"
            )
        if sum(1 for p in self.polls.values() if p["room"] == message.room) >= MAX_OPEN_POLLS:
            return message.reject("too_many_polls", f"a room may have at most {MAX_OPEN_POLLS} open polls")
        assert self.store is not None
        poll_id = secrets.token_hex(8)
        options = [o.strip() for o in options]
        self.store.add_poll(poll_id, message.room, question, options, message.sender.identity, now)
        poll = {
            "poll_id": poll_id, "room": message.room, "question": question, "options": options,
            "created_by": message.sender.identity, "created_at": now, "closed_at": None,
            "counts": [0] * len(options),
        }
        self.polls[poll_id] = poll
        edge.broadcast(message.room, "poll.created", _poll_view(poll))

    def _open_poll(self, message: MessageContext) -> dict[str, Any] | None:
        poll_id = message.envelope.data["poll_id"]
        poll = self.polls.get(poll_id)
        if poll is not None and poll["room"] == message.room:
            return poll
        assert self.store is not None
        closed = self.store.poll(poll_id) if len(poll_id) <= 64 else None
        if closed is not None and closed["room"] == message.room:
            message.reject("poll_closed", "this poll is closed")
        else:
            message.reject("not_found", f"no poll {poll_id!r} in this room")
        return None

    def poll_vote(self, edge: Edge, message: MessageContext, now: float) -> None:
        poll = self._open_poll(message)
        if poll is None:
            return
        option = message.envelope.data["option"]
        if not 0 <= option < len(poll["options"]):
            return message.reject("invalid_data", f"option must be 0-{len(poll['options']) - 1}")
        assert self.store is not None
        if not self.store.vote(poll["poll_id"], message.sender.identity, option, now):
            return message.reject("already_voted", "one vote per viewer")
        poll["counts"][option] += 1
        poll.setdefault("voters", {})[message.sender.identity] = option
        self.poll_news.add(poll["poll_id"])
        self._log_event(now, message.room, message.sender.identity, "interaction", value="poll.vote")
        self._transitions(self.engine.interaction(message.room, message.sender.identity, now))
        message.reply("poll.voted", {"poll_id": poll["poll_id"], "option": option})

    def poll_close(self, edge: Edge, message: MessageContext, now: float) -> None:
        poll = self._open_poll(message)
        if poll is None:
            return
        assert self.store is not None
        self.store.close_poll(poll["poll_id"], now)
        del self.polls[poll["poll_id"]]
        self.poll_news.discard(poll["poll_id"])
        poll["closed_at"] = now
        edge.broadcast(message.room, "poll.results", _results(poll, closed=True))

    # commerce events ---------------------------------------------------------------------

    @hookimpl
    def edge_event(self, edge: Edge, name: str, data: dict[str, Any], source: str) -> None:
        if not name.startswith("commerce.") or self.store is None:
            return
        handler = EVENTS.get(name)
        if handler is None:
            return
        room = data.get("room") if isinstance(data, dict) else None
        if not _name(room, MAX_IDENTITY):
            self.count("bad", name)
            return
        at = data.get("at")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or at <= 0:
            at = self.clock()
        if not handler(self, room, data, float(at)):
            self.count("bad", name)
            edge.logger(NAME).warning("event_ignored", domain_event=name, reason="bad fields")

    def on_click(self, room: str, data: dict[str, Any], at: float) -> bool:
        viewer, sku = data.get("viewer"), data.get("sku")
        if not _name(viewer, MAX_IDENTITY) or not _name(sku, MAX_SKU):
            return False
        self._log_event(at, room, viewer, "click", sku=sku)
        self._transitions(self.engine.click(room, viewer, sku, at))
        return True

    def on_pinned(self, room: str, data: dict[str, Any], at: float) -> bool:
        sku = data.get("sku")
        if not _name(sku, MAX_SKU):
            return False
        self.targeted(room, sku, self.clock())
        return True

    def on_paid(self, room: str, data: dict[str, Any], at: float) -> bool:
        buyer, sku, order_id = data.get("buyer"), data.get("sku", ""), data.get("order_id")
        micros = parse_amount(data.get("amount_base", "0"))
        if not _name(buyer, MAX_IDENTITY) or not _name(order_id, MAX_IDENTITY) or micros is None:
            return False
        if not isinstance(sku, str) or len(sku) > MAX_SKU:
            return False
        assert self.store is not None
        if not self.store.add_order(room, order_id, buyer, sku, micros, at):
            return True  # the same order again: counted once
        self._log_event(at, room, buyer, "order", sku=sku, value=order_id)
        first, transitions = self.engine.order_paid(room, buyer, sku, micros, at)
        self._transitions(transitions, {"sku": sku, "order_id": order_id})
        if first:
            self._referral_converted(room, buyer, order_id, micros, at)
        return True

    def on_refunded(self, room: str, data: dict[str, Any], at: float) -> bool:
        order_id = data.get("order_id")
        if not _name(order_id, MAX_IDENTITY):
            return False
        assert self.store is not None
        refunded = self.store.refund_order(room, order_id, at)
        if refunded is not None:
            buyer, sku, micros = refunded
            self._log_event(at, room, buyer, "refund", sku=sku, value=order_id)
            self._transitions(self.engine.order_refunded(room, buyer, sku, micros, at))
        return True

    # coupons, referrals, notifications ---------------------------------------------------

    def targeted(self, room: str, sku: str, now: float) -> int:
        """Coupons for the viewers present who clicked ``sku`` often and never bought it."""
        present = self.present.get(room, set())
        granted = 0
        for identity in sorted(self.engine.targeted(room, sku) & present):
            if self._grant(room, identity, "targeted", sku, now) is not None:
                granted += 1
        return granted

    def _referral_converted(self, room: str, invitee: str, order_id: str, micros: int, at: float) -> None:
        assert self.store is not None
        referral = self.store.referral(room, invitee)
        if referral is None or referral["converted"]:
            return
        if not self.store.convert_referral(room, invitee, order_id, micros, at):
            return
        referrer = referral["referrer"]
        self._grant(room, invitee, "referral_invitee", referrer, at, extra={"referrer": referrer})
        self._grant(room, referrer, "referral_referrer", invitee, at, extra={"invitee": invitee})
        assert self.edge is not None
        self.edge.emit("segments.referral_converted", {
            "room": room, "referrer": referrer, "invitee": invitee, "order_id": order_id, "at": at,
        }, source=NAME)

    def _grant(
        self, room: str, identity: str, reason: str, subject: str, now: float, *,
        percent_off: int | None = None, valid_hours: float | None = None, text: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Coupon | None:
        """Store a coupon (one per viewer, reason and subject) and notify its owner."""
        rule = self.config.coupons.get(reason)
        if rule is not None:
            if not rule.enabled:
                return None
            percent_off = rule.percent_off if percent_off is None else percent_off
            valid_hours = rule.valid_hours if valid_hours is None else valid_hours
        assert self.store is not None and percent_off is not None and valid_hours is not None
        coupon = self.store.grant_coupon(
            room, identity, reason, subject, percent_off, now, now + valid_hours * 3600.0, self.config.code_prefix
        )
        if coupon is None:
            return None
        self.count("coupons", reason)
        data = {
            "code": coupon.code, "reason": reason, "sku": subject if reason == "targeted" else None,
            "percent_off": coupon.percent_off, "expires_at": coupon.expires_at, **(extra or {}),
        }
        if text:
            data["text"] = text
        assert self.edge is not None
        self.edge.emit("segments.coupon_granted", {"room": room, "identity": identity, **data, "at": now}, source=NAME)
        self.notify(room, identity, "coupon.granted", data)
        return coupon

    def notify(self, room: str, identity: str, kind: str, data: dict[str, Any]) -> None:
        """Hand a notification to the notifier, from a plain hook (a task of our own)."""
        if self.notifier is None:
            return
        task = asyncio.ensure_future(self.notifier.notify(room, identity, kind, data))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: "asyncio.Task[Any]") -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.edge is not None:
            self.edge.logger(NAME).error("notify_failed", error=repr(task.exception()))

    # segments ----------------------------------------------------------------------------

    def _transitions(self, transitions: list[Transition], context: dict[str, Any] | None = None) -> None:
        if not transitions:
            return
        assert self.store is not None and self.edge is not None
        for t in transitions:
            direction = "entered" if t.entered else "left"
            self.count("transitions", t.segment, direction)
            self.store.record_transition(t)
            self.edge.emit(f"segments.{direction}", {
                "room": t.room, "identity": t.identity, "segment": t.segment, "entry": t.entry, "at": t.at,
            }, source=NAME)
            if not t.entered:
                continue
            for name in self.config.segment_actions.get(t.segment, ()):
                if self.store.claim_action(t.room, t.identity, t.segment, t.entry, name, t.at):
                    self._act(t, self.config.actions[name], context or {})

    def _act(self, t: Transition, action: Action, context: dict[str, Any]) -> None:
        if action.type == "coupon":
            self._grant(
                t.room, t.identity, t.segment, f"{action.name}#{t.entry}", t.at,
                percent_off=action.percent_off, valid_hours=action.valid_hours, text=action.text,
                extra={"segment": t.segment, "action": action.name},
            )
            return
        data: dict[str, Any] = {"segment": t.segment, "action": action.name, "text": action.text}
        if action.url:
            data["url"] = action.url
        data.update(self._enrich(action.name, t, context))
        self.notify(t.room, t.identity, action.kind, data)

    def _enrich(self, name: str, t: Transition, context: dict[str, Any]) -> dict[str, Any]:
        """What the built-in actions add from the event, loyalty and recordings (when loaded)."""
        assert self.edge is not None
        out: dict[str, Any] = {}
        try:
            if name == "bundle_recommendation" and context.get("sku"):
                out["sku"] = context["sku"]
            loyalty = self.edge.service("loyalty")
            if name in ("membership_onboarding", "points_reminder") and loyalty is not None:
                tier = loyalty.tier(t.identity)
                out["tier"] = getattr(tier, "name", None)
                points = loyalty.balance(t.identity)[0]
                out["points"] = points if isinstance(points, (int, float)) else str(points)
            recordings = self.edge.service("recordings")
            if name == "highlight_replay" and recordings is not None:
                out["replay_url"] = str(recordings.replay_url(t.room, 0))
                marks = [m for m in (recordings.markers(t.room) or []) if isinstance(m, dict)]
                out["highlights"] = [
                    {"title": m.get("title"), "sku": m.get("sku"), "url": m.get("url")} for m in marks[-5:]
                ]
        except Exception as exc:  # a sibling service's failure leaves the notification plain
            self.edge.logger(NAME).warning("enrich_failed", action=name, error=repr(exc))
        return out

    # storage -----------------------------------------------------------------------------

    def _load(self, room: str, identity: str) -> Profile | None:
        return None if self.store is None else self.store.load_profile(room, identity)

    def profile(self, room: str, identity: str) -> Profile | None:
        return self.engine.get(room, identity)

    def _log_event(self, at: float, room: str, identity: str, kind: str, sku: str = "", value: str = "") -> None:
        self.events.append((at, room, identity, kind, sku, value))
        self.count("events", kind)

    def count(self, metric: str, *labels: str) -> None:
        """Increment a labelled counter (its children cached: ``labels()`` is not free)."""
        key = (metric, *labels)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.m[metric].labels(*labels)
        child.inc()

    def flush(self) -> None:
        if self.store is None:
            return
        profiles, skus = self.engine.take_dirty()
        events, self.events = self.events, []
        self.store.flush(profiles, events, skus)

    def sweep(self, now: float) -> None:
        """Due profiles from SQLite, then memory housekeeping: idle profiles out, old
        events and expired outbox entries pruned (every ``sweep_seconds``)."""
        assert self.store is not None
        self.due(now)
        for key in self.engine.idle(now - self.config.idle_seconds):
            p = self.engine.profiles[key]
            if p.live_count or key in self.engine.dirty or key[1] in self.present.get(key[0], ()):
                continue  # watching or here: stays (and is looked at again next sweep)
            self.engine.evict(key)
        self.store.prune_events(now - self.config.events_retention_days * 86400.0)
        self.store.prune_pending(now)
        self.m["cached"].set(len(self.engine.profiles))

    def due(self, now: float, batches: int = 1) -> None:
        """Profiles not in memory whose segments may have changed by ``now`` (dormant,
        end of the new-buyer window): at most ``batches`` x SWEEP_BATCH of them; a
        longer backlog is taken up again at the next tick."""
        assert self.store is not None
        for _ in range(batches):
            rows = self.store.due(now, SWEEP_BATCH)
            for room, identity in rows:
                if (room, identity) not in self.engine.profiles:
                    self.engine.get(room, identity)  # loads it into the time heap
            self._transitions(self.engine.advance(now))
            self.flush()
            if len(rows) < SWEEP_BATCH:
                return
        self.last_sweep = float("-inf")  # more is due: go on at the next tick

    def catch_up(self) -> float:
        """Bring the stored segments up to now (before answering a query)."""
        now = self.clock()
        self._transitions(self.engine.advance(now))
        self.flush()
        self.due(now, batches=20)
        return now


def _name(value: Any, longest: int) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= longest


def _counts(tally: dict[int, int], n: int) -> list[int]:
    return [tally.get(i, 0) for i in range(n)]


def _poll_view(poll: dict[str, Any]) -> dict[str, Any]:
    return {"poll_id": poll["poll_id"], "question": poll["question"], "options": poll["options"]}


def _results(poll: dict[str, Any], *, closed: bool) -> dict[str, Any]:
    return {
        **_poll_view(poll), "counts": list(poll["counts"]), "total": sum(poll["counts"]), "closed": closed,
    }


HANDLERS: dict[str, Callable[[SegmentsPlugin, Edge, MessageContext, float], None]] = {
    "segments.explain": SegmentsPlugin.explain,
    "segments.referred": SegmentsPlugin.referred,
    "draw.create": SegmentsPlugin.draw_create,
    "draw.run": SegmentsPlugin.draw_run,
    "poll.create": SegmentsPlugin.poll_create,
    "poll.vote": SegmentsPlugin.poll_vote,
    "poll.close": SegmentsPlugin.poll_close,
}

EVENTS: dict[str, Callable[[SegmentsPlugin, str, dict[str, Any], float], bool]] = {
    "commerce.product_click": SegmentsPlugin.on_click,
    "commerce.product_pinned": SegmentsPlugin.on_pinned,
    "commerce.order_paid": SegmentsPlugin.on_paid,
    "commerce.order_refunded": SegmentsPlugin.on_refunded,
}

plugin = SegmentsPlugin()
