"""The message types the commerce plugin accepts from clients (``edge_message_types``).

The router enforces what is declared here before the plugin sees a message:
roles (``forbidden``), data field types (``invalid_data``) and the per-role
rate limits (``rate_limited``). None of them is broadcast as sent: the plugin
answers the sender and sends the room its own envelopes.
"""

from __future__ import annotations

from edge.messaging.envelope import ALL_ROLES, MessageType

from .config import CommerceConfig

PLUGIN = "commerce"
VIEWERS = frozenset({"viewer"})  # admin passes every role check
PINNERS = frozenset({"host", "cohost"})
STAFF = frozenset({"host", "cohost", "moderator", "admin"})


def message_types(config: CommerceConfig) -> list[MessageType]:
    staff = {role: config.staff_rate for role in STAFF}
    return [
        MessageType(
            "product.click",
            roles=VIEWERS,
            fields={"sku": str},
            required=frozenset({"sku"}),
            rate={"viewer": config.click_rate},
            default_rate=config.click_rate,
            plugin=PLUGIN,
        ),
        MessageType(
            "order.place",
            roles=VIEWERS,
            fields={"sku": str, "quantity": int, "key": str},
            required=frozenset({"sku", "key"}),
            rate={"viewer": config.order_rate},
            default_rate=config.order_rate,
            plugin=PLUGIN,
        ),
        MessageType(
            "order.cancel",
            roles=VIEWERS | STAFF,
            fields={"order_id": str},
            required=frozenset({"order_id"}),
            rate={"viewer": config.order_rate, **staff},
            default_rate=config.order_rate,
            plugin=PLUGIN,
        ),
        MessageType(
            "product.pin",
            roles=PINNERS,
            fields={"sku": str, "countdown": int},
            required=frozenset({"sku"}),
            default_rate=config.staff_rate,
            plugin=PLUGIN,
        ),
        MessageType(
            "product.unpin",
            roles=PINNERS,
            fields={"sku": str},
            default_rate=config.staff_rate,
            plugin=PLUGIN,
        ),
        MessageType(
            "currency.set",
            roles=ALL_ROLES,
            fields={"currency": str},
            required=frozenset({"currency"}),
            default_rate=(10, 10.0),
            plugin=PLUGIN,
        ),
    ]
