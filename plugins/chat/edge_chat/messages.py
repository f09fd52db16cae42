"""The message types the chat plugin accepts from clients (``edge_message_types``).

The router enforces what is declared here before the plugin sees a message:
roles (``forbidden``), data field types (``invalid_data``) and the per-role
rate limits (``rate_limited``).
"""

from __future__ import annotations

from edge.messaging.envelope import ALL_ROLES, MessageType

from .config import ChatConfig

PLUGIN = "chat"
MODERATORS = frozenset({"host", "cohost", "moderator"})  # admin passes every role check
STAFF = MODERATORS | {"admin"}
LIKE_RATE = (50, 10.0)  # likes are bursty; the per-connection floor is the same


def _moderation(
    name: str, fields: dict[str, type], required: set[str], broadcast: bool, config: ChatConfig
) -> MessageType:
    return MessageType(
        name,
        roles=MODERATORS,
        fields=fields,
        required=frozenset(required),
        default_rate=config.staff_rate,
        broadcast=broadcast,
        plugin=PLUGIN,
    )


def message_types(config: ChatConfig) -> list[MessageType]:
    staff = {role: config.staff_rate for role in STAFF}
    return [
        MessageType(
            "chat.send",
            roles=ALL_ROLES,
            fields={"text": str},
            required=frozenset({"text"}),
            rate={"viewer": config.viewer_rate, **staff},
            default_rate=config.viewer_rate,
            broadcast=True,
            plugin=PLUGIN,
        ),
        MessageType("like", roles=ALL_ROLES, fields={"count": int}, default_rate=LIKE_RATE, plugin=PLUGIN),
        _moderation("chat.delete", {"message_id": str}, {"message_id"}, True, config),
        _moderation("mod.mute", {"identity": str, "seconds": int}, {"identity"}, True, config),
        _moderation("mod.unmute", {"identity": str}, {"identity"}, True, config),
        _moderation("mod.keywords", {"add": list, "remove": list}, set(), False, config),
        _moderation("mod.slowmode", {"seconds": int}, {"seconds"}, True, config),
    ]
