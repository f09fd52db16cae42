"""Service tickets over real WebSockets against a real node (docs/aftersales.md).

The node loads the installed after-sales plugin and ``fake_commerce``, a test
double that emits ``commerce.order_paid`` for its sender on ``test.order``, and
provides test doubles of the loyalty and recordings services.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from ..nodeproc import NodeProcess
from .clients import Client, ahttp, close_all, metrics, poll

HIST_COUNT = 'edge_aftersales_first_response_seconds_count{queue="%s"}'


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def order(client: Client, sku: str = "SWEATER-1") -> str:
    order_id = uid("o")
    await client.ok("test.order", {"order_id": order_id, "sku": sku}, "test.ok")
    return order_id


def event(name: str, ticket_id: str) -> Any:
    return lambda e: e["data"]["event"] == name and e["data"]["ticket"]["ticket_id"] == ticket_id


async def test_ticket_lifecycle_buyer_and_agent_over_websockets(as_node: NodeProcess) -> None:
    room = uid("shop")
    buyer = await Client.join(as_node, room, "ana", "viewer")
    agent = await Client.join(as_node, room, "agent-1", "service")
    second_tab = await Client.join(as_node, room, "ana", "viewer")
    order_id = await order(buyer)
    before = await metrics(as_node)

    opened = await buyer.ok(
        "aftersales.open", {"order_id": order_id, "reason": "damaged", "text": "The zip came broken"}, "aftersales.opened"
    )
    ticket = opened["ticket"]
    ticket_id = ticket["ticket_id"]
    assert opened["existing"] is False
    assert ticket["order_id"] == order_id and ticket["buyer"] == "ana" and ticket["room"] == room
    assert ticket["sku"] == "SWEATER-1" and ticket["reason"] == "damaged" and ticket["status"] == "open"
    assert ticket["queue"] == "normal" and ticket["awaiting"] == "agent" and ticket["first_response_seconds"] is None
    assert opened["message"]["text"] == "The zip came broken" and opened["message"]["kind"] == "buyer"

    # the agent of the room sees the new ticket, with its first message
    seen = await agent.wait_for("aftersales.ticket", event("opened", ticket_id))
    assert seen["data"]["message"]["text"] == "The zip came broken"
    assert seen["data"]["message"]["from"] == {"identity": "ana", "role": "viewer"}
    queue = await agent.ok("aftersales.queue", {}, "aftersales.queue")
    assert [t["ticket_id"] for t in queue["tickets"]] == [ticket_id]

    # the agent answers: the buyer (both tabs) gets it; the first response is recorded
    sent = await agent.ok("aftersales.message", {"ticket_id": ticket_id, "text": "Sorry! Sending a new one."}, "aftersales.sent")
    for tab in (buyer, second_tab):
        answer = await tab.wait_for("aftersales.message", lambda e: e["data"]["message_id"] == sent["message_id"])
        assert answer["data"]["text"] == "Sorry! Sending a new one."
        assert answer["data"]["kind"] == "agent" and answer["data"]["from"] == {"identity": "agent-1", "role": "service"}
        answered = await tab.wait_for("aftersales.ticket", event("answered", ticket_id))
        first = answered["data"]["ticket"]["first_response_seconds"]
        assert 0 <= first < 10 and answered["data"]["ticket"]["awaiting"] == "buyer"

    # the buyer follows up; the agent sees it
    await buyer.ok("aftersales.message", {"ticket_id": ticket_id, "text": "Thanks, how long?"}, "aftersales.sent")
    follow = await agent.wait_for("aftersales.message", lambda e: e["data"]["text"] == "Thanks, how long?")
    assert follow["data"]["kind"] == "buyer" and follow["data"]["ticket_id"] == ticket_id

    # opening again for the same order joins the open ticket
    again = await buyer.ok(
        "aftersales.open", {"order_id": order_id, "reason": "other", "text": "Also the colour"}, "aftersales.opened"
    )
    assert again["existing"] is True and again["ticket"]["ticket_id"] == ticket_id

    # the conversation, to the buyer and over REST
    history = await buyer.ok("aftersales.history", {"ticket_id": ticket_id}, "aftersales.history")
    texts = [m["text"] for m in history["messages"]]
    assert texts == ["The zip came broken", "Sorry! Sending a new one.", "Thanks, how long?", "Also the colour"]
    detail = await ahttp(as_node, "GET", f"/tickets/{ticket_id}", as_node.token(room, "agent-1", "service"))
    assert detail.status_code == 200, detail.text
    assert [m["text"] for m in detail.json()["messages"]] == texts
    assert detail.json()["ticket"]["first_response_seconds"] == first

    # closing: the buyer is told the resolution; nothing more can be said
    await agent.ok("aftersales.close", {"ticket_id": ticket_id, "resolution": "Replacement shipped"}, "aftersales.sent")
    closed = await buyer.wait_for("aftersales.ticket", event("closed", ticket_id))
    assert closed["data"]["ticket"]["status"] == "closed"
    assert closed["data"]["ticket"]["resolution"] == "Replacement shipped"
    assert closed["data"]["ticket"]["closed_by"] == "agent-1"
    await buyer.refused("aftersales.message", {"ticket_id": ticket_id, "text": "hello?"}, "ticket_closed")
    await agent.refused("aftersales.close", {"ticket_id": ticket_id, "resolution": "again"}, "ticket_closed")
    assert (await agent.ok("aftersales.queue", {}, "aftersales.queue"))["tickets"] == []

    # the buyer's own list
    mine = await buyer.ok("aftersales.mine", {}, "aftersales.mine")
    assert [o["order_id"] for o in mine["orders"]] == [order_id]
    assert [(t["ticket_id"], t["status"]) for t in mine["tickets"]] == [(ticket_id, "closed")]
    assert "damaged" in mine["reasons"]

    # first-response time on /metrics (admin)
    after = await metrics(as_node)
    assert after[HIST_COUNT % "normal"] == before[HIST_COUNT % "normal"] + 1
    assert after["edge_aftersales_tickets_closed_total"] >= 1
    assert after["edge_aftersales_first_response_target_seconds"] == 30.0
    stats = await ahttp(as_node, "GET", f"/rooms/{room}/stats", as_node.token(room, "agent-1", "service"))
    assert stats.status_code == 200, stats.text
    body = stats.json()
    assert body["open"] == 0 and body["closed"] == 1
    assert body["first_response"]["median_seconds"] == round(first, 3)
    assert body["first_response"]["answered_within_target"] == 1
    await close_all(buyer, agent, second_tab)


async def test_a_buyer_cannot_open_or_read_a_ticket_for_someone_elses_order(as_node: NodeProcess) -> None:
    room = uid("shop")
    alice = await Client.join(as_node, room, "alice", "viewer")
    mallory = await Client.join(as_node, room, "mallory", "viewer")
    other_agent = await Client.join(as_node, uid("other-shop"), "agent-x", "service")
    alices_order = await order(alice)

    refused = await mallory.refused(
        "aftersales.open", {"order_id": alices_order, "reason": "damaged", "text": "give me a refund"}, "not_found"
    )
    unknown = await mallory.refused(
        "aftersales.open", {"order_id": "o-nope", "reason": "damaged", "text": "x"}, "not_found"
    )
    assert refused["reason"].replace(alices_order, "?") == unknown["reason"].replace("o-nope", "?")  # nothing disclosed
    # a question naming her order does not open one either
    await mallory.refused("aftersales.ask", {"text": "zzz qqq", "order_id": alices_order}, "not_found")

    ticket = (await alice.ok(
        "aftersales.open", {"order_id": alices_order, "reason": "not_received", "text": "Where is it?"}, "aftersales.opened"
    ))["ticket"]
    for kind, data in [
        ("aftersales.message", {"ticket_id": ticket["ticket_id"], "text": "I am the buyer"}),
        ("aftersales.history", {"ticket_id": ticket["ticket_id"]}),
    ]:
        await mallory.refused(kind, data, "not_found")
        await other_agent.refused(kind, data, "not_found")  # an agent of another room
    await other_agent.refused("aftersales.close", {"ticket_id": ticket["ticket_id"], "resolution": "x"}, "not_found")
    # mallory heard nothing of alice's ticket
    assert not [e for e in mallory.seen if e["type"].startswith("aftersales.") and e["type"] != "aftersales.error"]
    await close_all(alice, mallory, other_agent)


async def test_roles_and_bad_input_are_refused(as_node: NodeProcess) -> None:
    room = uid("shop")
    buyer = await Client.join(as_node, room, "bea", "viewer")
    host = await Client.join(as_node, room, "seller", "host")
    order_id = await order(buyer)
    ticket_id = (await buyer.ok(
        "aftersales.open", {"order_id": order_id, "reason": "size_fit", "text": "Too small"}, "aftersales.opened"
    ))["ticket"]["ticket_id"]

    # roles: only agents close and read the queue; a host is not an agent on the message path
    await buyer.refused("aftersales.close", {"ticket_id": ticket_id, "resolution": "done"}, "forbidden")
    await buyer.refused("aftersales.queue", {}, "forbidden")
    await host.refused("aftersales.close", {"ticket_id": ticket_id, "resolution": "done"}, "forbidden")
    await host.refused("aftersales.message", {"ticket_id": ticket_id, "text": "hi"}, "not_found")

    # bad input
    good = {"order_id": order_id, "reason": "damaged", "text": "x"}
    await buyer.refused("aftersales.open", {**good, "reason": "because"}, "invalid_data")
    await buyer.refused("aftersales.open", {**good, "text": "   "}, "invalid_data")
    await buyer.refused("aftersales.open", {**good, "order_id": 12}, "invalid_data")
    await buyer.refused("aftersales.open", {**good, "order_id": "bad id!"}, "invalid_data")
    await buyer.refused("aftersales.open", {"order_id": order_id, "text": "x"}, "invalid_data")
    await buyer.refused("aftersales.open", {**good, "extra": 1}, "invalid_data")
    await buyer.send("aftersales.open", {**good, "text": "x" * 1001})  # over the node's string cap: no reply_to
    await buyer.wait_for("error", lambda e: e["data"]["code"] == "invalid_envelope")
    await buyer.refused("aftersales.message", {"ticket_id": "tk-000000000000", "text": "x"}, "not_found")
    await buyer.refused("aftersales.ask", {"text": "size?", "sku": "bad sku!"}, "invalid_data")

    # REST
    viewer_token = as_node.token(room, "bea", "viewer")
    host_token = as_node.token(room, "seller", "host")
    service_token = as_node.token(room, "agent", "service")
    other_room_agent = as_node.token("elsewhere", "agent", "service")
    assert (await ahttp(as_node, "GET", f"/rooms/{room}/tickets")).status_code == 401
    assert (await ahttp(as_node, "GET", f"/rooms/{room}/tickets", "not-a-token")).status_code == 401
    assert (await ahttp(as_node, "GET", f"/rooms/{room}/tickets", viewer_token)).status_code == 403
    assert (await ahttp(as_node, "GET", f"/rooms/{room}/tickets", other_room_agent)).status_code == 403
    listed = await ahttp(as_node, "GET", f"/rooms/{room}/tickets", host_token)
    assert listed.status_code == 200 and [t["ticket_id"] for t in listed.json()["tickets"]] == [ticket_id]
    bad_query = await ahttp(as_node, "GET", f"/rooms/{room}/tickets?status=maybe", host_token)
    assert bad_query.status_code == 400 and bad_query.json()["type"].endswith("invalid_query")
    assert (await ahttp(as_node, "GET", f"/tickets/{ticket_id}", viewer_token)).status_code == 403
    assert (await ahttp(as_node, "GET", f"/tickets/{ticket_id}", other_room_agent)).status_code == 404
    assert (await ahttp(as_node, "GET", "/tickets/nope", service_token)).status_code == 404
    assert (await ahttp(as_node, "GET", "/rooms/bad room!/tickets", host_token)).status_code == 400
    entry = {"question": "Q?", "answer": "A.", "keywords": ["q"]}
    assert (await ahttp(as_node, "POST", f"/rooms/{room}/faq", service_token, json=entry)).status_code == 403
    assert (await ahttp(as_node, "POST", f"/rooms/{room}/faq", viewer_token, json=entry)).status_code == 403
    for body, field in [
        ({"answer": "A."}, "question"),
        ({**entry, "keywords": "q"}, "keywords"),
        ({**entry, "keywords": ["the"]}, "keywords"),
        ({**entry, "clip_at_seconds": -1}, "clip_at_seconds"),
        ({**entry, "sku": "no spaces"}, "sku"),
        ({**entry, "colour": "red"}, "colour"),
    ]:
        r = await ahttp(as_node, "POST", f"/rooms/{room}/faq", host_token, json=body)
        assert r.status_code == 400 and r.json()["field"] == field, (body, r.text)
    r = await ahttp(as_node, "POST", f"/rooms/{room}/faq", host_token, content=b"{nope")
    assert r.status_code == 400 and r.json()["type"].endswith("invalid_json")
    assert (await ahttp(as_node, "GET", "/stats", service_token)).status_code == 403  # one room's token
    node_stats = await ahttp(as_node, "GET", "/stats", as_node.token("*", "ops", "admin"))
    assert node_stats.status_code == 200 and node_stats.json()["first_response"]["target_seconds"] == 30.0
    await close_all(buyer, host)


async def test_priority_queue_for_members_with_priority_service(as_node: NodeProcess) -> None:
    room = uid("shop")
    agent = await Client.join(as_node, room, "agent-q", "service")
    buyers = {}
    for name in ("n1", "g1", "n2", "g2"):
        buyers[name] = await Client.join(as_node, room, f"{name}-{room}", "viewer")
        if name.startswith("g"):
            await buyers[name].ok("test.tier", {"tier": "gold"}, "test.ok")
    before = await metrics(as_node)
    tickets = {}
    for name in ("n1", "g1", "n2", "g2"):  # in this order: the gold ones jump the queue
        order_id = await order(buyers[name])
        opened = await buyers[name].ok(
            "aftersales.open", {"order_id": order_id, "reason": "how_to_use", "text": f"help {name}"}, "aftersales.opened"
        )
        tickets[name] = opened["ticket"]
    assert tickets["g1"]["queue"] == "priority" and tickets["g1"]["tier"] == "gold"
    assert tickets["n1"]["queue"] == "normal" and tickets["n1"]["tier"] == "basic"
    expected = [tickets[n]["ticket_id"] for n in ("g1", "g2", "n1", "n2")]
    queue = await agent.ok("aftersales.queue", {}, "aftersales.queue")
    assert [t["ticket_id"] for t in queue["tickets"]] == expected
    listed = await ahttp(as_node, "GET", f"/rooms/{room}/tickets", as_node.token(room, "agent-q", "service"))
    assert [t["ticket_id"] for t in listed.json()["tickets"]] == expected
    after = await metrics(as_node)
    key = 'edge_aftersales_tickets_opened_total{queue="%s"}'
    assert after[key % "priority"] - before[key % "priority"] == 2
    assert after[key % "normal"] - before[key % "normal"] == 2
    assert after['edge_aftersales_open_tickets{queue="priority"}'] >= 2
    # answering a priority ticket is observed in its queue's histogram
    await agent.ok("aftersales.message", {"ticket_id": tickets["g1"]["ticket_id"], "text": "On it"}, "aftersales.sent")
    final = await poll(lambda: metrics(as_node), lambda m: m[HIST_COUNT % "priority"] > before[HIST_COUNT % "priority"])
    assert final[HIST_COUNT % "priority"] == before[HIST_COUNT % "priority"] + 1
    stats = (await ahttp(as_node, "GET", f"/rooms/{room}/stats", as_node.token(room, "h", "host"))).json()
    assert stats["open"] == 4 and stats["open_priority"] == 2 and stats["awaiting_first_response"] == 3
    await close_all(agent, *buyers.values())


async def test_concurrent_tickets_from_many_buyers_are_all_kept(as_node: NodeProcess) -> None:
    room = uid("shop")
    agent = await Client.join(as_node, room, "agent-c", "service")
    buyers = [await Client.join(as_node, room, f"b{i}-{room}", "viewer") for i in range(6)]
    orders = [await order(b) for b in buyers]

    async def open_one(buyer: Client, order_id: str) -> str:
        data = {"order_id": order_id, "reason": "other", "text": "hi"}
        return str((await buyer.ok("aftersales.open", data, "aftersales.opened"))["ticket"]["ticket_id"])

    ids = await asyncio.gather(*(open_one(b, o) for b, o in zip(buyers, orders)))
    assert len(set(ids)) == 6
    queue = await agent.ok("aftersales.queue", {}, "aftersales.queue")
    assert sorted(t["ticket_id"] for t in queue["tickets"]) == sorted(ids)
    await close_all(agent, *buyers)
