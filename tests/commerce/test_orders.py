"""Orders without a node: the state machine, the store's transactions, idempotency keys."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from pathlib import Path

import pytest

from edge_commerce.currency import Rates
from edge_commerce.orders import (
    STATES,
    TRANSITIONS,
    Answer,
    InvalidTransition,
    can_transition,
    check_transition,
    fingerprint,
)
from edge_commerce.store import AlreadyExists, Database

RATES = Rates("USD", {"USD": 1.0, "MXN": 17.1, "JPY": 151.0})
ALLOWED = {("reserved", "paid"), ("reserved", "expired"), ("reserved", "cancelled"), ("paid", "refunded")}
NOW = 1_700_000_000.0


@pytest.mark.parametrize("source, target", list(itertools.product(STATES, STATES)))
def test_only_the_documented_transitions_are_allowed(source: str, target: str) -> None:
    assert can_transition(source, target) == ((source, target) in ALLOWED)
    if (source, target) in ALLOWED:
        check_transition(source, target)
    else:
        with pytest.raises(InvalidTransition, match=f"from {source} to {target}"):
            check_transition(source, target)


def test_final_states_have_no_way_out() -> None:
    assert {s for s, nxt in TRANSITIONS.items() if not nxt} == {"expired", "cancelled", "refunded"}
    with pytest.raises(InvalidTransition):
        check_transition("unknown", "paid")


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "commerce.sqlite3")
    database.create_product(
        "r1",
        {"sku": "tee", "title": "Tee", "image_url": "", "price_minor": 2000, "currency": "USD", "stock": 3},
        NOW,
    )
    return database


def place(db: Database, key: str, quantity: int = 1, *, sku: str = "tee", buyer: str = "fan", currency: str = "USD",
          room: str = "r1", now: float = NOW) -> tuple[Answer, object, object]:
    return db.place_catalog_order(
        room=room, buyer=buyer, key=key, fp=fingerprint(sku, quantity), sku=sku, quantity=quantity,
        currency=currency, rates=RATES, now=now, ttl=600,
    )


def test_database_is_wal_with_full_sync(db: Database) -> None:
    assert db.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_place_reserves_stock_and_prices_in_the_buyer_currency(db: Database) -> None:
    answer, order, product = place(db, "k1", 2, currency="MXN")
    assert answer.type == "order.accepted"
    assert answer.data["amount"] == 684.0 and answer.data["currency"] == "MXN"  # 2 x 342.00
    assert answer.data["state"] == "reserved" and answer.data["quantity"] == 2 and answer.data["key"] == "k1"
    assert order.amount_base_minor == 4000 and order.unit_price_minor == 34200  # type: ignore[attr-defined]
    assert product.stock == 1  # type: ignore[attr-defined]
    assert db.history(answer.data["order_id"]) == [{"state": "reserved", "reason": "placed", "ts": NOW}]


def test_sold_out_and_insufficient_stock_are_refused_and_nothing_changes(db: Database) -> None:
    assert place(db, "a", 3)[0].accepted
    answer, order, _ = place(db, "b", 1, buyer="other")
    assert answer.data["reason"] == "sold_out" and order is None
    db.update_product("r1", "tee", {"stock": 1}, NOW)
    answer, order, product = place(db, "c", 2, buyer="other")
    assert answer.data["reason"] == "insufficient_stock" and answer.data["available"] == 1 and order is None
    assert product.stock == 1  # type: ignore[attr-defined]
    assert place(db, "d", sku="nope")[0].data["reason"] == "not_found"
    assert len(db.orders("r1")) == 1


def test_same_key_replays_the_first_answer_once(db: Database) -> None:
    first = place(db, "key-1")
    again = place(db, "key-1")
    assert again[0] == first[0] and again[1] is None  # the same answer, no second order
    assert db.product("r1", "tee").stock == 2  # type: ignore[union-attr]
    assert len(db.orders("r1")) == 1
    # the same key from another buyer or room is another request
    assert place(db, "key-1", buyer="someone-else")[0].data["order_id"] != first[0].data["order_id"]


def test_same_key_with_another_body_is_a_conflict(db: Database) -> None:
    place(db, "key-2", 1)
    conflict, order, _ = place(db, "key-2", 2)
    assert conflict.type == "order.rejected" and conflict.data["reason"] == "idempotency_conflict"
    assert order is None and db.product("r1", "tee").stock == 2  # type: ignore[union-attr]



def test_refusals_that_saw_the_stock_stick_others_do_not(db: Database) -> None:
    db.update_product("r1", "tee", {"stock": 0}, NOW)
    assert place(db, "key-3")[0].data["reason"] == "sold_out"
    db.update_product("r1", "tee", {"stock": 5}, NOW)
    assert place(db, "key-3")[0].data["reason"] == "sold_out"  # replayed: the key's answer
    assert place(db, "key-4")[0].accepted  # a new key sees the new stock
    # an unknown SKU is not remembered: once it exists, the same key may buy it
    assert place(db, "key-5", sku="nope")[0].data["reason"] == "not_found"
    db.create_product("r1", {"sku": "nope", "title": "N", "image_url": "", "price_minor": 1, "currency": "USD", "stock": 5}, NOW)
    assert place(db, "key-5", sku="nope")[0].accepted


def test_transitions_are_conditional_and_release_stock_once(db: Database) -> None:
    answer, order, _ = place(db, "k", 2)
    order_id = answer.data["order_id"]
    expired = db.transition(order_id, "reserved", "expired", now=NOW + 1, reason="not paid in time")
    assert expired is not None and expired[0].state == "expired" and expired[1].stock == 3  # type: ignore[union-attr]
    # payment arriving afterwards loses: exactly one outcome, stock not released twice
    assert db.transition(order_id, "reserved", "paid", now=NOW + 2) is None
    assert db.transition(order_id, "reserved", "expired", now=NOW + 2) is None
    assert db.product("r1", "tee").stock == 3  # type: ignore[union-attr]
    with pytest.raises(InvalidTransition):
        db.transition(order_id, "expired", "refunded", now=NOW + 3)
    assert [h["state"] for h in db.history(order_id)] == ["reserved", "expired"]


def test_paid_then_refunded_keeps_the_stock_sold(db: Database) -> None:
    order_id = place(db, "k")[0].data["order_id"]
    paid, product = db.transition(order_id, "reserved", "paid", now=NOW + 1, payment_ref="ref-1")  # type: ignore[misc]
    assert paid.paid_at == NOW + 1 and paid.payment_ref == "ref-1" and product is None
    refunded, _ = db.transition(order_id, "paid", "refunded", now=NOW + 2, reason="refunded by host")  # type: ignore[misc]
    assert refunded.state == "refunded" and refunded.paid_at == NOW + 1
    assert db.product("r1", "tee").stock == 2  # type: ignore[union-attr]
    assert [(h["state"], h["reason"]) for h in db.history(order_id)] == [
        ("reserved", "placed"), ("paid", ""), ("refunded", "refunded by host")
    ]


def test_concurrent_buyers_never_oversell(tmp_path: Path) -> None:
    """40 buyers on 40 threads (each with its own connection to the file) for 7 units."""
    path = tmp_path / "c.sqlite3"
    Database(path).create_product(
        "r", {"sku": "x", "title": "X", "image_url": "", "price_minor": 100, "currency": "USD", "stock": 7}, NOW
    )
    barrier = threading.Barrier(40)
    answers: list[Answer] = []

    def buyer(i: int) -> None:
        db = Database(path)
        barrier.wait()
        answers.append(place(db, f"k{i}", buyer=f"b{i}", sku="x", room="r")[0])
        db.close()

    threads = [threading.Thread(target=buyer, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check = Database(path)
    assert sum(a.accepted for a in answers) == 7
    assert {a.data["reason"] for a in answers if not a.accepted} == {"sold_out"}
    assert check.product("r", "x").stock == 0  # type: ignore[union-attr]
    assert len(check.orders("r")) == 7


def test_an_acknowledged_order_is_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    db = Database(path)
    db.create_product("r", {"sku": "x", "title": "X", "image_url": "", "price_minor": 100, "currency": "USD", "stock": 1}, NOW)
    order_id = place(db, "k", sku="x", room="r")[0].data["order_id"]
    # another connection (another process after a crash would see the same) reads it back
    other = sqlite3.connect(path)
    assert other.execute("SELECT state FROM orders WHERE order_id = ?", (order_id,)).fetchone() == ("reserved",)


def test_products_are_unique_per_room_and_deleting_unpins(db: Database) -> None:
    with pytest.raises(AlreadyExists):
        db.create_product("r1", {"sku": "tee", "title": "T", "image_url": "", "price_minor": 1, "currency": "USD", "stock": 1}, NOW)
    db.create_product("r2", {"sku": "tee", "title": "T", "image_url": "", "price_minor": 1, "currency": "USD", "stock": 1}, NOW)
    db.set_pin("r1", "tee", "host", NOW, None)
    assert db.delete_product("r1", "tee") == (True, True)
    assert db.pins() == [] and db.product("r2", "tee") is not None
    assert db.delete_product("r1", "tee") == (False, False)


def test_old_keys_are_pruned(db: Database) -> None:
    place(db, "old", now=NOW - 90_000)
    place(db, "new", now=NOW)
    assert db.prune_keys(NOW - 86_400) == 1
    assert db.answer_for("r1", "fan", "old") is None and db.answer_for("r1", "fan", "new") is not None
