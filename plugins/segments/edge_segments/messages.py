"""The message types the segments plugin accepts from clients (``edge_message_types``).

The router enforces roles (``forbidden``), data field types (``invalid_data``)
and the per-role rates (``rate_limited``) before the plugin sees a message.
None is broadcast as sent: the plugin answers the sender and sends the room
its own envelopes (``draw.created``, ``draw.result``, ``poll.created``,
``poll.results``).
"""

from __future__ import annotations

from edge.messaging.envelope import MessageType

PLUGIN = "segments"
VIEWERS = frozenset({"viewer"})  # admin passes every role check
HOSTS = frozenset({"host", "cohost"})
STAFF_RATE = (30, 30.0)


def message_types() -> list[MessageType]:
    return [
        MessageType(
            "segments.referred",
            roles=VIEWERS,
            fields={"referrer": str, "source": str},
            required=frozenset({"referrer"}),
            default_rate=(10, 60.0),
            plugin=PLUGIN,
        ),
        MessageType(
            "segments.explain",
            roles=HOSTS,
            fields={"sku": str},
            required=frozenset({"sku"}),
            default_rate=STAFF_RATE,
            plugin=PLUGIN,
        ),
        MessageType(
            "draw.create",
            roles=HOSTS,
            fields={"title": str, "winners": int},
            default_rate=(10, 60.0),
            plugin=PLUGIN,
        ),
        MessageType(
            "draw.run",
            roles=HOSTS,
            fields={"draw_id": str},
            required=frozenset({"draw_id"}),
            default_rate=(10, 60.0),
            plugin=PLUGIN,
        ),
        MessageType(
            "poll.create",
            roles=HOSTS,
            fields={"question": str, "options": list},
            required=frozenset({"question", "options"}),
            default_rate=(10, 60.0),
            plugin=PLUGIN,
        ),
        MessageType(
            "poll.vote",
            roles=VIEWERS,
            fields={"poll_id": str, "option": int},
            required=frozenset({"poll_id", "option"}),
            default_rate=(10, 10.0),
            plugin=PLUGIN,
        ),
        MessageType(
            "poll.close",
            roles=HOSTS,
            fields={"poll_id": str},
            required=frozenset({"poll_id"}),
            default_rate=STAFF_RATE,
            plugin=PLUGIN,
        ),
    ]
