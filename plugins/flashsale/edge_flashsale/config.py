"""The ``[plugins.flashsale]`` section: defaults, validation, one typed record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class FlashSaleConfig:
    backend: str = "sqlite"  # "sqlite" | "redis"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "fs"
    db_path: str = ""  # default: <data_dir>/plugins/flashsale/flashsale.db
    hold_seconds: float = 300.0
    stock_update_hz: float = 10.0
    reserve_rate: tuple[int, float] = (10, 10.0)  # sale.reserve per viewer
    order_rate: tuple[int, float] = (10, 10.0)  # sale.pay / sale.cancel per viewer
    client_payment: bool = True  # accept sale.pay from clients (local runs, until commerce pays)
    idempotency_ttl_seconds: float = 86400.0
    reconcile_interval_seconds: float = 1.0


KEYS = frozenset(FlashSaleConfig.__dataclass_fields__)


def _number(section: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{key} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


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


def _str(section: Mapping[str, Any], key: str) -> str:
    value = section[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _bool(section: Mapping[str, Any], key: str) -> bool:
    value = section[key]
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def parse_config(section: Mapping[str, Any], data_dir: Path) -> FlashSaleConfig:
    """A ``FlashSaleConfig`` from the raw TOML section; ``ValueError`` names a bad key."""
    unknown = set(section) - KEYS
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(KEYS))})")
    values: dict[str, Any] = {"db_path": str(data_dir / "flashsale.db")}
    if "backend" in section:
        if section["backend"] not in ("sqlite", "redis"):
            raise ValueError(f"backend must be \"sqlite\" or \"redis\", got {section['backend']!r}")
        values["backend"] = section["backend"]
    if "redis_url" in section:
        url = _str(section, "redis_url")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"redis_url must be a redis://, rediss:// or unix:// URL, got {url!r}")
        values["redis_url"] = url
    if "redis_prefix" in section:
        values["redis_prefix"] = _str(section, "redis_prefix")
    if "db_path" in section:
        values["db_path"] = str(Path(_str(section, "db_path")).expanduser())
    if "hold_seconds" in section:
        values["hold_seconds"] = _number(section, "hold_seconds", 1, 86400)
    if "stock_update_hz" in section:
        values["stock_update_hz"] = _number(section, "stock_update_hz", 0.1, 50)
    if "idempotency_ttl_seconds" in section:
        values["idempotency_ttl_seconds"] = _number(section, "idempotency_ttl_seconds", 60, 30 * 86400)
    if "reconcile_interval_seconds" in section:
        values["reconcile_interval_seconds"] = _number(section, "reconcile_interval_seconds", 0.05, 3600)
    for key in ("reserve_rate", "order_rate"):
        if key in section:
            values[key] = _rate(section, key)
    if "client_payment" in section:
        values["client_payment"] = _bool(section, "client_payment")
    return FlashSaleConfig(**values)
