"""A stand-in for commerce (and for the node's session hooks) in the segments tests.

Loaded with ``[plugins] load = ["tests.segments.fake_commerce"]``. Clients
drive it with messages; it publishes what commerce would publish, with the
fields of docs/events.md, and answers ``fake.done`` once every plugin has
heard the event (``edge.emit`` calls ``edge_event`` implementations in place):

| message | who | publishes |
|---|---|---|
| ``fake.click {sku, at?}`` | viewer | ``commerce.product_click`` |
| ``fake.pin {sku}`` | host | ``commerce.product_pinned`` |
| ``fake.pay {sku, order_id, amount_base, at?, buyer?}`` | viewer, host (for ``buyer``) | ``commerce.order_paid`` |
| ``fake.refund {order_id}`` | host | ``commerce.order_refunded`` |
| ``fake.watch {seconds}`` | viewer | the session hooks of a WHEP session that played ``seconds`` |
| ``fake.mark {text}`` | host | a room broadcast ``fake.mark`` (a sentinel) |

It also provides the notifier adapter service ``fakepush``, whose calls are
listed at ``GET /v1/plugins/fake_commerce/push`` (admin).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge.messaging.envelope import MessageType
from edge.plugins import hookimpl
from edge.plugins.api import Edge, MessageContext, ParticipantInfo, SessionInfo

VIEWERS = frozenset({"viewer"})
HOSTS = frozenset({"host"})
FAST = (200, 10.0)
_sessions = itertools.count(1)


class FakePush:
    """A notifier adapter (what an SMS or push plugin would be): records every call."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def notify(self, room: str, identity: str, kind: str, data: dict[str, Any]) -> bool:
        self.sent.append({"room": room, "identity": identity, "kind": kind, "data": data})
        return True


PUSH = FakePush()


@hookimpl
def edge_configure(edge: Edge, config: dict[str, Any]) -> None:
    edge.provide("fakepush", PUSH)


@hookimpl
def edge_message_types(edge: Edge) -> list[MessageType]:
    number = (int, float)
    return [
        MessageType("fake.click", roles=VIEWERS, fields={"sku": str, "at": number}, required=frozenset({"sku"}),
                    default_rate=FAST),
        MessageType("fake.pin", roles=HOSTS, fields={"sku": str}, required=frozenset({"sku"}), default_rate=FAST),
        MessageType("fake.pay", roles=VIEWERS | HOSTS,
                    fields={"sku": str, "order_id": str, "amount_base": str, "at": number, "buyer": str},
                    required=frozenset({"sku", "order_id", "amount_base"}), default_rate=FAST),
        MessageType("fake.refund", roles=HOSTS, fields={"order_id": str}, required=frozenset({"order_id"}),
                    default_rate=FAST),
        MessageType("fake.watch", roles=VIEWERS, fields={"seconds": number}, required=frozenset({"seconds"}),
                    default_rate=FAST),
        MessageType("fake.mark", roles=HOSTS, fields={"text": str}, default_rate=FAST),
    ]


@hookimpl(tryfirst=True)
def edge_message_received(edge: Edge, message: MessageContext) -> None:
    env = message.envelope
    if not env.type.startswith("fake."):
        return
    data, room, sender = env.data, message.room, message.sender
    now = time.time()
    if env.type == "fake.click":
        event = ("commerce.product_click", {"room": room, "sku": data["sku"], "viewer": sender.identity,
                                            "at": data.get("at", now)})
    elif env.type == "fake.pin":
        event = ("commerce.product_pinned", {"room": room, "sku": data["sku"], "title": data["sku"],
                                             "price": "10.00", "currency": "EUR", "countdown": 0, "at": now})
    elif env.type == "fake.pay":
        buyer = data.get("buyer", sender.identity) if sender.role == "host" else sender.identity
        event = ("commerce.order_paid", {
            "room": room, "order_id": data["order_id"], "buyer": buyer, "sku": data["sku"], "quantity": 1,
            "amount": data["amount_base"], "currency": "EUR", "amount_base": data["amount_base"],
            "at": data.get("at", now),
        })
    elif env.type == "fake.refund":
        event = ("commerce.order_refunded", {"room": room, "order_id": data["order_id"], "at": now})
    elif env.type == "fake.watch":
        _watch(edge, room, sender, float(data["seconds"]), now)
        event = None
    else:  # fake.mark
        edge.broadcast(room, "fake.mark", {"text": data.get("text", "")})
        event = None
    if event is not None:
        edge.emit(event[0], event[1], source="commerce")
    message.reply("fake.done", {"type": env.type})


def _watch(edge: Edge, room: str, sender: ParticipantInfo, seconds: float, now: float) -> None:
    """What the node's media plane reports for a WHEP session that played ``seconds``."""
    started = SessionInfo(id=f"fake-whep-{next(_sessions)}", kind="whep", room=room, participant=sender.identity,
                          started_at=now - seconds - 0.5, connected_at=now - seconds)
    ended = SessionInfo(id=started.id, kind="whep", room=room, participant=sender.identity,
                        started_at=started.started_at, connected_at=started.connected_at, ended_at=now,
                        reason="delete")
    edge.plugins.call("edge_session_started", edge=edge, room=room, participant=sender, session=started)
    edge.plugins.call("edge_session_ended", edge=edge, room=room, participant=sender, session=ended)


@hookimpl
def edge_http_routes(edge: Edge) -> list[Route]:
    async def push(request: Request) -> JSONResponse:
        edge.authenticate(request, ["admin"])
        return JSONResponse({"sent": PUSH.sent})

    return [Route("/push", push, methods=["GET"])]
