"""The ``[plugins.aftersales]`` section: defaults, validation, one typed record."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

# Strings in an envelope's data are capped by the node at this length.
MAX_STRING = 1000
REASON = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

DEFAULT_REASONS = (
    "not_received",
    "damaged",
    "wrong_item",
    "how_to_use",
    "size_fit",
    "return_refund",
    "question",
    "other",
)


@dataclass(frozen=True, slots=True)
class AftersalesConfig:
    # An answer within this many seconds is the goal (seed figure: an answer
    # within 30 s roughly doubles the order probability).
    first_response_target_seconds: float = 30.0
    # The median covers the last N tickets ...
    median_window: int = 50
    # ... and alerts only once at least this many of them are decided.
    alert_min_tickets: int = 5
    # FAQ match score (0-1) at or above which a question is answered from the FAQ.
    faq_threshold: float = 0.3
    reasons: tuple[str, ...] = DEFAULT_REASONS
    # Longest ticket text / message / FAQ answer.
    max_text: int = MAX_STRING
    # Open (not closed) tickets one buyer may have at a time.
    max_open_per_buyer: int = 20
    # FAQ entries per room.
    max_faq_per_room: int = 200
    # How long a clip lookup (recordings service) may take before the answer goes without it.
    clip_timeout_seconds: float = 0.2


KEYS = frozenset(AftersalesConfig.__dataclass_fields__)


def _int(section: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return value


def _number(section: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise ValueError(f"{key} must be a number above {low} and at most {high}, got {value!r}")
    return float(value)


def parse_config(section: Mapping[str, Any]) -> AftersalesConfig:
    """An ``AftersalesConfig`` from the raw TOML section; ``ValueError`` names a bad key."""
    unknown = set(section) - KEYS
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(KEYS))})")
    values: dict[str, Any] = {}
    if "first_response_target_seconds" in section:
        values["first_response_target_seconds"] = _number(section, "first_response_target_seconds", 0, 86400)
    if "median_window" in section:
        values["median_window"] = _int(section, "median_window", 1, 10000)
    if "alert_min_tickets" in section:
        values["alert_min_tickets"] = _int(section, "alert_min_tickets", 1, 10000)
    if values.get("alert_min_tickets", 5) > values.get("median_window", 50):
        raise ValueError("alert_min_tickets must not exceed median_window")
    if "faq_threshold" in section:
        values["faq_threshold"] = _number(section, "faq_threshold", 0, 1)
    if "max_text" in section:
        values["max_text"] = _int(section, "max_text", 1, MAX_STRING)
    if "max_open_per_buyer" in section:
        values["max_open_per_buyer"] = _int(section, "max_open_per_buyer", 1, 1000)
    if "max_faq_per_room" in section:
        values["max_faq_per_room"] = _int(section, "max_faq_per_room", 1, 10000)
    if "clip_timeout_seconds" in section:
        values["clip_timeout_seconds"] = _number(section, "clip_timeout_seconds", 0, 10)
    if "reasons" in section:
        reasons = section["reasons"]
        if (
            not isinstance(reasons, list)
            or not reasons
            or not all(isinstance(r, str) and REASON.fullmatch(r) for r in reasons)
        ):
            raise ValueError("reasons must be a non-empty list of lower-case names ([a-z][a-z0-9_]{0,31})")
        if "question" not in reasons:
            raise ValueError("reasons must include 'question' (tickets opened from unanswered questions)")
        values["reasons"] = tuple(dict.fromkeys(reasons))
    return AftersalesConfig(**values)
