"""The loyalty plugin's hook implementations: wiring between edge and the service.

Registered through the ``edge`` entry point as ``loyalty``; its config section
is ``[plugins.loyalty]``, its routes are under ``/v1/plugins/loyalty/``, and it
offers ``edge.service("loyalty")`` (docs/events.md) to other plugins.

Where the points come from:

* watch time: ``edge_session_started`` / ``edge_session_ended`` of viewers'
  WHEP sessions (the node's clock), plus ``edge_tick`` for long sessions;
* purchases and refunds: ``edge_event`` (``commerce.order_paid``,
  ``commerce.order_refunded``, ``commerce.order_cancelled`` / ``order_expired``);
* check-ins, shares, profile: the ``loyalty.*`` messages;
* interactions: ``chat.send`` and ``like`` seen at the end of the message chain
  (``trylast``: a message another plugin refused never gets here);
* birthdays, expiry and tier downgrades: a sweep every ``sweep_seconds``.

Hooks never wait for the disk except where a client waits for an answer (the
``loyalty.*`` messages, REST): everything else is queued to the service's
writer thread, in order.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable

from prometheus_client import Counter
from starlette.routing import Route

from edge.messaging.envelope import MessageType
from edge.plugins import hookimpl
from edge.plugins.api import Edge, MessageContext, ParticipantInfo, SessionInfo

from . import http
from .config import LoyaltyConfig, parse_config
from .messages import message_types
from .service import Loyalty
from .store import LoyaltyError, Outcome

NAME = "loyalty"
DB_FILE = "loyalty.sqlite3"
# chat.send is turned into chat.message in place by the chat plugin before
# trylast hooks see it.
SEEN_AS = {"chat.message": "chat.send"}


class LoyaltyPlugin:
    def __init__(self) -> None:
        self.config = LoyaltyConfig()
        self.service = Loyalty(self.config)
        self.interactions: frozenset[str] = frozenset()
        self.metrics: dict[str, Any] = {}

    # life cycle --------------------------------------------------------------------------

    @hookimpl
    def edge_configure(self, edge: Edge, config: dict[str, Any]) -> None:
        self.config = parse_config(config)
        log = edge.logger(NAME)
        self.service = Loyalty(self.config, log=log)
        self.interactions = frozenset(self.config.interaction_types)
        self.metrics = {
            "entries": Counter(
                "loyalty_ledger_entries", "Loyalty ledger entries appended", ["account", "kind", "rule"],
                registry=edge.metrics_registry,
            ),
            "failures": Counter(
                "loyalty_write_failures", "Loyalty writes that failed", ["what"], registry=edge.metrics_registry
            ),
        }
        self.service.on_outcome = lambda outcome, context: self._outcome(edge, outcome, context)
        self.service.on_error = lambda what, exc: self._failed(edge, what, exc)
        # Offered while the node is built, so every plugin's edge_startup finds it.
        try:
            edge.provide(NAME, self.service)
        except ValueError:  # another plugin (a test double?) already offers "loyalty"
            log.error("loyalty_service_taken", detail="edge.service('loyalty') is another plugin's")

    @hookimpl
    def edge_message_types(self, edge: Edge) -> list[MessageType]:
        return message_types(self.config)

    @hookimpl
    def edge_http_routes(self, edge: Edge) -> list[Route]:
        return http.routes(edge, lambda: self.service)

    @hookimpl
    async def edge_startup(self, edge: Edge) -> None:
        await asyncio.shield(asyncio.ensure_future(self.service.start(edge.data_dir(NAME) / DB_FILE)))

    @hookimpl
    async def edge_shutdown(self, edge: Edge) -> None:
        if self.service.started:
            await asyncio.shield(asyncio.ensure_future(self.service.stop()))

    @hookimpl
    def edge_tick(self, edge: Edge, now: float) -> None:
        self.service.tick(now)

    # watch time --------------------------------------------------------------------------

    def _watcher(self, participant: ParticipantInfo, session: SessionInfo) -> bool:
        return session.kind == "whep" and participant.role in self.config.earning_roles

    @hookimpl
    def edge_session_started(self, edge: Edge, room: str, participant: ParticipantInfo, session: SessionInfo) -> None:
        if self._watcher(participant, session) and session.connected_at is not None:
            self.service.session_started(session.id, participant.identity, room, session.connected_at)

    @hookimpl
    def edge_session_ended(self, edge: Edge, room: str, participant: ParticipantInfo, session: SessionInfo) -> None:
        if self._watcher(participant, session):
            self.service.session_ended(
                session.id, participant.identity, room, session.connected_at, session.media_seconds
            )

    # commerce ----------------------------------------------------------------------------

    @hookimpl
    def edge_event(self, edge: Edge, name: str, data: dict[str, Any], source: str) -> None:
        # Only commerce's own events: another plugin cannot make up purchases.
        if source != "commerce" or not name.startswith("commerce.") or not isinstance(data, dict):
            return
        if name == "commerce.order_paid":
            self.service.order_paid(data)
        elif name == "commerce.order_refunded":
            self.service.order_refunded(data)
        elif name in ("commerce.order_cancelled", "commerce.order_expired"):
            self.service.order_voided(data)

    # messages ----------------------------------------------------------------------------

    @hookimpl(trylast=True)
    def edge_message_received(self, edge: Edge, message: MessageContext) -> Awaitable[None] | None:
        kind = message.envelope.type
        if kind.startswith("loyalty."):
            if message.sender.role not in self.config.earning_roles and message.sender.role != "admin":
                return None
            return self._handle(edge, message)
        kind = SEEN_AS.get(kind, kind)
        if kind in self.interactions and message.sender.role in self.config.earning_roles:
            self.service.interaction(message.sender.identity)
        return None

    async def _handle(self, edge: Edge, message: MessageContext) -> None:
        message.broadcast = False
        identity, room, reply_to = message.sender.identity, message.room, message.envelope.id
        task = asyncio.ensure_future(self._answer(message.envelope.type, identity, dict(message.envelope.data)))
        try:
            code, data = await asyncio.shield(task)
        except asyncio.CancelledError:
            # Over the hook's time budget (a slow disk): finish, and answer then.
            task.add_done_callback(lambda done: self._late(edge, room, identity, reply_to, done))
            raise
        if code == "error":
            message.reject(data["code"], data["reason"])
        else:
            message.reply(code, data)

    async def _answer(self, kind: str, identity: str, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        svc = self.service
        try:
            if kind == "loyalty.checkin":
                outcome = await svc.checkin(identity)
                if outcome.status == "already":
                    return _error("already_checked_in", f"already checked in on {outcome.info['day']}")
                points, growth = svc.balance(identity)
                earned = _earned(outcome)
                return "loyalty.checked_in", {
                    "day": outcome.info["day"], **earned, "balance": {"points": points, "growth": growth}
                }
            if kind == "loyalty.share":
                outcome = await svc.share(identity)
                points, growth = svc.balance(identity)
                return "loyalty.shared", {
                    "credited": outcome.status == "credited",
                    "remaining": outcome.info.get("remaining", 0),
                    **_earned(outcome),
                    "balance": {"points": points, "growth": growth},
                }
            if kind == "loyalty.profile":
                try:
                    fields = http.profile_fields(data)
                except Exception as exc:  # Problem from the shared validation
                    return _error("invalid_data", str(exc))
                await svc.set_profile(identity, **fields)
                member = svc.member(identity)
                return "loyalty.profile", {"birthday": member.birthday, "timezone": svc.tz(member)}
            if kind == "loyalty.status":
                return "loyalty.status", await svc.status(identity)
        except LoyaltyError as exc:
            return _error(exc.code, exc.detail)
        return _error("unknown_type", f"{kind} is not a loyalty message")

    def _late(self, edge: Edge, room: str, identity: str, reply_to: str | None, task: "asyncio.Future[Any]") -> None:
        if task.cancelled() or task.exception() is not None:
            return
        kind, data = task.result()
        extra = {} if reply_to is None else {"reply_to": reply_to}
        edge.send_to(room, identity, kind, {**data, **extra})

    # results -----------------------------------------------------------------------------

    def _outcome(self, edge: Edge, outcome: Outcome, context: dict[str, Any]) -> None:
        try:
            self._notify(edge, outcome, context)
        except Exception as exc:  # a callback of the writer's: never let it escape
            edge.logger(NAME).error("loyalty_notify_failed", error=repr(exc))

    def _notify(self, edge: Edge, outcome: Outcome, context: dict[str, Any]) -> None:
        for entry in outcome.entries:
            self.metrics["entries"].labels(entry["account"], entry["kind"], entry["rule"]).inc()
        room, identity = context.get("room"), context.get("identity")
        if (
            self.config.notify and outcome.status == "credited" and outcome.entries
            and isinstance(room, str) and isinstance(identity, str)
        ):
            points, growth = self.service.balance(identity)
            edge.send_to(
                room, identity, "loyalty.earned",
                {**_earned(outcome), "rule": outcome.entries[0]["rule"], "balance": {"points": points, "growth": growth}},
            )

    def _failed(self, edge: Edge, what: str, exc: BaseException) -> None:
        self.metrics["failures"].labels(what).inc()
        edge.logger(NAME).error("loyalty_write_failed", what=what, error=repr(exc))


def _earned(outcome: Outcome) -> dict[str, int]:
    out = {"points": 0, "growth": 0}
    for entry in outcome.entries:
        out[entry["account"]] += entry["amount"]
    return out


def _error(code: str, reason: str) -> tuple[str, dict[str, Any]]:
    return "error", {"code": code, "reason": reason}


plugin = LoyaltyPlugin()
