"""Test doubles for the after-sales tests, loaded with ``[plugins] load``.

The thing under test is the after-sales plugin; this module stands in for the
plugins it builds on, and is nothing like them:

- **commerce** (a test double): a client's ``test.order`` message makes it emit
  the commerce order event named in ``event`` (default ``paid``) for the sender,
  with the fields of docs/events.md;
- **loyalty** (``FakeLoyaltyService``, a test double of the loyalty service):
  ``tier(identity)`` from tiers set with ``test.tier`` (``gold`` grants
  ``priority_service``), provided when ``[plugins.fake_commerce] loyalty = true``;
- **recordings** (``FakeRecordingsService``, a test double of the recordings
  service): ``markers(room)`` from ``test.marker`` messages and
  ``replay_url(room, at_seconds)``, in place of the node's own when ``recordings = true``
  (real markers need a recorded live with product pins).

The ``aftersales.*`` events it hears are listed at
``GET /v1/plugins/fake_commerce/events`` (admin).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge.messaging.envelope import MessageType
from edge.plugins import hookimpl
from edge.plugins.api import Edge, MessageContext

NAME = "fake_commerce"
CONFIG: dict[str, Any] = {}
EVENTS: list[dict[str, Any]] = []
TIERS: dict[str, str] = {}
MARKERS: dict[str, list[dict[str, Any]]] = {}
RATE = (200, 10.0)


@dataclass(frozen=True, slots=True)
class FakeTierInfo:
    name: str
    level: int
    privileges: frozenset[str]


class FakeLoyaltyService:
    """Test double of the loyalty service: ``tier(identity) -> TierInfo``."""

    def tier(self, identity: str) -> FakeTierInfo:
        name = TIERS.get(identity, "basic")
        if name == "gold":
            return FakeTierInfo("gold", 3, frozenset({"priority_service", "priority_shipping"}))
        return FakeTierInfo(name, 0, frozenset())


class FakeRecordingsService:
    """Test double of the recordings service."""

    def markers(self, room: str) -> list[dict[str, Any]]:
        return list(MARKERS.get(room, []))

    def replay_url(self, room: str, at_seconds: float) -> str:
        return f"/replay/{room}?t={at_seconds:g}"


@hookimpl
def edge_configure(edge: Edge, config: dict[str, Any]) -> None:
    CONFIG.clear()
    CONFIG.update(config)


@hookimpl
def edge_message_types(edge: Edge) -> list[MessageType]:
    return [
        MessageType("test.order", fields={"order_id": str, "sku": str, "event": str},
                    required=frozenset({"order_id", "sku"}), default_rate=RATE, plugin=NAME),
        MessageType("test.tier", fields={"tier": str}, required=frozenset({"tier"}), default_rate=RATE, plugin=NAME),
        MessageType("test.marker", fields={"sku": str, "at_seconds": (int, float)},
                    required=frozenset({"sku", "at_seconds"}), default_rate=RATE, plugin=NAME),
    ]


@hookimpl
def edge_startup(edge: Edge) -> None:
    if CONFIG.get("loyalty"):
        edge.provide("loyalty", FakeLoyaltyService())
    if CONFIG.get("recordings"):
        try:
            edge.provide("recordings", FakeRecordingsService())
        except ValueError:
            # The node provides its own recordings service; its markers need a recorded
            # live with product pins. The double takes its place (tests only).
            edge._services["recordings"] = FakeRecordingsService()


@hookimpl
def edge_message_received(edge: Edge, message: MessageContext) -> None:
    kind, data, sender = message.envelope.type, message.envelope.data, message.sender
    if kind == "test.order":
        event = "commerce.order_" + data.get("event", "paid")
        edge.emit(
            event,
            {
                "room": message.room, "order_id": data["order_id"], "buyer": sender.identity, "sku": data["sku"],
                "quantity": 1, "amount": "19.90", "currency": "USD", "amount_base": "19.90", "at": time.time(),
            },
            source=NAME,
        )
        message.reply("test.ok", {"event": event, "order_id": data["order_id"]})
    elif kind == "test.tier":
        TIERS[sender.identity] = data["tier"]
        message.reply("test.ok", {"tier": data["tier"]})
    elif kind == "test.marker":
        # the shape of the node's recordings service: offset = seconds into the recording, at = epoch
        offset = float(data["at_seconds"])
        MARKERS.setdefault(message.room, []).append(
            {"sku": data["sku"], "offset": offset, "at": time.time(), "title": data["sku"],
             "recording": "rec-1", "url": FakeRecordingsService().replay_url(message.room, offset)}
        )
        message.reply("test.ok", {"marker": data["sku"]})


@hookimpl
def edge_event(edge: Edge, name: str, data: dict[str, Any], source: str) -> None:
    if name.startswith("aftersales."):
        EVENTS.append({"name": name, "data": dict(data), "source": source})


@hookimpl
def edge_http_routes(edge: Edge) -> list[Route]:
    async def events(request: Request) -> JSONResponse:
        edge.authenticate(request, ["admin"])
        return JSONResponse({"events": EVENTS})

    return [Route("/events", events, methods=["GET"])]
