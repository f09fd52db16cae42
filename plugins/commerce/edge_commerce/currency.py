"""Money: integer minor units per currency and a rate table relative to a base currency.

Amounts are kept as integers in the currency's minor unit (cents for USD, yen for
JPY); they are turned into decimal numbers only at the edges (JSON in and out).
``rates[X]`` is how many units of X one unit of the base currency buys
(``{USD = 1.0, MXN = 17.1, JPY = 151.0}`` with base USD). A conversion goes
through the base currency and rounds once, half up, to the target currency's
minor unit.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Mapping

CODE = re.compile(r"^[A-Z]{3}$")

# ISO 4217 minor-unit exponents that are not 2 (a currency not listed has 2).
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
ISO_EXPONENTS: dict[str, int] = {**{c: 0 for c in _ZERO.split()}, **{c: 3 for c in _THREE.split()}}

MAX_MINOR = 10**13  # largest amount in minor units (well inside SQLite's int64)


def iso_exponent(code: str) -> int:
    return ISO_EXPONENTS.get(code, 2)


class Rates:
    """The configured currencies: rates to the base currency and minor-unit exponents."""

    def __init__(
        self, base: str, rates: Mapping[str, Any], decimals: Mapping[str, int] | None = None
    ) -> None:
        self.base = base
        self.rates: dict[str, Decimal] = {}
        for code, rate in rates.items():
            if not isinstance(code, str) or not CODE.fullmatch(code):
                raise ValueError(f"currency codes are three capital letters (ISO 4217), got {code!r}")
            if isinstance(rate, bool) or not isinstance(rate, (int, float, str, Decimal)):
                raise ValueError(f"the rate of {code} must be a positive number, got {rate!r}")
            try:
                value = Decimal(str(rate))
            except InvalidOperation:
                raise ValueError(f"the rate of {code} must be a positive number, got {rate!r}") from None
            if not value.is_finite() or value <= 0:
                raise ValueError(f"the rate of {code} must be a positive number, got {rate!r}")
            self.rates[code] = value
        if base not in self.rates:
            raise ValueError(f"the base currency {base!r} is not in currencies")
        if self.rates[base] != 1:
            raise ValueError(f"the base currency {base} must have the rate 1.0, got {self.rates[base]}")
        self._decimals = {code: iso_exponent(code) for code in self.rates}
        for code, places in (decimals or {}).items():
            if code not in self.rates:
                raise ValueError(f"decimals: {code!r} is not in currencies")
            if isinstance(places, bool) or not isinstance(places, int) or not 0 <= places <= 4:
                raise ValueError(f"decimals: {code} must be an integer from 0 to 4, got {places!r}")
            self._decimals[code] = places

    @property
    def codes(self) -> list[str]:
        return sorted(self.rates)

    def has(self, code: str) -> bool:
        return code in self.rates

    def decimals(self, code: str) -> int:
        return self._decimals[code]

    # JSON edges --------------------------------------------------------------------

    def parse_amount(self, value: Any, currency: str) -> int:
        """A price from JSON (number or decimal string) in minor units of ``currency``.

        ``ValueError`` when it is not a number, negative, too large, or has more
        decimal places than the currency has (1.5 JPY, 0.001 USD)."""
        if currency not in self.rates:
            raise ValueError(f"unknown currency {currency!r} (known: {', '.join(self.codes)})")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"must be a number, got {value!r}")
        try:
            amount = Decimal(str(value).strip()) if not isinstance(value, int) else Decimal(value)
        except InvalidOperation:
            raise ValueError(f"must be a number, got {value!r}") from None
        if not amount.is_finite() or amount < 0:
            raise ValueError(f"must be a number of at least 0, got {value!r}")
        places = self._decimals[currency]
        minor = amount.scaleb(places)
        if minor != minor.to_integral_value():
            raise ValueError(f"{currency} amounts have at most {places} decimal places, got {value!r}")
        if minor > MAX_MINOR:
            raise ValueError(f"is too large: {value!r}")
        return int(minor)

    def to_major(self, minor: int, currency: str) -> int | float:
        """Minor units as the JSON number a client shows (``1999`` USD → ``19.99``)."""
        places = self._decimals[currency]
        if places == 0:
            return int(minor)
        return float(Decimal(minor).scaleb(-places))

    def to_decimal(self, minor: int, currency: str) -> str:
        """Minor units as a decimal string with the currency's places (``1999`` USD → ``"19.99"``)."""
        return str(Decimal(minor).scaleb(-self._decimals[currency]))

    # conversion -------------------------------------------------------------------

    def convert(self, minor: int, source: str, target: str) -> int:
        """``minor`` units of ``source`` in minor units of ``target``, rounded half up once."""
        if source == target:
            return int(minor)
        major = Decimal(minor).scaleb(-self._decimals[source])
        converted = major / self.rates[source] * self.rates[target]
        places = self._decimals[target]
        rounded = converted.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        return int(rounded.scaleb(places))
