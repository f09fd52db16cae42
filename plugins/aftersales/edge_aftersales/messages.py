"""The message types the after-sales plugin accepts from clients (``edge_message_types``).

The router enforces what is declared here before the plugin sees a message:
roles (``forbidden``), data field types (``invalid_data``) and the per-role
rate limits (``rate_limited``). Ownership (only a ticket's buyer or an agent
of its room) is the plugin's check.
"""

from __future__ import annotations

from edge.messaging.envelope import ALL_ROLES, MessageType

PLUGIN = "aftersales"
# Who answers tickets: the `service` role (admin passes every role check).
AGENT_ROLES = frozenset({"service", "admin"})
AGENT_RATE = (120, 30.0)


def message_types() -> list[MessageType]:
    agents = {role: AGENT_RATE for role in AGENT_ROLES}
    return [
        MessageType(
            "aftersales.open",
            roles=ALL_ROLES,
            fields={"order_id": str, "reason": str, "text": str},
            required=frozenset({"order_id", "reason", "text"}),
            default_rate=(5, 60.0),
            plugin=PLUGIN,
        ),
        MessageType(
            "aftersales.message",
            roles=ALL_ROLES,
            fields={"ticket_id": str, "text": str},
            required=frozenset({"ticket_id", "text"}),
            rate=agents,
            default_rate=(20, 30.0),
            plugin=PLUGIN,
        ),
        MessageType(
            "aftersales.close",
            roles=frozenset({"service"}),
            fields={"ticket_id": str, "resolution": str},
            required=frozenset({"ticket_id", "resolution"}),
            default_rate=AGENT_RATE,
            plugin=PLUGIN,
        ),
        MessageType(
            "aftersales.ask",
            roles=ALL_ROLES,
            fields={"text": str, "sku": str, "order_id": str},
            required=frozenset({"text"}),
            rate=agents,
            default_rate=(10, 30.0),
            plugin=PLUGIN,
        ),
        # The sender's own orders and tickets (the viewer page's after-sales panel).
        MessageType("aftersales.mine", roles=ALL_ROLES, default_rate=(10, 30.0), plugin=PLUGIN),
        # One ticket with its conversation: its buyer, or an agent of its room.
        MessageType(
            "aftersales.history",
            roles=ALL_ROLES,
            fields={"ticket_id": str},
            required=frozenset({"ticket_id"}),
            rate=agents,
            default_rate=(20, 30.0),
            plugin=PLUGIN,
        ),
        # The room's queue of open tickets, priority first (agents).
        MessageType(
            "aftersales.queue", roles=frozenset({"service"}), default_rate=AGENT_RATE, plugin=PLUGIN
        ),
    ]
