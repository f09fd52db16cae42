"""Room analytics: the events the plugin records and the formulas of ``/stats``.

Definitions (all per room, since the store began):

| metric | definition |
|---|---|
| views | viewer joins: ``edge_participant_joined`` with the role ``viewer`` (a rejoin is another view) |
| unique_viewers | distinct viewer identities among the views |
| clicks | accepted ``product.click`` messages |
| ctr | clicks / views |
| orders | accepted orders (``order.accepted``), whatever became of them |
| paid_orders | orders that were paid (refunded ones included) |
| gmv | sum of the paid orders' amounts, in the base currency (refunds not deducted) |
| refunds | sum of the refunded orders' amounts, in the base currency |
| gpm | gmv / views × 1000 (GMV per thousand views) |
| buyers | distinct identities with a paid order |
| conversion | buyers / unique_viewers |

A ratio whose denominator is 0 is 0. Views and clicks are buffered in memory
and written once a second (and before ``/stats`` answers), so a node crash may
lose the last second of them; orders are written before they are acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .currency import Rates


@dataclass(frozen=True, slots=True)
class RoomCounts:
    views: int = 0
    unique_viewers: int = 0
    clicks: int = 0
    orders: int = 0
    paid_orders: int = 0
    items_sold: int = 0
    gmv_minor: int = 0  # base currency
    refunds_minor: int = 0  # base currency
    buyers: int = 0


def ratio(numerator: float, denominator: float) -> float:
    return 0.0 if not denominator else numerator / denominator


def room_stats(room: str, counts: RoomCounts, rates: Rates) -> dict[str, Any]:
    """The ``GET /rooms/{room}/stats`` body."""
    gmv = rates.to_major(counts.gmv_minor, rates.base)
    return {
        "room": room,
        "currency": rates.base,
        "views": counts.views,
        "unique_viewers": counts.unique_viewers,
        "clicks": counts.clicks,
        "ctr": round(ratio(counts.clicks, counts.views), 6),
        "orders": counts.orders,
        "paid_orders": counts.paid_orders,
        "items_sold": counts.items_sold,
        "gmv": gmv,
        "gmv_minor": counts.gmv_minor,
        "refunds": rates.to_major(counts.refunds_minor, rates.base),
        "gpm": round(ratio(float(gmv) * 1000, counts.views), 6),
        "buyers": counts.buyers,
        "conversion": round(ratio(counts.buyers, counts.unique_viewers), 6),
    }


@dataclass(slots=True)
class EventBuffer:
    """Views and clicks waiting to be written (one transaction per flush)."""

    views: list[tuple[str, str, float]] = field(default_factory=list)  # room, identity, ts
    clicks: list[tuple[str, str, str, float]] = field(default_factory=list)  # room, identity, sku, ts

    def view(self, room: str, identity: str, ts: float) -> None:
        self.views.append((room, identity, ts))

    def click(self, room: str, identity: str, sku: str, ts: float) -> None:
        self.clicks.append((room, identity, sku, ts))

    def take(self) -> tuple[list[tuple[str, str, float]], list[tuple[str, str, str, float]]]:
        views, clicks = self.views, self.clicks
        self.views, self.clicks = [], []
        return views, clicks

    def __len__(self) -> int:
        return len(self.views) + len(self.clicks)
