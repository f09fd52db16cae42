"""Catalog request validation, the pinned card's data, and the payment providers."""

from __future__ import annotations

import asyncio
import random
import sys
import time
import types

import pytest

from edge_commerce.catalog import (
    FieldError,
    Product,
    check_countdown,
    new_product,
    pinned_data,
    product_changes,
)
from edge_commerce.currency import Rates
from edge_commerce.payment import (
    DelayedConfirmProvider,
    PaymentProvider,
    PaymentRequest,
    PaymentResult,
    load_provider,
)

RATES = Rates("USD", {"USD": 1.0, "MXN": 17.1, "JPY": 151.0})
TEE = Product("r", "tee", "Tee", "https://cdn.example.com/t.jpg", 2000, "USD", 4, 1.0, 1.0)


def test_new_product_normalises() -> None:
    columns = new_product({"sku": "tee", "title": "  Tee ", "price": "19.99", "currency": "USD", "stock": 3}, RATES)
    assert columns == {"sku": "tee", "title": "Tee", "image_url": "", "currency": "USD", "price_minor": 1999, "stock": 3}


@pytest.mark.parametrize(
    "changes, field",
    [({}, "body"), ({"sku": "other"}, "sku"), ({"currency": "JPY"}, "price"), ({"price": 1.5, "currency": "JPY"}, "price"),
     ({"image_url": "ftp://x/y.png"}, "image_url"), ({"stock": -2}, "stock"), ({"what": 1}, "what")],
)
def test_bad_changes_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(FieldError) as refused:
        product_changes(changes, RATES, TEE)
    assert refused.value.field == field


def test_changes_reprice_in_the_new_currency() -> None:
    assert product_changes({"price": 2500, "currency": "JPY"}, RATES, TEE) == {"currency": "JPY", "price_minor": 2500}
    assert product_changes({"price": "21.5"}, RATES, TEE) == {"price_minor": 2150}
    assert product_changes({"currency": "USD"}, RATES, TEE) == {"currency": "USD"}  # unchanged currency, no price needed


@pytest.mark.parametrize("value", [0, -1, 86401, 1.5, "10", True])
def test_countdown_bounds(value: object) -> None:
    with pytest.raises(FieldError, match="countdown"):
        check_countdown(value)
    assert check_countdown(None) is None and check_countdown(300) == 300


def test_pinned_card_per_currency_and_with_a_flash_sale() -> None:
    assert pinned_data(TEE, RATES, "JPY", countdown=12) == {
        "sku": "tee", "title": "Tee", "price": 3020, "currency": "JPY", "image_url": "https://cdn.example.com/t.jpg",
        "stock": 4, "sold_out": False, "countdown": 12,
    }
    sale = pinned_data(TEE, RATES, "MXN", sale={"price_minor": 1000, "remaining": 0})
    assert (sale["price"], sale["stock"], sale["sold_out"], sale["flash_sale"]) == (171.0, 0, True, True)
    assert "countdown" not in sale


async def test_delayed_provider_confirms_after_the_delay() -> None:
    provider = DelayedConfirmProvider(delay=0.2)
    assert isinstance(provider, PaymentProvider)
    request = PaymentRequest("ord_1", "r", "fan", 2000, "USD")
    started = time.monotonic()
    result = await provider.collect(request)
    assert result == PaymentResult(True, "delayed-ord_1") and time.monotonic() - started >= 0.19
    assert (await provider.refund(request, result.reference)).ok and provider.refunds == [("ord_1", "delayed-ord_1")]


async def test_delayed_provider_failure_rate() -> None:
    provider = DelayedConfirmProvider(delay=0, failure_rate=0.5, rng=random.Random(7))
    results = await asyncio.gather(*(provider.collect(PaymentRequest(f"o{i}", "r", "b", 1, "USD")) for i in range(200)))
    declined = [r for r in results if not r.ok]
    assert 60 < len(declined) < 140 and {r.reason for r in declined} == {"declined"}
    always = DelayedConfirmProvider(delay=0, failure_rate=1.0)
    assert not (await always.collect(PaymentRequest("o", "r", "b", 1, "USD"))).ok


def test_load_provider_by_name_or_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    default = load_provider("delayed", {}, delay=1.5, failure_rate=0.1)
    assert isinstance(default, DelayedConfirmProvider) and (default.delay, default.failure_rate) == (1.5, 0.1)

    class Gateway:
        name = "gateway"

        def __init__(self, options: dict[str, object]) -> None:
            self.options = options

        async def collect(self, request: PaymentRequest) -> PaymentResult:
            return PaymentResult(True, "g")

        async def refund(self, request: PaymentRequest, reference: str) -> PaymentResult:
            return PaymentResult(True, reference)

    module = types.ModuleType("fake_gateway")
    module.make = Gateway  # type: ignore[attr-defined]
    module.broken = lambda options: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_gateway", module)
    gateway = load_provider("fake_gateway:make", {"key": "sk_test"}, delay=0, failure_rate=0)
    assert isinstance(gateway, Gateway) and gateway.options == {"key": "sk_test"}
    with pytest.raises(ValueError, match="did not return a provider"):
        load_provider("fake_gateway:broken", {}, delay=0, failure_rate=0)
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_provider("no_such_module_here:make", {}, delay=0, failure_rate=0)
