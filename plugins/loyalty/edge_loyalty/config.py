"""The ``[plugins.loyalty]`` section: defaults, validation, one typed record.

Every key is optional; docs/loyalty.md lists them with their defaults. A bad
key is a ``ValueError`` naming it, which stops the node (``edge_configure``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from .clock import check_zone

PRIVILEGES = frozenset({"priority_shipping", "priority_service", "early_access", "member_price"})
DOWNGRADES = ("period", "never", "immediate")
PERIODS = ("month", "quarter", "year")
MESSAGE_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
TIER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,31}$")
ROLES = frozenset({"viewer", "host", "cohost", "moderator", "service", "admin"})


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    growth: int  # growth value from which a member holds this tier
    privileges: frozenset[str]


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier("bronze", 0, frozenset()),
    Tier("silver", 100, frozenset({"member_price"})),
    Tier("gold", 500, frozenset({"member_price", "early_access"})),
    Tier("platinum", 2000, frozenset({"member_price", "early_access", "priority_shipping"})),
    Tier("diamond", 5000, frozenset(PRIVILEGES)),
)


@dataclass(frozen=True, slots=True)
class LoyaltyConfig:
    # watching (node-measured WHEP media time)
    watch_block_seconds: int = 600
    watch_points: int = 1
    watch_growth: int = 0
    watch_daily_cap: int = 0  # blocks per member per local day; 0 = no cap
    # purchases (commerce.order_paid): per unit of amount_base, rounded down
    purchase_growth_per_unit: Decimal = Decimal(1)
    purchase_points_per_unit: Decimal = Decimal(0)
    # daily check-in (loyalty.checkin)
    checkin_points: int = 1
    checkin_growth: int = 1
    # shares (loyalty.share)
    share_points: int = 1
    share_growth: int = 1
    share_daily_cap: int = 3
    # interactions (chat, likes)
    interaction_points: int = 0
    interaction_growth: int = 1
    interaction_daily_cap: int = 20
    interaction_types: tuple[str, ...] = ("chat.send", "like")
    # birthday gift, once a year on the member's birthday in their time zone
    birthday_points: int = 50
    birthday_growth: int = 0
    # points expiry: months after earning; 0 = never
    points_expiry_months: int = 12
    # tiers and their downgrade policy
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    downgrade: str = "period"
    downgrade_period: str = "month"
    downgrade_grace_periods: int = 1
    # who earns (watch, interactions) and may send the loyalty.* messages
    earning_roles: frozenset[str] = frozenset({"viewer"})
    default_timezone: str = "UTC"
    # housekeeping
    sweep_seconds: int = 60  # expiry, birthdays and tier downgrades every N s
    cache_size: int = 100_000  # members whose balance and tier are kept in memory
    durable: bool = True  # SQLite synchronous=FULL (else NORMAL)
    notify: bool = True  # send loyalty.earned to the member's room on watch/purchase credits
    rate: tuple[int, float] = (10, 60.0)  # loyalty.* messages per member: count per seconds

    def rule(self, rule: str) -> tuple[int, int]:
        """(points, growth) of one occurrence of a flat-rate rule."""
        return {
            "watch": (self.watch_points, self.watch_growth),
            "checkin": (self.checkin_points, self.checkin_growth),
            "share": (self.share_points, self.share_growth),
            "interaction": (self.interaction_points, self.interaction_growth),
            "birthday": (self.birthday_points, self.birthday_growth),
        }[rule]

    def cap(self, rule: str) -> int:
        """Occurrences per member per local day (0 = no cap)."""
        return {
            "watch": self.watch_daily_cap,
            "share": self.share_daily_cap,
            "interaction": self.interaction_daily_cap,
        }.get(rule, 0)


KEYS = frozenset(LoyaltyConfig.__dataclass_fields__)


def _int(section: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return value


def _decimal(section: Mapping[str, Any], key: str) -> Decimal:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{key} must be a number, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{key} must be a number, got {value!r}") from None
    if not number.is_finite() or number < 0 or number > 1_000_000:
        raise ValueError(f"{key} must be a number from 0 to 1000000, got {value!r}")
    return number


def _choice(section: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = section[key]
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _tiers(value: Any) -> tuple[Tier, ...]:
    if not isinstance(value, list) or not 2 <= len(value) <= 10:
        raise ValueError("tiers must be a list of 2 to 10 tables {name, growth, privileges}")
    tiers: list[Tier] = []
    for i, raw in enumerate(value):
        where = f"tiers[{i}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be a table {{name, growth, privileges}}")
        unknown = set(raw) - {"name", "growth", "privileges"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        name = raw.get("name")
        if not isinstance(name, str) or not TIER_NAME.fullmatch(name):
            raise ValueError(f"{where}.name must be 1-32 letters, digits, ' ', '_', '.', '-', got {name!r}")
        growth = raw.get("growth")
        if isinstance(growth, bool) or not isinstance(growth, int) or growth < 0:
            raise ValueError(f"{where}.growth must be a non-negative integer, got {growth!r}")
        privileges = raw.get("privileges", [])
        if not isinstance(privileges, list) or not all(isinstance(p, str) for p in privileges):
            raise ValueError(f"{where}.privileges must be a list of strings")
        bad = set(privileges) - PRIVILEGES
        if bad:
            raise ValueError(
                f"{where}.privileges: unknown {', '.join(sorted(bad))} (known: {', '.join(sorted(PRIVILEGES))})"
            )
        tiers.append(Tier(name, growth, frozenset(privileges)))
    if tiers[0].growth != 0:
        raise ValueError("tiers[0].growth must be 0: every member holds the first tier")
    for low, high in zip(tiers, tiers[1:]):
        if high.growth <= low.growth:
            raise ValueError(f"tiers: growth thresholds must increase ({low.name} {low.growth}, {high.name} {high.growth})")
    if len({t.name for t in tiers}) != len(tiers):
        raise ValueError("tiers: names must be distinct")
    return tuple(tiers)


def parse_config(section: Mapping[str, Any]) -> LoyaltyConfig:
    """A ``LoyaltyConfig`` from the raw TOML section; ``ValueError`` names a bad key."""
    unknown = set(section) - KEYS
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(KEYS))})")
    values: dict[str, Any] = {}
    if "watch_block_seconds" in section:
        values["watch_block_seconds"] = _int(section, "watch_block_seconds", 1, 86400)
    for key in (
        "watch_points", "watch_growth", "checkin_points", "checkin_growth", "share_points",
        "share_growth", "interaction_points", "interaction_growth", "birthday_points", "birthday_growth",
    ):
        if key in section:
            values[key] = _int(section, key, 0, 1_000_000)
    for key in ("watch_daily_cap", "share_daily_cap", "interaction_daily_cap"):
        if key in section:
            values[key] = _int(section, key, 0, 100_000)
    for key in ("purchase_growth_per_unit", "purchase_points_per_unit"):
        if key in section:
            values[key] = _decimal(section, key)
    if "interaction_types" in section:
        types = section["interaction_types"]
        if not isinstance(types, list) or not all(isinstance(t, str) and MESSAGE_TYPE.fullmatch(t) for t in types):
            raise ValueError(f"interaction_types must be a list of message type names, got {types!r}")
        values["interaction_types"] = tuple(types)
    if "points_expiry_months" in section:
        values["points_expiry_months"] = _int(section, "points_expiry_months", 0, 120)
    if "tiers" in section:
        values["tiers"] = _tiers(section["tiers"])
    if "downgrade" in section:
        values["downgrade"] = _choice(section, "downgrade", DOWNGRADES)
    if "downgrade_period" in section:
        values["downgrade_period"] = _choice(section, "downgrade_period", PERIODS)
    if "downgrade_grace_periods" in section:
        values["downgrade_grace_periods"] = _int(section, "downgrade_grace_periods", 0, 24)
    if "earning_roles" in section:
        roles = section["earning_roles"]
        if not isinstance(roles, list) or not roles or not set(roles) <= ROLES:
            raise ValueError(f"earning_roles must be a non-empty list of roles ({', '.join(sorted(ROLES))}), got {roles!r}")
        values["earning_roles"] = frozenset(roles)
    if "default_timezone" in section:
        tz = section["default_timezone"]
        if not isinstance(tz, str) or not check_zone(tz):
            raise ValueError(f"default_timezone must be an IANA time zone name, got {tz!r}")
        values["default_timezone"] = tz
    if "sweep_seconds" in section:
        values["sweep_seconds"] = _int(section, "sweep_seconds", 1, 3600)
    if "cache_size" in section:
        values["cache_size"] = _int(section, "cache_size", 100, 10_000_000)
    for key in ("durable", "notify"):
        if key in section:
            if not isinstance(section[key], bool):
                raise ValueError(f"{key} must be true or false, got {section[key]!r}")
            values[key] = section[key]
    if "rate" in section:
        value = section["rate"]
        if (
            not isinstance(value, list) or len(value) != 2
            or isinstance(value[0], bool) or not isinstance(value[0], int) or value[0] < 1
            or isinstance(value[1], bool) or not isinstance(value[1], (int, float)) or value[1] <= 0
        ):
            raise ValueError(f"rate must be [messages, seconds], got {value!r}")
        values["rate"] = (value[0], float(value[1]))
    return LoyaltyConfig(**values)
