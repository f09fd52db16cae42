"""The after-sales plugin's hook implementations: wiring between edge and the service.

Registered through the ``edge`` entry point as ``aftersales``; its config section
is ``[plugins.aftersales]``, its routes are under ``/v1/plugins/aftersales/``,
and it offers itself to other plugins as ``edge.service("aftersales")``.

Message handlers run as tasks of their own that the hook awaits through
``asyncio.shield``: when one outlives the hook's time budget (a slow disk), the
ticket is not lost half-way; it completes, and its answer reaches the sender
with ``edge.send_to`` instead of as a reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.routing import Route

from edge.messaging.envelope import MessageType
from edge.plugins import hookimpl
from edge.plugins.api import Edge, MessageContext, ParticipantInfo

from . import http
from .config import AftersalesConfig, parse_config
from .messages import message_types
from .service import HANDLERS, NAME, Aftersales, AftersalesError, Replies, Request
from .tracking import Metrics


class AftersalesPlugin:
    def __init__(self) -> None:
        self.config = AftersalesConfig()
        self.service: Aftersales | None = None

    def svc(self) -> Aftersales:
        if self.service is None:
            from edge.api.problem import Problem

            raise Problem(503, "unavailable", "the aftersales plugin is not started")
        return self.service

    # life cycle --------------------------------------------------------------------------

    @hookimpl
    def edge_configure(self, edge: Edge, config: dict[str, Any]) -> None:
        self.config = parse_config(config)
        self.service = Aftersales(edge, self.config, Metrics(edge.metrics_registry))

    @hookimpl
    def edge_message_types(self, edge: Edge) -> list[MessageType]:
        return message_types()

    @hookimpl
    def edge_http_routes(self, edge: Edge) -> list[Route]:
        return http.routes(edge, self.svc)

    @hookimpl
    async def edge_startup(self, edge: Edge) -> None:
        if self.service is None:
            return
        edge.provide(NAME, self.service)
        await asyncio.shield(asyncio.ensure_future(self.service.start()))

    @hookimpl
    async def edge_shutdown(self, edge: Edge) -> None:
        if self.service is not None:
            await asyncio.shield(asyncio.ensure_future(self.service.stop()))

    @hookimpl
    def edge_tick(self, edge: Edge, now: float) -> None:
        if self.service is not None:
            self.service.tick(now)

    # who is where --------------------------------------------------------------------------

    @hookimpl
    def edge_participant_joined(self, edge: Edge, room: str, participant: ParticipantInfo) -> None:
        if self.service is not None:
            self.service.joined(room, participant.identity, participant.role)

    @hookimpl
    def edge_participant_left(self, edge: Edge, room: str, participant: ParticipantInfo) -> None:
        if self.service is not None:
            self.service.left(room, participant.identity)

    # orders ----------------------------------------------------------------------------------

    @hookimpl
    def edge_event(self, edge: Edge, name: str, data: dict[str, Any], source: str) -> None:
        if self.service is not None and name.startswith("commerce.order_"):
            self.service.order_event(name, data)

    # messages ---------------------------------------------------------------------------------

    @hookimpl
    async def edge_message_received(self, edge: Edge, message: MessageContext) -> None:
        handler = HANDLERS.get(message.envelope.type)
        if handler is None or self.service is None:
            return
        message.broadcast = False
        sender = message.sender
        req = Request(
            room=message.room,
            identity=sender.identity,
            role=sender.role,
            data=dict(message.envelope.data),
            reply_to=message.envelope.id,
        )
        connection = getattr(message, "connection_id", "") or None  # the sending connection, for a late answer
        task = asyncio.ensure_future(handler(self.service, req))
        try:
            replies = await asyncio.shield(task)
        except AftersalesError as exc:
            message.reject(exc.code, exc.detail)
            return
        except asyncio.CancelledError:
            # Over the time budget: let it finish and answer then.
            task.add_done_callback(lambda done: self._late(edge, req, connection, done))
            raise
        for type, data in replies:
            message.reply(type, data)

    def _late(self, edge: Edge, req: Request, connection: str | None, task: "asyncio.Future[Replies]") -> None:
        if task.cancelled():
            return
        reply_to = {} if req.reply_to is None else {"reply_to": req.reply_to}
        error = task.exception()
        if isinstance(error, AftersalesError):
            data = {"code": error.code, "reason": error.detail, **reply_to}
            edge.send_to(req.room, req.identity, "error", data, connection=connection)
        elif error is not None:
            edge.logger(NAME).error("aftersales_handler_failed", error=repr(error))
        else:
            for type, data in task.result():
                edge.send_to(req.room, req.identity, type, {**data, **reply_to}, connection=connection)


plugin = AftersalesPlugin()
