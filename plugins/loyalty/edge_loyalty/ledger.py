"""The points ledger's arithmetic: lots, FIFO consumption and what has expired.

Pure functions over a member's points entries (in ledger order); the store
feeds them rows and appends what they say. Vocabulary:

* a **lot** is a positive ``earn`` or ``adjust`` entry: points with an
  ``expires_at`` (``None``: never);
* a lot is made smaller by a ``reversal`` that references it (a refunded
  purchase) and by ``expire`` entries that reference it;
* **consumption** is every other debit (``redeem``, a negative ``adjust``) net
  of the reversals that reference those (a refund that gives points back);
* consumption is allocated to lots first-expiring-first (FIFO by expiry, then
  by ledger order), so a member always spends the points closest to expiry;
* a lot whose ``expires_at`` has passed expires its *unconsumed remainder*
  with one ``expire`` entry: never more than the lot, never before its time,
  and never below a zero balance.

Growth value has no lots: it never expires (tiers have their own policy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    """One points entry as the ledger holds it (only what the arithmetic needs)."""

    seq: int
    event_id: str
    kind: str  # earn | redeem | adjust | expire | reversal
    amount: int
    expires_at: float | None = None
    ref: str | None = None  # expire, reversal: the event they act on


@dataclass(slots=True)
class Lot:
    seq: int
    event_id: str
    amount: int  # as earned
    expires_at: float | None
    reversed: int = 0  # points taken back by reversals (>= 0)
    expired: int = 0  # points taken by expire entries (>= 0)
    expire_entries: int = 0
    consumed: int = 0  # allocated consumption (computed)

    @property
    def capacity(self) -> int:
        return max(0, self.amount - self.reversed - self.expired)

    @property
    def remainder(self) -> int:
        return self.capacity - self.consumed

    def order(self) -> tuple[float, int]:
        return (math.inf if self.expires_at is None else self.expires_at, self.seq)


def is_lot(row: Row) -> bool:
    return row.kind in ("earn", "adjust") and row.amount > 0


def lots(rows: list[Row]) -> list[Lot]:
    """The member's lots with FIFO consumption allocated, first-expiring first."""
    by_event: dict[str, Lot] = {}
    kinds: dict[str, str] = {}  # event id -> "lot" | "debit"
    consumption = 0
    for row in rows:
        if is_lot(row):
            by_event[row.event_id] = Lot(row.seq, row.event_id, row.amount, row.expires_at)
            kinds[row.event_id] = "lot"
        elif row.kind == "expire":
            lot = by_event.get(row.ref or "")
            if lot is not None:
                lot.expired += -row.amount
                lot.expire_entries += 1
        elif row.kind == "reversal":
            target = kinds.get(row.ref or "")
            if target == "lot":
                by_event[row.ref or ""].reversed += -row.amount
            else:  # a reversed debit gives consumption back
                consumption += -row.amount
        else:  # redeem, negative adjust
            kinds[row.event_id] = "debit"
            consumption += -row.amount
    ordered = sorted(by_event.values(), key=Lot.order)
    left = max(0, consumption)
    for lot in ordered:
        take = min(lot.capacity, left)
        lot.consumed = take
        left -= take
    return ordered


def due_expiries(rows: list[Row], now: float) -> list[tuple[Lot, int]]:
    """(lot, points) to expire at ``now``: lots past their time with a remainder."""
    return [
        (lot, lot.remainder)
        for lot in lots(rows)
        if lot.expires_at is not None and lot.expires_at <= now and lot.remainder > 0
    ]


def upcoming(rows: list[Row], now: float, limit: int = 3) -> list[dict[str, float | int]]:
    """The next lots to expire after ``now``: [{"at", "points"}], soonest first."""
    out = [
        {"at": lot.expires_at, "points": lot.remainder}
        for lot in lots(rows)
        if lot.expires_at is not None and lot.expires_at > now and lot.remainder > 0
    ]
    return out[:limit]  # type: ignore[return-value]


def reversible(rows: list[Row], event_id: str) -> int:
    """How many points a reversal of the lot ``event_id`` takes back: what has not expired."""
    for lot in lots(rows):
        if lot.event_id == event_id:
            return max(0, lot.amount - lot.reversed - lot.expired)
    return 0
