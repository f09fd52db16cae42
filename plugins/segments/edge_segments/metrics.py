"""Business metrics of a room, from paid orders and viewer profiles.

| metric | formula |
|---|---|
| ``buyers`` | viewers with at least one paid, not refunded order |
| ``repurchase_rate`` | buyers with >= 2 such orders / buyers |
| ``purchase_frequency`` | such orders / buyers |
| ``revenue_base`` | sum of their ``amount_base`` |
| ``clv_mean_base`` | revenue_base / buyers (mean customer lifetime value, base currency) |
| ``member_monthly_activity`` | known viewers seen in the last ``active_days`` / known viewers |

A ratio with a zero denominator is ``null`` (JSON) / empty (CSV). Amounts are
decimal strings in the node's base currency (as commerce's ``amount_base``);
means are rounded half-even to 2 decimals.
"""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from .engine import SEGMENTS, micros_to_str
from .store import Store

FIELDS = (
    "room", "at", "known_viewers", "active_viewers", "active_days", "member_monthly_activity",
    "buyers", "repeat_buyers", "repurchase_rate", "orders", "purchase_frequency", "revenue_base",
    "clv_mean_base", *(f"segment_{s}" for s in SEGMENTS),
)


def _ratio(numerator: int, denominator: int) -> float | None:
    return None if denominator == 0 else round(numerator / denominator, 6)


def compute(store: Store, room: str, now: float, active_days: float) -> dict[str, Any]:
    buyers, repeat, orders, micros = store.order_stats(room)
    known, active = store.viewer_stats(room, now - active_days * 86400.0)
    clv = None
    if buyers:
        mean = (Decimal(micros) / Decimal(buyers)).scaleb(-6)
        clv = str(mean.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN))
    return {
        "room": room,
        "at": now,
        "known_viewers": known,
        "active_viewers": active,
        "active_days": active_days,
        "member_monthly_activity": _ratio(active, known),
        "buyers": buyers,
        "repeat_buyers": repeat,
        "repurchase_rate": _ratio(repeat, buyers),
        "orders": orders,
        "purchase_frequency": _ratio(orders, buyers),
        "revenue_base": micros_to_str(micros),
        "clv_mean_base": clv,
        **{f"segment_{s}": store.member_count(room, s) for s in SEGMENTS},
    }


def to_csv(metrics: dict[str, Any]) -> str:
    """Two columns, ``metric,value``, one row per metric (``FIELDS`` order)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("metric", "value"))
    for name in FIELDS:
        value = metrics[name]
        writer.writerow((name, "" if value is None else value))
    return out.getvalue()
