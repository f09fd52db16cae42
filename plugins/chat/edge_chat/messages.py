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


def message_types(config: ChatConfig) -> list[MessageType]:
    staff = {role: config.staff_rate for role in STAFF}
    moderation = dict(roles=MODERATORS, default_rate=config.staff_rate, plugin=PLUGIN)
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
        MessageType(
            "chat.delete",
            fields={"message_id": str},
            required=frozenset({"message_id"}),
            broadcast=True,
            **moderation,  # type: ignore[arg-type]
        ),
        MessageType(
            "mod.mute",
            fields={"identity": str, "seconds": int},
            required=frozenset({"identity"}),
            broadcast=True,
            **moderation,  # type: ignore[arg-type]
        ),
        MessageType(
            "mod.unmute",
            fields={"identity": str},
            required=frozenset({"identity"}),
            broadcast=True,
            **moderation,  # type: ignore[arg-type]
        ),
        MessageType(
            "mod.keywords",
            fields={"add": list, "remove": list},
            **moderation,  # type: ignore[arg-type]
        ),
        MessageType(
            "mod.slowmode",
            fields={"seconds": int},
            required=frozenset({"seconds"}),
            broadcast=True,
            **moderation,  # type: ignore[arg-type]
        ),
    ]
