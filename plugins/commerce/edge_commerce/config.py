"""The ``[plugins.commerce]`` section: defaults, validation, one typed record.

```toml
[plugins.commerce]
base_currency = "USD"
currencies = {USD = 1.0, MXN = 17.1, JPY = 151.0}   # units per 1 base unit
decimals = {}                                        # override ISO 4217 minor units
region_currency = {mx = "MXN", jp = "JPY"}           # token region -> display currency
payment_provider = "delayed"                         # or "package.module:factory"
payment_delay_seconds = 2.0                          # the delayed provider's confirmation delay
payment_failure_rate = 0.0                           # ... and how often it declines (0-1)
reservation_seconds = 600                            # unpaid orders expire after this
max_quantity = 10                                    # per order
click_rate = [10, 10]                                # product.click per viewer: messages, seconds
order_rate = [10, 30]                                # order.place / order.cancel per viewer
idempotency_hours = 24                               # order keys are remembered this long
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from .currency import CODE, Rates

DEFAULT_CURRENCIES = {"USD": 1.0, "MXN": 17.1, "JPY": 151.0}
REGION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class CommerceConfig:
    rates: Rates = field(default_factory=lambda: Rates("USD", DEFAULT_CURRENCIES))
    region_currency: Mapping[str, str] = field(default_factory=dict)
    payment_provider: str = "delayed"
    payment_options: Mapping[str, Any] = field(default_factory=dict)
    payment_delay_seconds: float = 2.0
    payment_failure_rate: float = 0.0
    reservation_seconds: float = 600.0
    max_quantity: int = 10
    click_rate: tuple[int, float] = (10, 10.0)
    order_rate: tuple[int, float] = (10, 30.0)
    staff_rate: tuple[int, float] = (60, 30.0)
    idempotency_hours: float = 24.0

    def currency_for_region(self, region: str) -> str:
        """The display currency of a token region (the base currency when unmapped)."""
        return self.region_currency.get(region, self.rates.base)


KEYS = frozenset(
    {
        "base_currency",
        "currencies",
        "decimals",
        "region_currency",
        "payment_provider",
        "payment_options",
        "payment_delay_seconds",
        "payment_failure_rate",
        "reservation_seconds",
        "max_quantity",
        "click_rate",
        "order_rate",
        "staff_rate",
        "idempotency_hours",
    }
)


def _number(section: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{key} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


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


def _table(section: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = section.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a table, got {value!r}")
    return dict(value)


def parse_config(section: Mapping[str, Any]) -> CommerceConfig:
    """A ``CommerceConfig`` from the raw TOML section; ``ValueError`` names a bad key."""
    unknown = set(section) - KEYS
    if unknown:
        raise ValueError(f"unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(KEYS))})")
    base = section.get("base_currency", "USD")
    if not isinstance(base, str) or not CODE.fullmatch(base):
        raise ValueError(f"base_currency must be a currency code such as 'USD', got {base!r}")
    currencies = _table(section, "currencies") if "currencies" in section else dict(DEFAULT_CURRENCIES)
    if "currencies" not in section and base not in currencies:
        currencies = {base: 1.0}
    try:
        rates = Rates(base, currencies, _table(section, "decimals"))
    except ValueError as exc:
        raise ValueError(f"currencies: {exc}") from None
    values: dict[str, Any] = {"rates": rates}
    regions = _table(section, "region_currency")
    for region, code in regions.items():
        if not REGION.fullmatch(region):
            raise ValueError(f"region_currency: bad region name {region!r}")
        if not isinstance(code, str) or not rates.has(code):
            raise ValueError(f"region_currency: {region} maps to {code!r}, which is not in currencies")
    values["region_currency"] = regions
    if "payment_provider" in section:
        provider = section["payment_provider"]
        if not isinstance(provider, str) or not (provider == "delayed" or ":" in provider):
            raise ValueError(f"payment_provider must be 'delayed' or 'module:factory', got {provider!r}")
        values["payment_provider"] = provider
    values["payment_options"] = _table(section, "payment_options")
    if "payment_delay_seconds" in section:
        values["payment_delay_seconds"] = _number(section, "payment_delay_seconds", 0, 3600)
    if "payment_failure_rate" in section:
        values["payment_failure_rate"] = _number(section, "payment_failure_rate", 0, 1)
    if "reservation_seconds" in section:
        values["reservation_seconds"] = _number(section, "reservation_seconds", 1, 7 * 86400)
    if "max_quantity" in section:
        values["max_quantity"] = _int(section, "max_quantity", 1, 10_000)
    if "idempotency_hours" in section:
        values["idempotency_hours"] = _number(section, "idempotency_hours", 1, 24 * 365)
    for key in ("click_rate", "order_rate", "staff_rate"):
        if key in section:
            values[key] = _rate(section, key)
    return CommerceConfig(**values)
