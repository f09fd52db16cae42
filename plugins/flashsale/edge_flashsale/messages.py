"""The message types the flash-sale plugin accepts from clients (``edge_message_types``).

The router enforces what is declared here before the plugin sees a message:
roles (``forbidden``), data field types (``invalid_data``) and the per-role
rate limits (``rate_limited``).
"""

from __future__ import annotations

from edge.messaging.envelope import MessageType

from .config import FlashSaleConfig

PLUGIN = "flashsale"
BUYERS = frozenset({"viewer"})  # admin passes every role check

RESERVE = "sale.reserve"
PAY = "sale.pay"
CANCEL = "sale.cancel"


def message_types(config: FlashSaleConfig) -> list[MessageType]:
    types = [
        MessageType(
            RESERVE,
            roles=BUYERS,
            fields={"sku": str, "quantity": int, "key": str},
            required=frozenset({"sku", "key"}),
            rate={"viewer": config.reserve_rate},
            default_rate=config.reserve_rate,
            plugin=PLUGIN,
        ),
        MessageType(
            CANCEL,
            roles=BUYERS,
            fields={"order_id": str},
            required=frozenset({"order_id"}),
            rate={"viewer": config.order_rate},
            default_rate=config.order_rate,
            plugin=PLUGIN,
        ),
    ]
    if config.client_payment:
        types.append(
            MessageType(
                PAY,
                roles=BUYERS,
                fields={"order_id": str},
                required=frozenset({"order_id"}),
                rate={"viewer": config.order_rate},
                default_rate=config.order_rate,
                plugin=PLUGIN,
            )
        )
    return types
