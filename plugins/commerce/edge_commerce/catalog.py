"""Products of a room's catalog: the record, request validation and client views.

No I/O here: ``store.py`` keeps products, this module checks what a host sends
(``POST``/``PATCH`` bodies) and shapes what clients get (listings, the pinned
card in the viewer's currency).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from .currency import Rates

SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_TITLE = 200
MAX_IMAGE_URL = 1000
MAX_STOCK = 10**9
MAX_COUNTDOWN = 86400
FIELDS = ("sku", "title", "price", "currency", "image_url", "stock")


class FieldError(ValueError):
    """A request field that is missing or wrong; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Product:
    room: str
    sku: str
    title: str
    image_url: str
    price_minor: int  # in the product's own currency
    currency: str
    stock: int  # units available to order now (reservations already taken out)
    created_at: float
    updated_at: float


def check_sku(sku: Any) -> str:
    if not isinstance(sku, str) or not SKU.fullmatch(sku):
        raise FieldError("sku", "must be 1-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit")
    return sku


def _title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TITLE:
        raise FieldError("title", f"must be a non-empty string of at most {MAX_TITLE} characters")
    return value.strip()


def _image_url(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > MAX_IMAGE_URL:
        raise FieldError("image_url", f"must be an http(s) URL of at most {MAX_IMAGE_URL} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise FieldError("image_url", "must be an absolute http:// or https:// URL")
    return value


def _stock(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_STOCK:
        raise FieldError("stock", f"must be an integer from 0 to {MAX_STOCK}")
    return value


def _currency(value: Any, rates: Rates) -> str:
    if not isinstance(value, str) or not rates.has(value):
        raise FieldError("currency", f"must be one of the configured currencies: {', '.join(rates.codes)}")
    return value


def _price(value: Any, currency: str, rates: Rates) -> int:
    try:
        return rates.parse_amount(value, currency)
    except ValueError as exc:
        raise FieldError("price", str(exc)) from None


def check_body(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    unknown = set(body) - set(FIELDS)
    if unknown:
        raise FieldError(sorted(unknown)[0], f"unknown field (known: {', '.join(FIELDS)})")
    return body


def new_product(body: Any, rates: Rates) -> dict[str, Any]:
    """The columns of a product a ``POST`` creates; ``FieldError`` on bad input."""
    body = check_body(body)
    for name in ("sku", "title", "price", "currency", "stock"):
        if name not in body:
            raise FieldError(name, "is required")
    currency = _currency(body["currency"], rates)
    return {
        "sku": check_sku(body["sku"]),
        "title": _title(body["title"]),
        "image_url": _image_url(body.get("image_url")),
        "currency": currency,
        "price_minor": _price(body["price"], currency, rates),
        "stock": _stock(body["stock"]),
    }


def product_changes(body: Any, rates: Rates, current: Product) -> dict[str, Any]:
    """The columns a ``PATCH`` changes; ``FieldError`` on bad input."""
    body = check_body(body)
    if "sku" in body and body["sku"] != current.sku:
        raise FieldError("sku", "cannot be changed (delete the product and create another)")
    changes: dict[str, Any] = {}
    if "title" in body:
        changes["title"] = _title(body["title"])
    if "image_url" in body:
        changes["image_url"] = _image_url(body["image_url"])
    if "stock" in body:
        changes["stock"] = _stock(body["stock"])
    if "currency" in body:
        changes["currency"] = _currency(body["currency"], rates)
        if changes["currency"] != current.currency and "price" not in body:
            raise FieldError("price", "is required when the currency changes")
    if "price" in body:
        changes["price_minor"] = _price(body["price"], changes.get("currency", current.currency), rates)
    if not changes:
        raise FieldError("body", f"nothing to change (fields: {', '.join(FIELDS[1:])})")
    return changes


def check_countdown(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNTDOWN:
        raise FieldError("countdown", f"must be a whole number of seconds from 1 to {MAX_COUNTDOWN}")
    return value


# views ----------------------------------------------------------------------------------


def price_in(product: Product, rates: Rates, currency: str) -> int:
    """The unit price in ``currency`` (minor units), as a viewer sees and pays it."""
    return rates.convert(product.price_minor, product.currency, currency)


def product_view(product: Product, rates: Rates, display: str | None = None) -> dict[str, Any]:
    """A product as the REST API lists it; with ``display``, also in that currency."""
    view: dict[str, Any] = {
        "sku": product.sku,
        "title": product.title,
        "image_url": product.image_url,
        "price": rates.to_major(product.price_minor, product.currency),
        "price_minor": product.price_minor,
        "currency": product.currency,
        "stock": product.stock,
        "sold_out": product.stock == 0,
        "updated_at": product.updated_at,
    }
    if display is not None:
        view["display_price"] = rates.to_major(price_in(product, rates, display), display)
        view["display_currency"] = display
    return view


def pinned_data(
    product: Product,
    rates: Rates,
    currency: str,
    *,
    countdown: int | None = None,
    sale: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``product.pinned`` data for one viewer's currency.

    ``countdown`` is the number of seconds left (the watch page counts down from
    the envelope's ``ts``). ``sale`` is a flash sale on this SKU: its price
    (in the product's currency, minor units) and remaining units replace the
    catalog's."""
    price_minor = product.price_minor
    stock: int | None = product.stock
    data: dict[str, Any] = {"sku": product.sku, "title": product.title}
    if sale is not None:
        price_minor = int(sale.get("price_minor", price_minor))
        stock = sale.get("remaining")  # None: the sale did not say (it announces its own stock)
        data["flash_sale"] = True
    data["price"] = rates.to_major(rates.convert(price_minor, product.currency, currency), currency)
    data["currency"] = currency
    data["image_url"] = product.image_url
    data["stock"] = stock
    data["sold_out"] = stock is not None and stock <= 0
    if countdown is not None:
        data["countdown"] = countdown
    return data
