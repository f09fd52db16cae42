"""Tiers: which tier a member holds, from growth value and the downgrade policy.

Levels count from 1 (the first tier, held by everyone) to ``len(tiers)``.
A member *qualifies* for the highest tier whose growth threshold their growth
value reaches. Upgrades are immediate. Downgrades follow the policy:

* ``immediate``: the held tier is always the qualifying tier;
* ``never``: the held tier never goes down;
* ``period``: when growth falls below the held tier's threshold (a refund, an
  admin correction), the member keeps the tier and is marked *below since* that
  moment; at the first period boundary (month, quarter or year, in the member's
  time zone) a grace of ``grace`` periods starts, and when the boundary after
  the grace is reached still below, the member drops to the tier they qualify
  for. Growing back to the threshold clears the mark.

Everything here is pure: the store persists ``(level, below_since)`` and these
functions say what they become, so a read computes the same answer as the
periodic sweep would write.
"""

from __future__ import annotations

from dataclasses import dataclass

from .clock import period_index
from .config import Tier


@dataclass(frozen=True, slots=True)
class TierInfo:
    """What other plugins read through ``edge.service("loyalty").tier(identity)``."""

    name: str
    level: int
    privileges: frozenset[str]


@dataclass(frozen=True, slots=True)
class TierPolicy:
    tiers: tuple[Tier, ...]
    downgrade: str = "period"
    period: str = "month"
    grace: int = 1

    def qualifying(self, growth: int) -> int:
        level = 1
        for i, tier in enumerate(self.tiers, start=1):
            if growth >= tier.growth:
                level = i
        return level

    def info(self, level: int) -> TierInfo:
        level = max(1, min(level, len(self.tiers)))
        tier = self.tiers[level - 1]
        return TierInfo(tier.name, level, tier.privileges)

    def after_growth(self, level: int, below_since: float | None, growth: int, now: float) -> tuple[int, float | None]:
        """The held tier right after the member's growth value changed to ``growth``."""
        q = self.qualifying(growth)
        if self.downgrade == "immediate" or q >= level:
            return q, None
        if self.downgrade == "never":
            return level, None
        return level, (below_since if below_since is not None else now)

    def held(self, level: int, below_since: float | None, growth: int, now: float, tz: str) -> tuple[int, float | None]:
        """The held tier at ``now`` (applies a downgrade that is due)."""
        level, below_since = self.after_growth(level, below_since, growth, now if below_since is None else below_since)
        if below_since is None or self.downgrade != "period":
            return level, below_since
        elapsed = period_index(now, tz, self.period) - period_index(below_since, tz, self.period)
        if elapsed >= 1 + self.grace:
            return self.qualifying(growth), None
        return level, below_since

    def next_tier(self, level: int, growth: int) -> dict[str, object] | None:
        if level >= len(self.tiers):
            return None
        tier = self.tiers[level]
        return {"name": tier.name, "level": level + 1, "growth": tier.growth, "growth_needed": max(0, tier.growth - growth)}
