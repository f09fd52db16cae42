"""FAQ answers over the message path, with and without a clip of the recorded live.

The node provides ``FakeRecordingsService`` (a test double of the recordings
service): markers come from ``test.marker`` messages and
``replay_url(room, t)`` is ``/replay/{room}?t={t}``.
"""

from __future__ import annotations

import secrets

from ..nodeproc import NodeProcess
from .clients import Client, ahttp, close_all


def uid(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


async def add_faq(node: NodeProcess, room: str, token: str, **entry: object) -> dict:
    r = await ahttp(node, "POST", f"/rooms/{room}/faq", token, json=entry)
    assert r.status_code == 201, r.text
    return r.json()


async def test_faq_answers_with_and_without_clip_and_no_match_opens_a_ticket(as_node: NodeProcess) -> None:
    room = uid("shop")
    host_token = as_node.token(room, "seller", "host")
    wash = await add_faq(
        as_node, room, host_token, question="How do I wash the sweater?",
        answer="Cold hand wash, dry flat.", keywords=["wash", "laundry"], clip_at_seconds=125,
    )
    fit = await add_faq(
        as_node, room, host_token, question="Does the jacket run small?",
        answer="Take one size up.", keywords=["size", "fits small"], sku="JKT-1",
    )
    ship = await add_faq(
        as_node, room, host_token, question="When will my parcel ship?",
        answer="Within 48 hours.", keywords=["ship", "delivery"],
    )
    # a clip for an entry with a SKU and no clip time: the latest marker of that SKU
    host = await Client.join(as_node, room, "seller", "host")
    for sku, at in (("JKT-1", 300), ("JKT-1", 420), ("SWEATER-1", 500)):
        await host.ok("test.marker", {"sku": sku, "at_seconds": at}, "test.ok")

    buyer = await Client.join(as_node, room, "faq-buyer", "viewer")
    agent = await Client.join(as_node, room, "agent-f", "service")

    answer = await buyer.ok("aftersales.ask", {"text": "Can I put it in the washing machine? how to wash"}, "aftersales.answer")
    assert answer["faq_id"] == wash["faq_id"] and answer["answer"] == "Cold hand wash, dry flat."
    assert answer["clip"] == {"url": f"/replay/{room}?t=125", "at_seconds": 125.0}
    assert answer["score"] >= 0.6

    answer = await buyer.ok("aftersales.ask", {"text": "What sizes should I pick?", "sku": "JKT-1"}, "aftersales.answer")
    assert answer["faq_id"] == fit["faq_id"] and answer["clip"] == {"url": f"/replay/{room}?t=420", "at_seconds": 420.0}
    # a multi-word keyword needs all its words; the question's own words count too
    answer = await buyer.ok("aftersales.ask", {"text": "does this jacket run small"}, "aftersales.answer")
    assert answer["faq_id"] == fit["faq_id"]
    # an entry for another SKU never answers
    other = await buyer.ok("aftersales.ask", {"text": "what size?", "sku": "HAT-9"}, "aftersales.no_match")
    assert other["ticket"] is None

    answer = await buyer.ok("aftersales.ask", {"text": "When is delivery?"}, "aftersales.answer")
    assert answer["faq_id"] == ship["faq_id"] and answer["clip"] is None

    # no match and no order: the buyer is told how to reach an agent
    nothing = await buyer.ok("aftersales.ask", {"text": "Is the host's cat available?"}, "aftersales.no_match")
    assert nothing["ticket"] is None and "open a service request" in nothing["hint"] and nothing["orders"] == []

    # no match with an order in the room: a ticket for an agent
    order_id = uid("o")
    await buyer.ok("test.order", {"order_id": order_id, "sku": "SWEATER-1"}, "test.ok")
    routed = await buyer.ok("aftersales.ask", {"text": "The colour is not as shown on the live"}, "aftersales.no_match")
    ticket = routed["ticket"]
    assert ticket["order_id"] == order_id and ticket["reason"] == "question" and ticket["status"] == "open"
    seen = await agent.wait_for("aftersales.ticket", lambda e: e["data"]["ticket"]["ticket_id"] == ticket["ticket_id"])
    assert seen["data"]["message"]["text"] == "The colour is not as shown on the live"

    # the operators' tools: list, try a question, change, delete
    listed = await ahttp(as_node, "GET", f"/rooms/{room}/faq", as_node.token(room, "v", "viewer"))
    assert [f["faq_id"] for f in listed.json()["faq"]] == [wash["faq_id"], fit["faq_id"], ship["faq_id"]]
    tried = (await ahttp(as_node, "POST", f"/rooms/{room}/faq/match", host_token, json={"text": "laundry tips"})).json()
    assert tried["match"] == wash["faq_id"] and tried["threshold"] == 0.3 and "laundry" in tried["tokens"]
    changed = await ahttp(as_node, "PATCH", f"/rooms/{room}/faq/{ship['faq_id']}", host_token,
                          json={"answer": "Within 24 hours.", "clip_at_seconds": 60})
    assert changed.status_code == 200 and changed.json()["answer"] == "Within 24 hours."
    answer = await buyer.ok("aftersales.ask", {"text": "When is delivery?"}, "aftersales.answer")
    assert answer["answer"] == "Within 24 hours." and answer["clip"]["at_seconds"] == 60.0
    assert (await ahttp(as_node, "DELETE", f"/rooms/{room}/faq/{ship['faq_id']}", host_token)).status_code == 204
    assert (await ahttp(as_node, "GET", f"/rooms/{room}/faq/{ship['faq_id']}", host_token)).status_code == 404
    assert (await ahttp(as_node, "DELETE", f"/rooms/{room}/faq/{ship['faq_id']}", host_token)).status_code == 404
    gone = await buyer.ok("aftersales.ask", {"text": "When is delivery?", "order_id": order_id}, "aftersales.no_match")
    assert gone["ticket"]["ticket_id"] == ticket["ticket_id"]  # joins the open ticket of that order
    # another room's FAQ is not this room's
    elsewhere = await Client.join(as_node, uid("shop"), "faq-buyer", "viewer")
    assert (await elsewhere.ok("aftersales.ask", {"text": "how to wash"}, "aftersales.no_match"))["ticket"] is None
    await close_all(host, buyer, agent, elsewhere)
