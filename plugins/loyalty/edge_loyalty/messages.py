"""The message types the loyalty plugin accepts from clients (``edge_message_types``).

| type | data | reply |
|---|---|---|
| ``loyalty.checkin`` | ``{}`` | ``loyalty.checked_in`` ``{day, points, growth, balance}``; ``already_checked_in`` |
| ``loyalty.share`` | ``{"channel": str}`` (optional) | ``loyalty.shared`` ``{credited, remaining, points, growth, balance}`` |
| ``loyalty.profile`` | ``{"birthday": "MM-DD" or "YYYY-MM-DD", "timezone": IANA name}`` (either) | ``loyalty.profile`` ``{birthday, timezone}``; ``invalid_data``, ``birthday_locked`` |
| ``loyalty.status`` | ``{}`` | ``loyalty.status`` (as ``GET /v1/plugins/loyalty/me``) |

Only members of ``earning_roles`` (default: viewers) may send them; none is broadcast.
"""

from __future__ import annotations

from edge.messaging.envelope import MessageType

from .config import LoyaltyConfig

PLUGIN = "loyalty"


def message_types(config: LoyaltyConfig) -> list[MessageType]:
    roles = frozenset(config.earning_roles)
    common = {"roles": roles, "default_rate": config.rate, "plugin": PLUGIN}
    return [
        MessageType("loyalty.checkin", **common),
        MessageType("loyalty.share", fields={"channel": str}, **common),
        MessageType("loyalty.profile", fields={"birthday": str, "timezone": str}, **common),
        MessageType("loyalty.status", **common),
    ]
