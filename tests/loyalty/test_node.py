"""The loyalty plugin in a node built in-process: REST (auth, bad input), the loyalty.*
messages, commerce events and the ``loyalty`` service as other plugins use it, and
interactions seen on the message chain (with the real chat plugin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from edge_chat.plugin import ChatPlugin
from tests.unit.hook_probe import send

from .helpers import ADMIN, bearer, make_node, token, wait_until

API = "/v1/plugins/loyalty"


def order(order_id: str, buyer: str, amount_base: str, room: str = "shop1") -> dict[str, Any]:
    return {
        "room": room, "order_id": order_id, "buyer": buyer, "sku": "tee", "quantity": 1, "amount": amount_base,
        "currency": "USD", "amount_base": amount_base, "at": 0.0,
    }


def emit(client: TestClient, name: str, data: dict[str, Any], source: str = "commerce") -> None:
    r = client.post("/v1/plugins/shop/emit", json={"name": name, "data": data, "source": source}, headers=ADMIN)
    assert r.status_code == 200, r.text


def member(client: TestClient, identity: str) -> dict[str, Any]:
    r = client.get(f"/v1/plugins/shop/member/{identity}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def redeem(client: TestClient, identity: str, points: Any, order_id: str) -> bool:
    r = client.post("/v1/plugins/shop/redeem", json={"identity": identity, "points": points, "order_id": order_id}, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["ok"]  # type: ignore[no-any-return]


def adjust(client: TestClient, identity: str, body: Any, headers: dict[str, str] = ADMIN) -> Any:
    return client.post(f"{API}/members/{identity}/adjust", json=body, headers=headers)


def problem(response: Any, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"].endswith(code), body
    if field is not None:
        assert body["field"] == field, body


def receive(ws: Any, type: str) -> dict[str, Any]:
    """The next envelope of ``type`` (or an error), skipping room news."""
    while True:
        envelope = ws.receive_json()
        if envelope["type"] in (type, "error"):
            return envelope  # type: ignore[no-any-return]


def test_rest_members_see_only_themselves_and_admins_adjust(tmp_path: Path) -> None:
    app, _ = make_node(tmp_path)
    with TestClient(app) as client:
        problem(client.get(f"{API}/me"), 401, "unauthorized")
        problem(client.get(f"{API}/me", headers={"Authorization": "Bearer nonsense"}), 401, "unauthorized")
        me = client.get(f"{API}/me", headers=bearer("alice", room="shop1"))
        assert me.status_code == 200
        body = me.json()
        assert (body["identity"], body["points"], body["growth"]) == ("alice", 0, 0)
        assert body["tier"] == {"name": "bronze", "level": 1, "privileges": []}
        assert body["next_tier"]["name"] == "silver"

        # members may not read or change anyone else, whatever their role
        for role in ("viewer", "host", "moderator"):
            problem(client.get(f"{API}/members/bob", headers=bearer("alice", role)), 403, "forbidden")
            problem(adjust(client, "alice", {"account": "points", "amount": 5, "reason": "me"}, bearer("alice", role)), 403, "forbidden")
            problem(client.post(f"{API}/members/alice/reverse", json={"event_id": "x", "reason": "r"}, headers=bearer("alice", role)), 403, "forbidden")
        problem(adjust(client, "alice", {"account": "points", "amount": 5, "reason": "x"}, {}), 401, "unauthorized")

        # an admin's adjustment: one entry with the reason and the admin's identity
        r = adjust(client, "alice", {"account": "points", "amount": 120, "reason": "welcome gift", "idempotency_key": "k1"})
        assert r.status_code == 201, r.text
        assert (r.json()["points"], r.json()["event_id"]) == (120, "adjust:k1")
        again = adjust(client, "alice", {"account": "points", "amount": 120, "reason": "welcome gift", "idempotency_key": "k1"})
        assert again.status_code == 200 and again.json()["status"] == "duplicate" and again.json()["points"] == 120
        r = adjust(client, "alice", {"account": "growth", "amount": 150, "reason": "migrated from the old shop"})
        assert r.status_code == 201 and r.json()["growth"] == 150

        mine = client.get(f"{API}/me/history", headers=bearer("alice")).json()["entries"]
        assert [(e["account"], e["amount"], e["reason"]) for e in mine] == [
            ("growth", 150, "migrated from the old shop"), ("points", 120, "welcome gift"),
        ]
        assert all("actor" not in e for e in mine)
        theirs = client.get(f"{API}/members/alice/history", headers=ADMIN).json()["entries"]
        assert {e["actor"] for e in theirs} == {"ops-anna"}
        admin_view = client.get(f"{API}/members/alice", headers=ADMIN).json()
        assert admin_view["tier"]["name"] == "silver" and admin_view["tier_changes"][0]["to_level"] == 2
        page = client.get(f"{API}/me/history?limit=1", headers=bearer("alice")).json()
        assert len(page["entries"]) == 1 and page["next"] is not None
        rest = client.get(f"{API}/me/history?limit=1&before={page['next']}", headers=bearer("alice")).json()
        assert rest["entries"][0]["amount"] == 120
        # bob sees bob
        assert client.get(f"{API}/me", headers=bearer("bob")).json()["points"] == 0

        # corrections are reversals
        r = client.post(f"{API}/members/alice/reverse", json={"event_id": "adjust:k1", "reason": "given twice"}, headers=ADMIN)
        assert r.status_code == 201 and r.json()["points"] == 0, r.text
        r = client.post(f"{API}/members/alice/reverse", json={"event_id": "adjust:k1", "reason": "again"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["status"] == "duplicate" and r.json()["points"] == 0
        problem(client.post(f"{API}/members/bob/reverse", json={"event_id": "adjust:k1", "reason": "x"}, headers=ADMIN), 404, "not_found")
        problem(client.post(f"{API}/members/alice/reverse", json={"event_id": "reversal:adjust:k1", "reason": "x"}, headers=ADMIN), 409, "not_reversible")
        problem(client.post(f"{API}/members/alice/reverse", json={"event_id": "nope", "reason": "x"}, headers=ADMIN), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"account": "cash", "amount": 5, "reason": "r"}, "account"),
        ({"amount": 5, "reason": "r"}, "account"),
        ({"account": "points", "amount": 0, "reason": "r"}, "amount"),
        ({"account": "points", "amount": "5", "reason": "r"}, "amount"),
        ({"account": "points", "amount": True, "reason": "r"}, "amount"),
        ({"account": "points", "amount": 1.5, "reason": "r"}, "amount"),
        ({"account": "points", "amount": 10**9, "reason": "r"}, "amount"),
        ({"account": "points", "amount": 5}, "reason"),
        ({"account": "points", "amount": 5, "reason": "   "}, "reason"),
        ({"account": "points", "amount": 5, "reason": "r", "who": "me"}, "who"),
        ({"account": "points", "amount": 5, "reason": "r", "idempotency_key": 7}, "idempotency_key"),
    ],
)
def test_adjust_refuses_bad_input(tmp_path: Path, body: dict[str, Any], field: str) -> None:
    app, _ = make_node(tmp_path)
    with TestClient(app) as client:
        problem(adjust(client, "alice", body), 400, "invalid_field", field)
        assert client.get(f"{API}/members/alice/history", headers=ADMIN).json()["entries"] == []


def test_rest_bad_bodies_profile_and_overdraw(tmp_path: Path) -> None:
    app, _ = make_node(tmp_path)
    with TestClient(app) as client:
        url = f"{API}/members/alice/adjust"
        problem(client.post(url, content=b"{not json", headers=ADMIN), 400, "invalid_json")
        problem(client.post(url, content=b"[1, 2]", headers=ADMIN), 400, "invalid_json")
        problem(client.post(url, content=b"x" * 5000, headers=ADMIN), 413, "too_large")
        problem(client.get(f"{API}/members/{'x' * 201}", headers=ADMIN), 400, "invalid_identity")
        problem(client.get(f"{API}/me/history?limit=0", headers=bearer("alice")), 400, "invalid_field")
        problem(client.get(f"{API}/me/history?limit=ten", headers=bearer("alice")), 400, "invalid_field")
        problem(adjust(client, "alice", {"account": "points", "amount": -1, "reason": "r"}), 409, "insufficient")

        me = f"{API}/me"
        problem(client.patch(me, json={"timezone": "Mars/Olympus"}, headers=bearer("alice")), 400, "invalid_field", "timezone")
        problem(client.patch(me, json={"birthday": "02-30"}, headers=bearer("alice")), 400, "invalid_field", "birthday")
        problem(client.patch(me, json={"shoe_size": 9}, headers=bearer("alice")), 400, "invalid_field", "shoe_size")
        problem(client.patch(me, json={}, headers=bearer("alice")), 400, "invalid_field")
        r = client.patch(me, json={"birthday": "1990-07-04", "timezone": "America/Mexico_City"}, headers=bearer("alice"))
        assert r.status_code == 200 and (r.json()["birthday"], r.json()["timezone"]) == ("07-04", "America/Mexico_City")
        problem(client.patch(me, json={"birthday": "07-05"}, headers=bearer("alice")), 409, "birthday_locked")
        r = client.patch(f"{API}/members/alice", json={"birthday": "07-05"}, headers=ADMIN)
        assert r.status_code == 200 and r.json()["birthday"] == "07-05"
        problem(client.patch(f"{API}/members/alice", json={"birthday": "07-05"}, headers=bearer("alice")), 403, "forbidden")
        tiers = client.get(f"{API}/tiers", headers=bearer("alice")).json()["tiers"]
        assert [t["name"] for t in tiers] == ["bronze", "silver", "gold", "platinum", "diamond"]


def test_messages_checkin_share_profile_status(tmp_path: Path) -> None:
    app, _ = make_node(tmp_path, {"share_daily_cap": 2, "checkin_points": 3, "checkin_growth": 1})
    with TestClient(app) as client:
        with client.websocket_connect(f"/v1/rooms/shop1/ws?token={token('vera', 'viewer', 'shop1')}") as ws:
            send(ws, "loyalty.checkin", id="c1")
            done = receive(ws, "loyalty.checked_in")
            assert done["data"]["reply_to"] == "c1" and done["data"]["points"] == 3
            assert done["data"]["balance"] == {"points": 3, "growth": 1}
            send(ws, "loyalty.checkin", id="c2")
            refused = receive(ws, "loyalty.checked_in")
            assert refused["type"] == "error" and refused["data"]["code"] == "already_checked_in"

            shared = []
            for i in range(3):
                send(ws, "loyalty.share", {"channel": "line"}, id=f"s{i}")
                shared.append(receive(ws, "loyalty.shared")["data"])
            assert [s["credited"] for s in shared] == [True, True, False]
            assert [s["remaining"] for s in shared] == [1, 0, 0]
            assert shared[-1]["balance"] == {"points": 5, "growth": 3}

            send(ws, "loyalty.profile", {"timezone": "Nowhere/Land"})
            assert receive(ws, "loyalty.profile")["data"]["code"] == "invalid_data"
            send(ws, "loyalty.profile", {"birthday": "03-15", "timezone": "Asia/Tokyo"})
            assert receive(ws, "loyalty.profile")["data"] == {"birthday": "03-15", "timezone": "Asia/Tokyo"}
            send(ws, "loyalty.status")
            status = receive(ws, "loyalty.status")["data"]
            assert (status["points"], status["growth"], status["timezone"]) == (5, 3, "Asia/Tokyo")
        # hosts are sellers, not members: the messages are not theirs (earning_roles)
        with client.websocket_connect(f"/v1/rooms/shop1/ws?token={token('sam', 'host', 'shop1')}") as ws:
            send(ws, "loyalty.checkin")
            assert receive(ws, "loyalty.checked_in")["data"]["code"] == "forbidden"


def test_purchases_redemption_and_refund_through_events_and_the_service(tmp_path: Path) -> None:
    app, _ = make_node(tmp_path, {"purchase_points_per_unit": 0.1})
    with TestClient(app) as client:
        assert adjust(client, "alice", {"account": "points", "amount": 100, "reason": "float"}).status_code == 201
        assert redeem(client, "alice", 30, "o1") is True
        assert member(client, "alice")["points"] == 70
        assert redeem(client, "alice", 30, "o1") is True  # the same redemption again: no second debit
        assert member(client, "alice")["points"] == 70
        assert redeem(client, "alice", 31, "o1") is False  # the order already redeemed something else
        assert redeem(client, "alice", 1000, "o2") is False  # not enough points
        assert redeem(client, "alice", 0, "o3") is False and redeem(client, "alice", -5, "o3") is False
        assert redeem(client, "nobody", 1, "o4") is False
        assert member(client, "alice")["points"] == 70

        emit(client, "commerce.order_paid", order("o1", "alice", "250.90"))
        emit(client, "commerce.order_paid", order("o1", "alice", "250.90"))  # delivered twice: credited once
        m = member(client, "alice")
        assert (m["growth"], m["points"]) == (250, 70 + 25)
        assert (m["tier"], m["privileges"], m["priority_shipping"]) == ("silver", ["member_price"], False)

        emit(client, "commerce.order_refunded", order("o1", "alice", "250.90"))
        m = member(client, "alice")
        assert (m["growth"], m["points"]) == (0, 100)  # growth and purchase points reversed, redemption back
        assert m["tier"] == "silver"  # period policy: kept until the grace period is over
        me = client.get(f"{API}/me", headers=bearer("alice")).json()
        assert me["below_threshold_since"] is not None
        r = client.post("/v1/plugins/shop/reverse", json={"order_id": "o1"}, headers=ADMIN)
        assert r.json()["ok"] is True and member(client, "alice")["points"] == 100  # already reversed
        assert client.post("/v1/plugins/shop/reverse", json={"order_id": "none"}, headers=ADMIN).json()["ok"] is False
        kinds = [(e["event_id"], e["account"], e["amount"]) for e in client.get(f"{API}/members/alice/history", headers=ADMIN).json()["entries"]]
        assert ("reversal:order:o1", "growth", -250) in kinds and ("reversal:redeem:o1", "points", 30) in kinds

        # a cancelled or expired order gives its redeemed points back
        assert redeem(client, "alice", 10, "o5") is True
        emit(client, "commerce.order_cancelled", order("o5", "alice", "10"))
        assert member(client, "alice")["points"] == 100

        # big spenders get the privileges other plugins check
        emit(client, "commerce.order_paid", order("o6", "bob", "2000"))
        m = member(client, "bob")
        assert (m["tier"], m["level"], m["priority_shipping"]) == ("platinum", 4, True)

        # events from anyone but commerce, and malformed events, are ignored
        emit(client, "commerce.order_paid", order("o10", "bob", "900"), source="segments")
        for bad in ({"order_id": "o7", "buyer": "bob", "amount_base": "lots"}, {"order_id": "o8", "amount_base": "5"},
                    {"order_id": "o9", "buyer": "bob", "amount_base": "-5"}, {"buyer": "bob", "amount_base": "5"}):
            emit(client, "commerce.order_paid", bad)
        assert member(client, "bob")["growth"] == 2000

    # the ledger is on disk: a new node on the same data dir has the same balances
    app, _ = make_node(tmp_path, {"purchase_points_per_unit": 0.1})
    with TestClient(app) as client:
        assert (member(client, "alice")["points"], member(client, "bob")["growth"]) == (100, 2000)


def test_interactions_from_chat_and_likes_are_capped(tmp_path: Path) -> None:
    config = {"interaction_daily_cap": 5, "interaction_growth": 1, "interaction_points": 0}
    app, _ = make_node(tmp_path, config, ("chat", ChatPlugin()))
    with TestClient(app) as client:
        with client.websocket_connect(f"/v1/rooms/shop1/ws?token={token('vic', 'viewer', 'shop1')}") as ws, \
                client.websocket_connect(f"/v1/rooms/shop1/ws?token={token('sam', 'host', 'shop1')}") as host:
            for i in range(4):
                send(ws, "chat.send", {"text": f"hello {i}"}, id=f"m{i}")
                receive(ws, "chat.message")
                send(host, "chat.send", {"text": f"welcome {i}"})  # the seller earns nothing
                receive(host, "chat.message")
            for _ in range(4):
                send(ws, "like", {"count": 3})

            def growth() -> Any:
                body = client.get(f"{API}/me", headers=bearer("vic")).json()
                return body if body["growth"] >= 5 else None

            assert wait_until(growth)["growth"] == 5
        assert client.get(f"{API}/me", headers=bearer("sam")).json()["growth"] == 0
        history = client.get(f"{API}/members/vic/history", headers=ADMIN).json()["entries"]
        assert len(history) == 5 and {e["rule"] for e in history} == {"interaction"}
