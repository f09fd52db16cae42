"""Money and configuration: minor units, conversion through the base currency, rounding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_commerce.config import parse_config
from edge_commerce.currency import Rates

RATES = Rates("USD", {"USD": 1.0, "MXN": 17.1, "JPY": 151.0})


def test_minor_units_follow_iso_4217_and_overrides() -> None:
    assert (RATES.decimals("USD"), RATES.decimals("MXN"), RATES.decimals("JPY")) == (2, 2, 0)
    rates = Rates("EUR", {"EUR": 1, "KWD": 0.33, "HUF": 390}, {"HUF": 0})
    assert (rates.decimals("KWD"), rates.decimals("HUF"), rates.decimals("EUR")) == (3, 0, 2)


@pytest.mark.parametrize(
    "value, currency, minor",
    [(19.99, "USD", 1999), ("19.99", "USD", 1999), (20, "USD", 2000), (0, "USD", 0), (3020, "JPY", 3020),
     ("3020", "JPY", 3020), (0.1, "MXN", 10), (1e3, "USD", 100000)],
)
def test_parse_amount(value: object, currency: str, minor: int) -> None:
    assert RATES.parse_amount(value, currency) == minor


@pytest.mark.parametrize(
    "value, currency, complaint",
    [(1.5, "JPY", "at most 0 decimal places"), (0.001, "USD", "at most 2 decimal places"),
     (-1, "USD", "at least 0"), ("abc", "USD", "number"), (True, "USD", "number"), (None, "USD", "number"),
     (float("nan"), "USD", "at least 0"), (float("inf"), "USD", "at least 0"), (1, "EUR", "unknown currency"),
     (10**12, "USD", "too large")],
)
def test_parse_amount_refuses(value: object, currency: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        RATES.parse_amount(value, currency)


def test_to_major_is_a_json_number_of_the_currency() -> None:
    assert RATES.to_major(1999, "USD") == 19.99
    assert RATES.to_major(3020, "JPY") == 3020 and isinstance(RATES.to_major(3020, "JPY"), int)
    assert RATES.to_major(34200, "MXN") == 342.0


@pytest.mark.parametrize(
    "minor, source, target, expected",
    [
        (2000, "USD", "MXN", 34200),  # 20.00 USD = 342.00 MXN
        (2000, "USD", "JPY", 3020),  # 20.00 USD = 3020 JPY
        (1999, "USD", "JPY", 3018),  # 3018.49 -> 3018
        (19999, "MXN", "USD", 1170),  # 199.99 / 17.1 = 11.6953 -> 11.70
        (19999, "MXN", "JPY", 1766),  # 11.6953... * 151 = 1765.99 -> 1766 (one rounding, not two)
        (100, "JPY", "USD", 66),  # 0.6622... -> 0.66
        (1, "USD", "JPY", 2),  # 1.51 -> 2
        (3, "JPY", "USD", 2),  # 0.019867 -> 0.02
        (0, "USD", "MXN", 0),
        (12345, "MXN", "MXN", 12345),  # same currency: untouched
    ],
)
def test_convert_through_the_base_rounds_once_half_up(minor: int, source: str, target: str, expected: int) -> None:
    assert RATES.convert(minor, source, target) == expected


def test_half_up_at_the_exact_half() -> None:
    rates = Rates("USD", {"USD": 1, "XTS": 0.5}, {"XTS": 0})
    assert rates.convert(1, "USD", "XTS") == 0  # 0.005 XTS -> 0
    assert rates.convert(100, "USD", "XTS") == 1  # 0.5 XTS -> 1 (half up, not to even)
    assert rates.convert(300, "USD", "XTS") == 2  # 1.5 -> 2
    assert rates.convert(500, "USD", "XTS") == 3  # 2.5 -> 3 (banker's rounding would give 2)


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["USD", "MXN", "JPY"]), st.sampled_from(["USD", "MXN", "JPY"]))
def test_conversion_is_monotonic_and_never_negative(minor: int, source: str, target: str) -> None:
    a, b = RATES.convert(minor, source, target), RATES.convert(minor + 1, source, target)
    assert 0 <= a <= b


@pytest.mark.parametrize(
    "rates, base, complaint",
    [({"USD": 1.0, "MXN": 0}, "USD", "positive"), ({"USD": 1.0, "mxn": 2}, "USD", "three capital letters"),
     ({"MXN": 17.1}, "USD", "not in currencies"), ({"USD": 2.0}, "USD", "rate 1.0"),
     ({"USD": 1.0, "MXN": "lots"}, "USD", "positive number"), ({"USD": 1.0, "MXN": True}, "USD", "positive")],
)
def test_bad_rate_tables(rates: dict[str, object], base: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        Rates(base, rates)


def test_config_defaults_and_the_example_section() -> None:
    default = parse_config({})
    assert default.rates.base == "USD" and default.rates.codes == ["JPY", "MXN", "USD"]
    assert default.payment_provider == "delayed" and default.payment_failure_rate == 0.0
    assert default.currency_for_region("mx") == "USD"
    config = parse_config(
        {
            "base_currency": "USD",
            "currencies": {"USD": 1.0, "MXN": 17.1, "JPY": 151.0},
            "region_currency": {"mx": "MXN", "jp-east": "JPY"},
            "payment_delay_seconds": 0.2,
            "reservation_seconds": 30,
            "click_rate": [3, 10],
        }
    )
    assert config.currency_for_region("mx") == "MXN" and config.currency_for_region("jp-east") == "JPY"
    assert config.currency_for_region("") == "USD" and config.currency_for_region("br") == "USD"
    assert config.payment_delay_seconds == 0.2 and config.reservation_seconds == 30.0
    assert config.click_rate == (3, 10.0)
    eur = parse_config({"base_currency": "EUR"})
    assert eur.rates.codes == ["EUR"]


@pytest.mark.parametrize(
    "section, complaint",
    [
        ({"currency": {}}, "unknown keys currency"),
        ({"base_currency": "usd"}, "base_currency"),
        ({"base_currency": "EUR", "currencies": {"USD": 1.0}}, "currencies: the base currency 'EUR'"),
        ({"region_currency": {"mx": "MXN", "br": "BRL"}}, "region_currency: br"),
        ({"region_currency": {"m x": "MXN"}}, "bad region name"),
        ({"payment_failure_rate": 1.5}, "payment_failure_rate"),
        ({"payment_delay_seconds": -1}, "payment_delay_seconds"),
        ({"payment_provider": "stripe"}, "payment_provider"),
        ({"max_quantity": 0}, "max_quantity"),
        ({"click_rate": [0, 10]}, "click_rate"),
        ({"decimals": {"JPY": 7}}, "JPY must be an integer from 0 to 4"),
        ({"currencies": []}, "currencies must be a table"),
    ],
)
def test_bad_config_names_the_key(section: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_config(section)
