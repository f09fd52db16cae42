"""Payments: a small provider interface and the default provider for local runs and tests.

The plugin asks the provider to collect an order's amount once the order is
reserved, and to refund a paid order. A provider is anything with these two
coroutines (``PaymentProvider``); ``collect`` may take as long as it needs
(the plugin awaits it in a task of its own, not in a hook), and must be safe to
call again for the same order after a restart (``request.order_id`` is the
idempotency key to give a real gateway).

``DelayedConfirmProvider`` (``payment_provider = "delayed"``, the default) moves
no money: it answers "paid" after ``payment_delay_seconds`` and declines a
fraction ``payment_failure_rate`` of payments (0 by default). It exists for
local runs, demos and tests; a deployment names its own provider with
``payment_provider = "package.module:factory"``, a callable that gets the
``[plugins.commerce.payment_options]`` table and returns a provider.
"""

from __future__ import annotations

import asyncio
import importlib
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    order_id: str
    room: str
    buyer: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class PaymentResult:
    ok: bool
    reference: str = ""  # the provider's id for the payment (kept with the order)
    reason: str = ""  # why it failed ("declined", ...)


@runtime_checkable
class PaymentProvider(Protocol):
    name: str

    async def collect(self, request: PaymentRequest) -> PaymentResult:
        """Take the payment; return when it is settled one way or the other."""
        ...

    async def refund(self, request: PaymentRequest, reference: str) -> PaymentResult:
        """Give a collected payment back (a paid order refunded, or a payment
        that arrived after the order expired or was cancelled)."""
        ...


class DelayedConfirmProvider:
    """Confirms every payment after ``delay`` seconds (declining ``failure_rate`` of them).

    For local runs and tests only: no money moves."""

    name = "delayed"

    def __init__(self, delay: float = 2.0, failure_rate: float = 0.0, rng: random.Random | None = None) -> None:
        self.delay = delay
        self.failure_rate = failure_rate
        self.rng = rng or random.Random()
        self.refunds: list[tuple[str, str]] = []  # (order_id, reference), for inspection

    async def collect(self, request: PaymentRequest) -> PaymentResult:
        await asyncio.sleep(self.delay)
        reference = f"delayed-{request.order_id}"
        if self.failure_rate and self.rng.random() < self.failure_rate:
            return PaymentResult(False, reference, "declined")
        return PaymentResult(True, reference)

    async def refund(self, request: PaymentRequest, reference: str) -> PaymentResult:
        self.refunds.append((request.order_id, reference))
        return PaymentResult(True, reference)


def load_provider(
    spec: str, options: Mapping[str, Any], *, delay: float, failure_rate: float
) -> PaymentProvider:
    """The configured provider: ``"delayed"`` or ``"package.module:factory"``."""
    if spec == "delayed":
        return DelayedConfirmProvider(delay, failure_rate)
    module_name, _, attr = spec.partition(":")
    try:
        factory: Callable[[Mapping[str, Any]], Any] = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"payment_provider {spec!r} cannot be loaded: {exc}") from None
    provider = factory(dict(options))
    if not isinstance(provider, PaymentProvider):
        raise ValueError(f"payment_provider {spec!r} did not return a provider (needs name, collect, refund)")
    return provider
