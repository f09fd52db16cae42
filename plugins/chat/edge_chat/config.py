"""The ``[plugins.chat]`` section: defaults, validation, one typed record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# Strings in an envelope's data are capped by the node at this length.
MAX_STRING = 1000


@dataclass(frozen=True, slots=True)
class ChatConfig:
    history_size: int = 50
    viewer_rate: tuple[int, float] = (20, 30.0)
    staff_rate: tuple[int, float] = (60, 30.0)
    welcome_text: str = "Welcome!"
    max_text: int = 500
    mute_seconds: int = 600


KEYS = frozenset(ChatConfig.__dataclass_fields__)


def _int(section: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return value


def _rate(section: Mapping[str, Any], key: str) -> tuple[int, float]:
    value = section[key]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{key} must be [messages, seconds], got {value!r}")
    count, seconds = value
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{key}: messages must be a positive integer, got {count!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"{key}: seconds must be a positive number, got {seconds!r}")
    return count, float(seconds)


def parse_config(section: Mapping[str, Any]) -> ChatConfig:
    """A ``ChatConfig`` from the raw TOML section; ``ValueError`` names a bad key."""
    unknown = set(section) - KEYS
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(KEYS))})")
    values: dict[str, Any] = {}
    if "history_size" in section:
        values["history_size"] = _int(section, "history_size", 0, 1000)
    if "max_text" in section:
        values["max_text"] = _int(section, "max_text", 1, MAX_STRING)
    if "mute_seconds" in section:
        values["mute_seconds"] = _int(section, "mute_seconds", 1, 7 * 86400)
    for key in ("viewer_rate", "staff_rate"):
        if key in section:
            values[key] = _rate(section, key)
    if "welcome_text" in section:
        text = section["welcome_text"]
        if not isinstance(text, str) or len(text) > MAX_STRING:
            raise ValueError(f"welcome_text must be a string of at most {MAX_STRING} characters")
        values["welcome_text"] = text
    return ChatConfig(**values)
