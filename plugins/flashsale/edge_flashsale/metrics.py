"""The plugin's Prometheus metrics, on the node's registry (``/metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter

from .inventory import Order, Outcome, Sale


class FlashSaleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "edge_flashsale_attempts", "Reservation attempts by result (accepted or the reason code)",
            ["result"], registry=registry,
        )
        self.units = Counter("edge_flashsale_reserved_units", "Units reserved by accepted attempts",
                             registry=registry)
        self.expired = Counter("edge_flashsale_expired_orders", "Reservations whose hold ran out",
                               registry=registry)
        self._children: dict[str, Any] = {}

    def outcome(self, sale: Sale | None, outcome: Outcome) -> None:
        """A ``FlashSales.on_outcome`` listener."""
        result = "accepted" if outcome.accepted else outcome.reason or "rejected"
        child = self._children.get(result)
        if child is None:
            child = self._children[result] = self.attempts.labels(result)
        child.inc()
        if outcome.accepted:
            self.units.inc(outcome.quantity)

    def expired_orders(self, orders: list[Order]) -> None:
        if orders:
            self.expired.inc(len(orders))
