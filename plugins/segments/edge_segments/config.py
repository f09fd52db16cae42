"""The ``[plugins.segments]`` section: defaults, validation, one typed record.

Layout (every key optional; docs/segments.md has the full table)::

    [plugins.segments]
    notifiers = ["inroom"]              # delivery channels, in order (service names)
    targeted_min_clicks = 3
    ...
    [plugins.segments.high_value]       # thresholds and actions of each segment
    min_watch_minutes = 30
    min_clicks = 2
    actions = ["members_live_invite", "time_limited_discount"]
    [plugins.segments.new_buyer]
    days = 7
    [plugins.segments.dormant]
    days = 30
    [plugins.segments.coupons.welcome]  # one table per coupon reason
    percent_off = 5
    [plugins.segments.actions.members_live_invite]   # change or add actions
    url = "https://shop.example/members-live"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .engine import Rules

MAX_STRING = 1000  # the node caps strings in envelopes at this length
KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")  # an envelope type
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SERVICE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PREFIX = re.compile(r"^[A-Z0-9]{0,8}$")

SEGMENT_NAMES = ("high_value", "new_buyer", "dormant")
COUPON_REASONS = ("welcome", "targeted", "referral_invitee", "referral_referrer")


@dataclass(frozen=True, slots=True)
class CouponRule:
    percent_off: int
    valid_hours: float
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Action:
    """What happens once per entry into a segment: a notification or a coupon."""

    name: str
    type: str  # "notify" | "coupon"
    kind: str  # the notification kind (= the in-room envelope type)
    text: str = ""
    url: str = ""
    percent_off: int = 0  # coupon actions
    valid_hours: float = 0.0


DEFAULT_COUPONS: dict[str, CouponRule] = {
    "welcome": CouponRule(5, 72.0),
    "targeted": CouponRule(10, 2.0),
    "referral_invitee": CouponRule(10, 720.0),
    "referral_referrer": CouponRule(10, 720.0),
}

DEFAULT_ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("members_live_invite", "notify", "segments.members_live_invite",
               "You are invited to our members-only live."),
        Action("time_limited_discount", "coupon", "coupon.granted", "A discount just for you.",
               percent_off=15, valid_hours=24.0),
        Action("bundle_recommendation", "notify", "segments.bundle_recommendation",
               "Complete your look: bundles that go with your purchase."),
        Action("membership_onboarding", "notify", "segments.membership_onboarding",
               "Welcome to the club: here is what membership gives you."),
        Action("highlight_replay", "notify", "segments.highlight_replay",
               "You missed some great moments: watch the highlights."),
        Action("points_reminder", "notify", "segments.points_reminder",
               "You have points waiting to be redeemed."),
    )
}

DEFAULT_SEGMENT_ACTIONS: dict[str, tuple[str, ...]] = {
    "high_value": ("members_live_invite", "time_limited_discount"),
    "new_buyer": ("bundle_recommendation", "membership_onboarding"),
    "dormant": ("highlight_replay", "points_reminder"),
}


@dataclass(frozen=True, slots=True)
class SegmentsConfig:
    rules: Rules = field(default_factory=Rules)
    segment_actions: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_SEGMENT_ACTIONS)
    )
    actions: Mapping[str, Action] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    coupons: Mapping[str, CouponRule] = field(default_factory=lambda: dict(DEFAULT_COUPONS))
    notifiers: tuple[str, ...] = ("inroom",)
    notify_timeout_ms: int = 5000
    pending_hours: float = 72.0
    # chat.send arrives as chat.message when the chat plugin (called before this
    # plugin's trylast hook) has transformed it: both are counted, once.
    interaction_types: frozenset[str] = frozenset({"chat.send", "chat.message", "like"})
    active_days: float = 30.0
    sweep_seconds: float = 60.0
    idle_seconds: float = 600.0
    events_retention_days: float = 90.0
    code_prefix: str = "SEG"
    poll_live_results: bool = True


TOP_KEYS = frozenset(
    {
        "notifiers", "notify_timeout_ms", "pending_hours", "interaction_types",
        "targeted_min_clicks", "active_days", "sweep_seconds", "idle_seconds",
        "events_retention_days", "code_prefix", "poll_live_results",
        "high_value", "new_buyer", "dormant", "coupons", "actions",
    }
)


def _number(value: Any, key: str, low: float, high: float, *, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        what = "an integer" if integer else "a number"
        raise ValueError(f"{key} must be {what} from {low} to {high}, got {value!r}")
    return value


def _string(value: Any, key: str, pattern: re.Pattern[str] | None = None, longest: int = MAX_STRING) -> str:
    if not isinstance(value, str) or len(value) > longest or (pattern and not pattern.fullmatch(value)):
        raise ValueError(f"{key} must be a string{' matching ' + pattern.pattern if pattern else ''} "
                         f"of at most {longest} characters, got {value!r}")
    return value


def _table(value: Any, key: str, known: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be a table, got {value!r}")
    unknown = set(value) - known
    if unknown:
        raise ValueError(f"{key}: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    return value


def _names(value: Any, key: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{key} must be a list of names, got {value!r}")
    return tuple(_string(v, f"{key}[]", pattern, 64) for v in value)


def _action(name: str, section: Any) -> Action:
    key = f"actions.{name}"
    if not NAME.fullmatch(name):
        raise ValueError(f"{key}: action names are lower-case letters, digits and '_'")
    section = _table(section, key, frozenset({"type", "kind", "text", "url", "percent_off", "valid_hours"}))
    base = DEFAULT_ACTIONS.get(name) or Action(name, "notify", f"segments.{name}")
    values: dict[str, Any] = {}
    if "type" in section:
        if section["type"] not in ("notify", "coupon"):
            raise ValueError(f"{key}.type must be \"notify\" or \"coupon\", got {section['type']!r}")
        values["type"] = section["type"]
    if "kind" in section:
        values["kind"] = _string(section["kind"], f"{key}.kind", KIND, 64)
    for text in ("text", "url"):
        if text in section:
            values[text] = _string(section[text], f"{key}.{text}")
    if "percent_off" in section:
        values["percent_off"] = _number(section["percent_off"], f"{key}.percent_off", 1, 100, integer=True)
    if "valid_hours" in section:
        values["valid_hours"] = float(_number(section["valid_hours"], f"{key}.valid_hours", 0.01, 8760))
    action = replace(base, **values)
    if action.type == "coupon":
        if action.percent_off < 1 or action.valid_hours <= 0:
            raise ValueError(f"{key}: a coupon action needs percent_off (1-100) and valid_hours")
        action = replace(action, kind="coupon.granted")
    return action


def parse_config(section: Mapping[str, Any]) -> SegmentsConfig:
    """A ``SegmentsConfig`` from the raw TOML section; ``ValueError`` names a bad key."""
    unknown = set(section) - TOP_KEYS
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(TOP_KEYS))})")
    values: dict[str, Any] = {}
    rules: dict[str, Any] = {}

    actions = dict(DEFAULT_ACTIONS)
    if "actions" in section:
        table = section["actions"]
        if not isinstance(table, Mapping):
            raise ValueError(f"actions must be a table of action tables, got {table!r}")
        for name, sub in table.items():
            actions[name] = _action(name, sub)
    values["actions"] = actions

    segment_actions = dict(DEFAULT_SEGMENT_ACTIONS)
    thresholds = {
        "high_value": {"min_watch_minutes": (0, 7 * 24 * 60, False), "min_clicks": (0, 1_000_000, True)},
        "new_buyer": {"days": (0, 3650, False)},
        "dormant": {"days": (0.0001, 3650, False)},
    }
    for segment, keys in thresholds.items():
        if segment not in section:
            continue
        sub = _table(section[segment], segment, frozenset(keys) | {"actions"})
        for key, (low, high, integer) in keys.items():
            if key in sub:
                rules[f"{segment}.{key}"] = _number(sub[key], f"{segment}.{key}", low, high, integer=integer)
        if "actions" in sub:
            segment_actions[segment] = _names(sub["actions"], f"{segment}.actions", NAME)
    for segment, names in segment_actions.items():
        for name in names:
            if name not in actions:
                raise ValueError(f"{segment}.actions: no action {name!r} (define [plugins.segments.actions.{name}])")
    values["segment_actions"] = segment_actions

    coupons = dict(DEFAULT_COUPONS)
    if "coupons" in section:
        table = _table(section["coupons"], "coupons", frozenset(COUPON_REASONS))
        for reason, sub in table.items():
            sub = _table(sub, f"coupons.{reason}", frozenset({"percent_off", "valid_hours", "enabled"}))
            rule, where = coupons[reason], f"coupons.{reason}"
            if "percent_off" in sub:
                percent = _number(sub["percent_off"], f"{where}.percent_off", 1, 100, integer=True)
                rule = replace(rule, percent_off=percent)
            if "valid_hours" in sub:
                hours = float(_number(sub["valid_hours"], f"{where}.valid_hours", 0.01, 8760))
                rule = replace(rule, valid_hours=hours)
            if "enabled" in sub:
                if not isinstance(sub["enabled"], bool):
                    raise ValueError(f"coupons.{reason}.enabled must be true or false")
                rule = replace(rule, enabled=sub["enabled"])
            coupons[reason] = rule
    values["coupons"] = coupons

    if "notifiers" in section:
        values["notifiers"] = _names(section["notifiers"], "notifiers", SERVICE)
    if "interaction_types" in section:
        types = _names(section["interaction_types"], "interaction_types", KIND)
        values["interaction_types"] = frozenset(types)
    if "notify_timeout_ms" in section:
        timeout = section["notify_timeout_ms"]
        values["notify_timeout_ms"] = _number(timeout, "notify_timeout_ms", 1, 600_000, integer=True)
    for key, low, high in (
        ("pending_hours", 0, 8760), ("active_days", 0.0001, 3650), ("sweep_seconds", 1, 86400),
        ("idle_seconds", 1, 86400 * 7), ("events_retention_days", 0.0001, 36500),
    ):
        if key in section:
            values[key] = float(_number(section[key], key, low, high))
    if "targeted_min_clicks" in section:
        clicks = section["targeted_min_clicks"]
        rules["targeted_min_clicks"] = _number(clicks, "targeted_min_clicks", 1, 1_000_000, integer=True)
    if "code_prefix" in section:
        values["code_prefix"] = _string(section["code_prefix"], "code_prefix", PREFIX, 8)
    if "poll_live_results" in section:
        if not isinstance(section["poll_live_results"], bool):
            raise ValueError("poll_live_results must be true or false")
        values["poll_live_results"] = section["poll_live_results"]

    values["rules"] = Rules(
        high_value_watch_seconds=float(rules.get("high_value.min_watch_minutes", 30)) * 60.0,
        high_value_min_clicks=int(rules.get("high_value.min_clicks", 2)),
        new_buyer_seconds=float(rules.get("new_buyer.days", 7)) * 86400.0,
        dormant_seconds=float(rules.get("dormant.days", 30)) * 86400.0,
        targeted_min_clicks=int(rules.get("targeted_min_clicks", 3)),
    )
    return SegmentsConfig(**values)
