"""The segments plugin end to end: a real `edge serve` subprocess that loads the
installed `edge-segments` entry point and the test plugin `fake_commerce` (which
publishes commerce's events and the session hooks), real WebSocket clients, and
the plugin's HTTP routes. Each test uses rooms of its own on one shared node.
"""

from __future__ import annotations

import csv
import hashlib
import io
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from edge_segments import draws

from ..nodeproc import NodeProcess
from .clients import Client, close_all

CONFIG = """
[plugins]
load = ["tests.segments.fake_commerce"]

[plugins.segments]
notifiers = ["inroom", "fakepush"]
"""
BASE = "/v1/plugins/segments"


@pytest.fixture(scope="module")
def node() -> Iterator[NodeProcess]:
    path = Path(tempfile.mkdtemp(prefix="edge-segments-conf-")) / "edge.toml"
    path.write_text(CONFIG)
    proc = NodeProcess(env={"EDGE_CONFIG": str(path), "EDGE_LOAD_PLUGINS": "segments"}).start()
    yield proc
    proc.stop()


def get(node: NodeProcess, path: str, room: str | None = None, identity: str = "h", role: str = "host",
        token: str | None = None) -> httpx.Response:
    if token is None and room is not None:
        token = node.token(room, identity, role)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(node.url + BASE + path, headers=headers, timeout=5)


def is_coupon(reason: str, sku: str | None = None):  # type: ignore[no-untyped-def]
    return lambda e: e["data"]["reason"] == reason and (sku is None or e["data"]["sku"] == sku)


async def join_viewers(node: NodeProcess, room: str, *identities: str) -> list[Client]:
    """Viewers that are new to the room: each is greeted with its welcome coupon."""
    clients = []
    for identity in identities:
        client = await Client.join(node, room, identity)
        await client.wait_for("coupon.granted", is_coupon("welcome"))
        clients.append(client)
    return clients


async def sentinel(host: Client, clients: list[Client], text: str) -> None:
    """A room broadcast every client reads: what arrived before it has been read."""
    await host.do("fake.mark", {"text": text})
    for client in clients:
        if not any(e["type"] == "fake.mark" and e["data"]["text"] == text for e in client.seen):
            await client.wait_for("fake.mark", lambda e: e["data"]["text"] == text)


# targeted coupons ---------------------------------------------------------------------------


async def test_only_the_repeated_clicker_gets_a_coupon_when_the_product_is_pinned(node: NodeProcess) -> None:
    room = "seg-target"
    host = await Client.join(node, room, "h", "host")
    clicker, other, buyer = await join_viewers(node, room, "clicker", "other", "buyer")
    everyone = [host, clicker, other, buyer]
    for _ in range(3):
        await clicker.do("fake.click", {"sku": "X"})
        await clicker.do("fake.click", {"sku": "Y"})
        await buyer.do("fake.click", {"sku": "X"})
    await other.do("fake.click", {"sku": "X"})
    await other.do("fake.click", {"sku": "X"})  # two clicks: not enough
    await buyer.do("fake.pay", {"sku": "X", "order_id": "t-1", "amount_base": "9.99"})  # bought it

    await host.do("fake.pin", {"sku": "X"})
    coupon = await clicker.wait_for("coupon.granted", is_coupon("targeted"))
    data = coupon["data"]
    assert data["sku"] == "X" and data["percent_off"] == 10 and data["code"].startswith("SEG-")
    assert data["expires_at"] == pytest.approx(time.time() + 2 * 3600, abs=60)
    await sentinel(host, everyone, "after-pin")
    for client in (host, other, buyer):
        assert [e for e in client.received("coupon.granted") if e["data"]["reason"] == "targeted"] == []
    assert host.received("coupon.granted") == []

    # pinned again: one coupon per (viewer, reason, sku); the host explaining Y gives the Y one
    await host.do("fake.pin", {"sku": "X"})
    answer = await host.request("segments.explain", {"sku": "Y"})
    assert answer["type"] == "segments.explained" and answer["data"]["coupons"] == 1
    await clicker.wait_for("coupon.granted", is_coupon("targeted", "Y"))
    await sentinel(host, everyone, "after-explain")
    assert [e["data"]["sku"] for e in clicker.received("coupon.granted")] == [None, "X", "Y"]
    for client in (other, buyer):
        assert [e["data"]["reason"] for e in client.received("coupon.granted")] == ["welcome"]

    # the viewer lists its own coupons (unique codes); staff see the room's
    mine = get(node, f"/rooms/{room}/coupons", room, "clicker", "viewer").json()["coupons"]
    assert sorted((c["reason"], c["subject"]) for c in mine) == [
        ("targeted", "X"), ("targeted", "Y"), ("welcome", ""),
    ]
    assert {c["identity"] for c in mine} == {"clicker"}
    assert get(node, f"/rooms/{room}/coupons?identity=other", room, "clicker", "viewer").status_code == 403
    everything = get(node, f"/rooms/{room}/coupons", room).json()["coupons"]
    assert len({c["code"] for c in everything}) == len(everything) == 5
    # the adapter in [plugins.segments] notifiers got them as well
    pushed = httpx.get(node.url + "/v1/plugins/fake_commerce/push", headers=node.admin_headers()).json()["sent"]
    targeted = [p for p in pushed if p["room"] == room and p["data"].get("reason") == "targeted"]
    assert [(p["identity"], p["kind"], p["data"]["sku"]) for p in targeted] == [
        ("clicker", "coupon.granted", "X"), ("clicker", "coupon.granted", "Y"),
    ]
    await close_all(everyone)


async def test_welcome_coupon_for_a_first_time_viewer_only(node: NodeProcess) -> None:
    room = "seg-welcome"
    host = await Client.join(node, room, "h", "host")
    first = await Client.join(node, room, "newbie")
    coupon = await first.wait_for("coupon.granted")
    assert coupon["data"]["reason"] == "welcome" and coupon["data"]["percent_off"] == 5
    await first.close()
    again = await Client.join(node, room, "newbie")  # seen before in this room
    await sentinel(host, [again], "back")
    assert again.received("coupon.granted") == []
    elsewhere = await Client.join(node, room + "-2", "newbie")  # new to that room
    await elsewhere.wait_for("coupon.granted", is_coupon("welcome"))
    await sentinel(host, [host], "host")
    assert host.received("coupon.granted") == []  # staff are not viewers
    await close_all([host, again, elsewhere])


# referrals ------------------------------------------------------------------------------------


async def test_referral_rewards_both_on_the_first_order_and_is_tracked(node: NodeProcess) -> None:
    room = "seg-ref"
    host = await Client.join(node, room, "h", "host")
    alice, = await join_viewers(node, room, "alice")
    await alice.close()  # the referrer is not here when the invitee buys
    bob, carol = await join_viewers(node, room, "bob", "carol")

    assert (await bob.request("segments.referred", {"referrer": "bob"}))["data"]["code"] == "invalid_data"
    assert (await bob.request("segments.referred", {"referrer": "nobody"}))["data"]["code"] == "not_found"
    answer = await bob.request("segments.referred", {"referrer": "alice", "source": "wechat"})
    assert answer["type"] == "segments.referral" and answer["data"]["status"] == "recorded"
    again = await bob.request("segments.referred", {"referrer": "alice"})  # the page sends it on every connect
    assert again["data"]["status"] == "recorded"
    other = await bob.request("segments.referred", {"referrer": "carol"})  # the first referrer keeps it
    assert other["data"] == {"referrer": "alice", "status": "already_referred", "reply_to": other["data"]["reply_to"]}
    await carol.request("segments.referred", {"referrer": "alice"})

    await bob.do("fake.pay", {"sku": "X", "order_id": "r-1", "amount_base": "30.00"})
    coupon = await bob.wait_for("coupon.granted", is_coupon("referral_invitee"))
    assert coupon["data"]["referrer"] == "alice"
    await bob.do("fake.pay", {"sku": "X", "order_id": "r-2", "amount_base": "5.00"})  # not a first order
    alice = await Client.join(node, room, "alice")
    reward = await alice.wait_for("coupon.granted")  # kept for her, delivered on her next visit
    assert reward["data"]["reason"] == "referral_referrer" and reward["data"]["invitee"] == "bob"
    assert (await carol.request("segments.referred", {"referrer": "bob"}))["type"] == "segments.referral"

    body = get(node, f"/rooms/{room}/referrals", room).json()
    by_invitee = {r["invitee"]: r for r in body["referrals"]}
    assert by_invitee["bob"]["referrer"] == "alice" and by_invitee["bob"]["source"] == "wechat"
    assert by_invitee["bob"]["converted"] and by_invitee["bob"]["order_id"] == "r-1"
    assert by_invitee["bob"]["amount_base"] == "30.00"
    assert not by_invitee["carol"]["converted"]
    assert body["by_referrer"] == [
        {"referrer": "alice", "invites": 2, "conversions": 1, "converted_amount_base": "30.00"}
    ]
    assert get(node, f"/rooms/{room}/referrals", room, "bob", "viewer").status_code == 403
    await sentinel(host, [bob], "end")
    assert [e["data"]["reason"] for e in bob.received("coupon.granted")] == ["welcome", "referral_invitee"]
    await close_all([host, alice, bob, carol])


# draws ----------------------------------------------------------------------------------------


async def test_draw_commits_to_its_seed_and_anyone_can_verify_the_winners(node: NodeProcess) -> None:
    room = "seg-draw"
    host = await Client.join(node, room, "h", "host")
    viewers = await join_viewers(node, room, "v3", "v1", "v2")
    assert (await viewers[0].request("draw.create", {"title": "x"}))["data"]["code"] == "forbidden"
    assert (await host.request("draw.create", {"winners": 0}))["data"]["code"] == "invalid_data"
    assert (await host.request("draw.run", {"draw_id": "nope"}))["data"]["code"] == "not_found"

    await host.send("draw.create", {"title": "Lucky bag", "winners": 2})
    created = [await c.wait_for("draw.created") for c in [host, *viewers]]
    draw_id, commitment = created[0]["data"]["draw_id"], created[0]["data"]["commitment"]
    assert {c["data"]["commitment"] for c in created} == {commitment}
    before = get(node, f"/rooms/{room}/draws/{draw_id}", room, "v1", "viewer").json()
    assert before["status"] == "committed" and before["seed"] is None and before["winners"] is None

    await host.send("draw.run", {"draw_id": draw_id})
    results = [await c.wait_for("draw.result") for c in [host, *viewers]]
    result = results[0]["data"]
    assert all(r["data"] == result for r in results)
    seed = result["seed"]
    assert hashlib.sha256(bytes.fromhex(seed)).hexdigest() == commitment
    assert result["participants"] == 3 and len(result["winners"]) == 2

    proof = get(node, result["verify"].removeprefix(BASE), room, "v2", "viewer").json()
    assert proof["status"] == "drawn" and proof["verified"] is True
    assert proof["participants"] == ["v1", "v2", "v3"] and proof["seed"] == seed
    # re-compute the winners from the revealed seed, by the documented algorithm
    remaining, expected = sorted(proof["participants"]), []
    for r in range(2):
        digest = hashlib.sha256((f"{seed}:{r}:" + "\n".join(remaining)).encode()).hexdigest()
        expected.append(remaining.pop(int(digest, 16) % len(remaining)))
    assert expected == proof["winners"] == result["winners"] == draws.winners(seed, proof["participants"], 2)
    for client in viewers:
        if client.identity in expected:
            await client.wait_for("draw.won", lambda e: e["data"]["draw_id"] == draw_id)

    assert (await host.request("draw.run", {"draw_id": draw_id}))["data"]["code"] == "already_run"
    assert get(node, f"/rooms/{room}/draws/{draw_id}", "other-room", "v1", "viewer").status_code == 403
    assert get(node, f"/rooms/{room}/draws/{draw_id}").status_code == 401
    assert get(node, f"/rooms/{room}/draws/missing", room).status_code == 404
    await close_all([host, *viewers])


# polls ----------------------------------------------------------------------------------------


async def test_poll_takes_one_vote_per_viewer_and_broadcasts_the_results(node: NodeProcess) -> None:
    room = "seg-poll"
    host = await Client.join(node, room, "h", "host")
    v1, v2, v3 = await join_viewers(node, room, "p1", "p2", "p3")
    for bad in ({"question": "Which?", "options": ["only"]}, {"question": "", "options": ["a", "b"]},
                {"question": "Which?", "options": ["a", "a"]}, {"question": "Which?", "options": ["a", 2]},
                {"question": "Which?", "options": "a,b"}):
        assert (await host.request("poll.create", bad))["data"]["code"] == "invalid_data", bad
    assert (await v1.request("poll.create", {"question": "q", "options": ["a", "b"]}))["data"]["code"] == "forbidden"

    await host.send("poll.create", {"question": "Next colour?", "options": ["red", "green", "blue"]})
    created = [await c.wait_for("poll.created") for c in (host, v1, v2, v3)]
    poll_id = created[0]["data"]["poll_id"]
    assert created[1]["data"] == {"poll_id": poll_id, "question": "Next colour?", "options": ["red", "green", "blue"]}
    late = await Client.join(node, room, "p4")  # a late joiner is shown the open poll
    await late.wait_for("poll.created", lambda e: e["data"]["poll_id"] == poll_id)

    for client, option in ((v1, 0), (v2, 2), (v3, 0)):
        answer = await client.request("poll.vote", {"poll_id": poll_id, "option": option})
        assert answer["type"] == "poll.voted" and answer["data"]["option"] == option
    assert (await v1.request("poll.vote", {"poll_id": poll_id, "option": 1}))["data"]["code"] == "already_voted"
    # a viewer who reconnects after voting is shown the counts and their own vote
    again = await Client.join(node, room, v1.identity)
    shown = await again.wait_for("poll.results", lambda e: e["data"]["poll_id"] == poll_id)
    assert shown["data"]["voted"] == 0 and shown["data"]["closed"] is False
    assert sum(shown["data"]["counts"]) >= 1
    assert (await late.request("poll.vote", {"poll_id": poll_id, "option": 3}))["data"]["code"] == "invalid_data"
    assert (await late.request("poll.vote", {"poll_id": "zzz", "option": 0}))["data"]["code"] == "not_found"
    assert (await host.request("poll.vote", {"poll_id": poll_id, "option": 0}))["data"]["code"] == "forbidden"

    await host.send("poll.close", {"poll_id": poll_id})
    final = [await c.wait_for("poll.results", lambda e: e["data"]["closed"]) for c in (host, v1, v2, v3, late)]
    assert final[0]["data"] == {
        "poll_id": poll_id, "question": "Next colour?", "options": ["red", "green", "blue"],
        "counts": [2, 0, 1], "total": 3, "closed": True,
    }
    assert all(f["data"] == final[0]["data"] for f in final)
    assert (await late.request("poll.vote", {"poll_id": poll_id, "option": 0}))["data"]["code"] == "poll_closed"
    assert (await host.request("poll.close", {"poll_id": poll_id}))["data"]["code"] == "poll_closed"
    await close_all([host, v1, v2, v3, late])


# segment actions through the notifier, then the reports ---------------------------------------


async def test_high_value_then_new_buyer_actions_reach_the_viewer_once(node: NodeProcess) -> None:
    room = "seg-hv"
    host = await Client.join(node, room, "h", "host")
    v, = await join_viewers(node, room, "fan")
    await v.do("fake.click", {"sku": "X"})
    await v.do("fake.click", {"sku": "Z"})
    await v.do("fake.watch", {"seconds": 1700})  # node-measured session: 28 min 20 s
    await sentinel(host, [v], "28min")
    assert "segments.members_live_invite" not in v.types()
    await v.do("fake.watch", {"seconds": 101})  # 30 min 1 s in total
    invite = await v.wait_for("segments.members_live_invite")
    assert invite["data"]["segment"] == "high_value" and invite["data"]["action"] == "members_live_invite"
    discount = await v.wait_for("coupon.granted", is_coupon("high_value"))
    assert discount["data"]["percent_off"] == 15
    await v.do("fake.watch", {"seconds": 60})
    await v.do("fake.pay", {"sku": "X", "order_id": "hv-1", "amount_base": "49.00"})
    bundle = await v.wait_for("segments.bundle_recommendation")
    assert bundle["data"]["sku"] == "X"
    await v.wait_for("segments.membership_onboarding")
    await sentinel(host, [v], "done")
    assert v.types().count("segments.members_live_invite") == 1

    segments = get(node, f"/rooms/{room}/segments", room).json()["segments"]
    assert segments["high_value"] == {"count": 0, "members": []}
    assert [m["identity"] for m in segments["new_buyer"]["members"]] == ["fan"]
    profile = get(node, f"/rooms/{room}/profiles/fan", room, "fan", "viewer").json()
    assert profile["watch_seconds"] == pytest.approx(1861, abs=0.01)
    assert profile["clicks_by_sku"] == {"X": 1, "Z": 1} and profile["orders"] == 1
    assert profile["segments"] == ["new_buyer"] and profile["spend_base"] == "49.00"
    assert [a["action"] for a in profile["actions"]] == [
        "members_live_invite", "time_limited_discount", "bundle_recommendation", "membership_onboarding",
    ]
    assert get(node, f"/rooms/{room}/profiles/h", room, "fan", "viewer").status_code == 403
    assert get(node, f"/rooms/{room}/profiles/ghost", room).status_code == 404
    await close_all([host, v])


async def test_metrics_json_and_csv(node: NodeProcess) -> None:
    room = "seg-metrics"
    host = await Client.join(node, room, "h", "host")
    viewers = await join_viewers(node, room, "m1", "m2", "m3", "m4")
    now = time.time()
    orders = [("m1", "o1", "10.00", now), ("m1", "o2", "5.50", now), ("m2", "o3", "20.00", now),
              ("old", "o4", "4.50", now - 40 * 86400), ("m4", "o5", "99.00", now)]
    for buyer, order_id, amount, at in orders:
        await host.do("fake.pay", {"buyer": buyer, "sku": "X", "order_id": order_id, "amount_base": amount, "at": at})
    await host.do("fake.pay", {"buyer": "m1", "sku": "X", "order_id": "o1", "amount_base": "10.00"})  # a retry
    await host.do("fake.refund", {"order_id": "o5"})

    m = get(node, f"/rooms/{room}/metrics", room).json()
    assert (m["known_viewers"], m["active_viewers"], m["member_monthly_activity"]) == (5, 4, 0.8)
    assert (m["buyers"], m["repeat_buyers"], m["orders"]) == (3, 1, 4)
    assert m["repurchase_rate"] == round(1 / 3, 6) and m["purchase_frequency"] == round(4 / 3, 6)
    assert (m["revenue_base"], m["clv_mean_base"]) == ("40.00", "13.33")
    assert m["segment_new_buyer"] == 3  # m1, m2, m4 (refunded, first order stays); old's is 40 days ago

    response = get(node, f"/rooms/{room}/metrics.csv", room, "co", "cohost")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["metric", "value"]
    table = dict(rows[1:])
    assert table["repurchase_rate"] == str(round(1 / 3, 6)) and table["revenue_base"] == "40.00"
    assert table["known_viewers"] == "5" and table["room"] == room
    await close_all([host, *viewers])


async def test_roles_and_bad_input(node: NodeProcess) -> None:
    room = "seg-roles"
    host = await Client.join(node, room, "h", "host")
    viewer, = await join_viewers(node, room, "v")
    assert (await viewer.request("segments.explain", {"sku": "X"}))["data"]["code"] == "forbidden"
    assert (await host.request("segments.referred", {"referrer": "v"}))["data"]["code"] == "forbidden"
    assert (await host.request("segments.explain", {"sku": ""}))["data"]["code"] == "invalid_data"
    assert (await host.request("segments.explain", {"sku": 3}))["data"]["code"] == "invalid_data"
    assert (await host.request("segments.explain", {"sku": "X", "extra": 1}))["data"]["code"] == "invalid_data"
    assert (await viewer.request("segments.referred", {}))["data"]["code"] == "invalid_data"
    assert (await viewer.request("poll.vote", {"poll_id": "p", "option": "1"}))["data"]["code"] == "invalid_data"
    assert (await host.request("draw.create", {"title": "x" * 201}))["data"]["code"] == "invalid_data"

    for path in ("metrics", "metrics.csv", "segments", "referrals"):
        assert get(node, f"/rooms/{room}/{path}", room, "v", "viewer").status_code == 403, path
        assert get(node, f"/rooms/{room}/{path}", room, "m", "moderator").status_code == 403, path
        assert get(node, f"/rooms/{room}/{path}").status_code == 401, path
        assert get(node, f"/rooms/{room}/{path}", "another", "h", "host").status_code == 403, path
        admin = get(node, f"/rooms/{room}/{path}", token=node.token("*", "ops", "admin"))
        assert admin.status_code == 200, path
    bad = get(node, "/rooms/bad%20room/metrics", token=node.token("*", "ops", "admin"))
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    invalid = get(node, f"/rooms/{room}/segments?limit=0", room)
    assert invalid.status_code == 400 and invalid.json()["type"].endswith("invalid_query")
    assert get(node, f"/rooms/{room}/segments?limit=abc", room).status_code == 400
    await close_all([host, viewer])
