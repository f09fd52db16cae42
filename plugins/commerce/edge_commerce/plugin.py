"""The commerce plugin's hook implementations: wiring between edge and the service.

Registered through the ``edge`` entry point as ``commerce``; its config section
is ``[plugins.commerce]``, its routes are under ``/v1/plugins/commerce/``, and
it offers itself to other plugins as ``edge.service("commerce")``.

Message handlers run as tasks of their own that the hook awaits through
``asyncio.shield``: when a handler outlives the hook's time budget (a slow disk,
a slow flash-sale service), the order is not lost half-way; it completes, and
its answer reaches the sender's connections with ``edge.send_to`` instead of
as a reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.routing import Route

from edge.messaging.envelope import MessageType
from edge.plugins import hookimpl
from edge.plugins.api import ConnectionInfo, Edge, MessageContext, ParticipantInfo

from . import http
from .catalog import FieldError
from .config import CommerceConfig, parse_config
from .handlers import HANDLERS, Replies, Request
from .messages import message_types
from .payment import load_provider
from .service import Commerce, CommerceError
from .store import Store

NAME = "commerce"
DB_FILE = "commerce.sqlite3"


class CommercePlugin:
    def __init__(self) -> None:
        self.config = CommerceConfig()
        self.service: Commerce | None = None

    def svc(self) -> Commerce:
        if self.service is None:
            raise CommerceError("unavailable", "the commerce plugin is not started", 503)
        return self.service

    # life cycle --------------------------------------------------------------------------

    @hookimpl
    def edge_configure(self, edge: Edge, config: dict[str, Any]) -> None:
        self.config = parse_config(config)
        provider = load_provider(
            self.config.payment_provider,
            self.config.payment_options,
            delay=self.config.payment_delay_seconds,
            failure_rate=self.config.payment_failure_rate,
        )
        self.service = Commerce(edge, self.config, provider, Store())
        # Offered while the node is built, so every plugin finds it from its own edge_startup on.
        edge.provide(NAME, self.service)

    @hookimpl
    def edge_message_types(self, edge: Edge) -> list[MessageType]:
        return message_types(self.config)

    @hookimpl
    def edge_http_routes(self, edge: Edge) -> list[Route]:
        return http.routes(edge, self.svc)

    @hookimpl
    async def edge_startup(self, edge: Edge) -> None:
        svc = self.svc()
        await asyncio.shield(asyncio.ensure_future(svc.start(edge.data_dir(NAME) / DB_FILE)))

    @hookimpl
    async def edge_shutdown(self, edge: Edge) -> None:
        if self.service is not None:
            await asyncio.shield(asyncio.ensure_future(self.service.stop()))

    @hookimpl
    def edge_tick(self, edge: Edge, now: float) -> None:
        if self.service is not None:
            self.service.tick(now)

    # participants ------------------------------------------------------------------------

    @hookimpl
    def edge_participant_joined(self, edge: Edge, room: str, participant: ParticipantInfo) -> None:
        if participant.role == "viewer" and self.service is not None:
            self.service.view(room, participant.identity)

    @hookimpl
    def edge_participant_left(self, edge: Edge, room: str, participant: ParticipantInfo) -> None:
        if self.service is not None:
            self.service.forget(room, participant.identity)

    @hookimpl
    async def edge_connection_opened(
        self, edge: Edge, room: str, participant: ParticipantInfo, connection: ConnectionInfo
    ) -> None:
        # ?currency=XXX on the WebSocket URL picks the viewer's currency, like currency.set.
        wanted = connection.params.get("currency", "").upper()
        if self.service is not None and wanted:
            try:
                self.service.choose_currency(room, participant.identity, wanted)
            except CommerceError:
                pass  # an unknown currency keeps the region's default
        if self.service is not None and room in self.service.pins:
            await self.service.send_pin(room, participant.identity, participant.region, connection.id)

    # messages ------------------------------------------------------------------------------

    @hookimpl
    async def edge_message_received(self, edge: Edge, message: MessageContext) -> None:
        handler = HANDLERS.get(message.envelope.type)
        if handler is None:
            return
        message.broadcast = False
        sender = message.sender
        req = Request(
            room=message.room,
            identity=sender.identity,
            role=sender.role,
            region=sender.region,
            data=dict(message.envelope.data),
            reply_to=message.envelope.id,
        )
        task = asyncio.ensure_future(handler(self.svc(), req))
        try:
            replies = await asyncio.shield(task)
        except CommerceError as exc:
            message.reject(exc.code, exc.detail)
            return
        except FieldError as exc:
            message.reject("invalid_data", str(exc))
            return
        except asyncio.CancelledError:
            # Over the time budget: let it finish and answer then.
            task.add_done_callback(lambda done: self._late(edge, req, done))
            raise
        for type, data in replies:
            message.reply(type, data)

    def _late(self, edge: Edge, req: Request, task: "asyncio.Future[Replies]") -> None:
        if task.cancelled():
            return
        reply_to = {} if req.reply_to is None else {"reply_to": req.reply_to}
        exc = task.exception()
        if isinstance(exc, (CommerceError, FieldError)):
            code, reason = (exc.code, exc.detail) if isinstance(exc, CommerceError) else ("invalid_data", str(exc))
            edge.send_to(req.room, req.identity, "error", {"code": code, "reason": reason, **reply_to})
            return
        if exc is not None:
            edge.logger(NAME).error("commerce_handler_failed", error=repr(exc), room=req.room)
            return
        for type, data in task.result():
            edge.send_to(req.room, req.identity, type, {**data, **reply_to})


plugin = CommercePlugin()
