"""Room analytics on synthetic events: the formulas, and the counts the store derives."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_commerce.analytics import EventBuffer, RoomCounts, ratio, room_stats
from edge_commerce.currency import Rates
from edge_commerce.orders import fingerprint
from edge_commerce.store import Database

RATES = Rates("USD", {"USD": 1.0, "MXN": 17.1, "JPY": 151.0})
NOW = 1_700_000_000.0


def test_formulas() -> None:
    counts = RoomCounts(
        views=400, unique_viewers=250, clicks=50, orders=12, paid_orders=10, items_sold=14,
        gmv_minor=123_456, refunds_minor=2_000, buyers=8,
    )
    stats = room_stats("shop", counts, RATES)
    assert stats == {
        "room": "shop",
        "currency": "USD",
        "views": 400,
        "unique_viewers": 250,
        "clicks": 50,
        "ctr": 0.125,  # 50 / 400
        "orders": 12,
        "paid_orders": 10,
        "items_sold": 14,
        "gmv": 1234.56,
        "gmv_minor": 123_456,
        "refunds": 20.0,
        "gpm": 3086.4,  # 1234.56 / 400 * 1000
        "buyers": 8,
        "conversion": 0.032,  # 8 / 250
    }


def test_empty_room_has_zero_ratios_not_errors() -> None:
    stats = room_stats("empty", RoomCounts(), RATES)
    assert stats["ctr"] == stats["gpm"] == stats["conversion"] == 0.0
    assert ratio(1, 0) == 0.0


def test_gpm_in_a_zero_decimal_base_currency() -> None:
    yen = Rates("JPY", {"JPY": 1.0, "USD": 0.0066})
    stats = room_stats("jp", RoomCounts(views=3, unique_viewers=3, gmv_minor=10_000, buyers=1), yen)
    assert stats["gmv"] == 10_000 and stats["gpm"] == pytest.approx(3_333_333.333333)
    assert stats["conversion"] == pytest.approx(1 / 3, abs=1e-6)


def test_buffer_hands_events_over_once() -> None:
    buffer = EventBuffer()
    buffer.view("r", "a", 1.0)
    buffer.click("r", "a", "tee", 2.0)
    assert len(buffer) == 2
    assert buffer.take() == ([("r", "a", 1.0)], [("r", "a", "tee", 2.0)])
    assert len(buffer) == 0 and buffer.take() == ([], [])


def test_counts_from_synthetic_events(tmp_path: Path) -> None:
    """5 viewer joins by 3 people, 4 clicks, 4 orders: 2 paid (1 then refunded), 1 expired, 1 open."""
    db = Database(tmp_path / "a.sqlite3")
    db.create_product("r", {"sku": "tee", "title": "T", "image_url": "", "price_minor": 2000, "currency": "USD", "stock": 99}, NOW)
    db.create_product("r", {"sku": "mug", "title": "M", "image_url": "", "price_minor": 15000, "currency": "MXN", "stock": 99}, NOW)
    db.record_events(
        [("r", "ana", NOW), ("r", "ben", NOW), ("r", "ana", NOW + 5), ("r", "cy", NOW), ("r", "ana", NOW + 9),
         ("other", "zed", NOW)],
        [("r", "ana", "tee", NOW), ("r", "ben", "tee", NOW), ("r", "ben", "mug", NOW), ("r", "cy", "tee", NOW),
         ("other", "zed", "tee", NOW)],
    )

    def order(buyer: str, key: str, sku: str, quantity: int, currency: str) -> str:
        answer, _, _ = db.place_catalog_order(
            room="r", buyer=buyer, key=key, fp=fingerprint(sku, quantity), sku=sku, quantity=quantity,
            currency=currency, rates=RATES, now=NOW, ttl=600,
        )
        return str(answer.data["order_id"])

    paid_tee = order("ana", "1", "tee", 2, "JPY")  # 2 x 20.00 USD = 40.00 USD base (paid in yen)
    paid_mug = order("ben", "2", "mug", 1, "USD")  # 150.00 MXN = 8.77 USD base
    gone = order("ben", "3", "tee", 1, "USD")
    order("cy", "4", "tee", 1, "USD")  # still reserved
    db.transition(paid_tee, "reserved", "paid", now=NOW + 1)
    db.transition(paid_mug, "reserved", "paid", now=NOW + 1)
    db.transition(paid_mug, "paid", "refunded", now=NOW + 2)
    db.transition(gone, "reserved", "expired", now=NOW + 600)

    counts = db.counts("r")
    assert counts == RoomCounts(
        views=5, unique_viewers=3, clicks=4, orders=4, paid_orders=2, items_sold=3,
        gmv_minor=4000 + 877, refunds_minor=877, buyers=2,
    )
    stats = room_stats("r", counts, RATES)
    assert stats["ctr"] == 0.8  # 4 / 5
    assert stats["gmv"] == 48.77
    assert stats["gpm"] == pytest.approx(48.77 / 5 * 1000)
    assert stats["conversion"] == pytest.approx(2 / 3, abs=1e-6)
    assert db.counts("nobody") == RoomCounts()
