"""Nodes of the test's own: tickets survive a restart; a slow first response alerts."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from .clients import Client, ahttp, aftersales_node, close_all, fake_events, metrics, node_config, poll

ALERT = "edge_aftersales_first_response_alert"
MEDIAN = "edge_aftersales_first_response_median_seconds"


@pytest.fixture
def data_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="edge-aftersales-data-") as path:
        yield path


async def test_tickets_and_orders_survive_a_node_restart(data_dir: str) -> None:
    config = node_config({"loyalty": False})  # no loyalty service: everyone in the normal queue
    room = "restart-shop"
    first = aftersales_node(config, data_dir).start()
    try:
        buyer = await Client.join(first, room, "rita", "viewer")
        agent = await Client.join(first, room, "agent-r", "service")
        await buyer.ok("test.order", {"order_id": "o-restart", "sku": "LAMP-2"}, "test.ok")
        await buyer.ok("test.order", {"order_id": "o-later", "sku": "LAMP-3"}, "test.ok")
        ticket = (await buyer.ok(
            "aftersales.open", {"order_id": "o-restart", "reason": "damaged", "text": "Cracked shade"}, "aftersales.opened"
        ))["ticket"]
        assert ticket["queue"] == "normal" and ticket["tier"] is None
        await agent.ok("aftersales.message", {"ticket_id": ticket["ticket_id"], "text": "Photo please?"}, "aftersales.sent")
        answered = await buyer.wait_for("aftersales.ticket", lambda e: e["data"]["event"] == "answered")
        first_response = answered["data"]["ticket"]["first_response_seconds"]
        await close_all(buyer, agent)
    finally:
        assert first.stop() == 0, first.log()
    assert (Path(data_dir) / "plugins" / "aftersales" / "aftersales.sqlite3").is_file()

    second = aftersales_node(config, data_dir).start()
    try:
        agent = await Client.join(second, room, "agent-r", "service")
        buyer = await Client.join(second, room, "rita", "viewer")
        queue = await agent.ok("aftersales.queue", {}, "aftersales.queue")
        assert [t["ticket_id"] for t in queue["tickets"]] == [ticket["ticket_id"]]
        kept = queue["tickets"][0]
        assert kept["first_response_seconds"] == first_response and kept["awaiting"] == "buyer"
        history = await buyer.ok("aftersales.history", {"ticket_id": ticket["ticket_id"]}, "aftersales.history")
        assert [m["text"] for m in history["messages"]] == ["Cracked shade", "Photo please?"]
        # the conversation goes on, and the orders learnt before the restart are still the buyer's
        await buyer.ok("aftersales.message", {"ticket_id": ticket["ticket_id"], "text": "Sent!"}, "aftersales.sent")
        await agent.wait_for("aftersales.message", lambda e: e["data"]["text"] == "Sent!")
        later = await buyer.ok(
            "aftersales.open", {"order_id": "o-later", "reason": "not_received", "text": "Not here"}, "aftersales.opened"
        )
        assert later["existing"] is False and later["ticket"]["sku"] == "LAMP-3"
        m = await metrics(second)
        assert m['edge_aftersales_open_tickets{queue="normal"}'] == 2
        assert m[MEDIAN] == pytest.approx(first_response, abs=1e-6)
        await close_all(buyer, agent)
    finally:
        second.stop()


async def test_slow_first_response_raises_the_alert_and_a_fast_one_lowers_it(data_dir: str) -> None:
    target = 1.0  # the fast answers below take milliseconds; the slow ticket waits past it
    config = node_config(
        {"loyalty": False},
        {"first_response_target_seconds": target, "alert_min_tickets": 1, "median_window": 3},
    )
    node = aftersales_node(config, data_dir).start()
    try:
        room = "alert-shop"
        agent = await Client.join(node, room, "agent-a", "service")
        buyers = [await Client.join(node, room, f"buyer-{i}", "viewer") for i in range(3)]
        for i, buyer in enumerate(buyers):
            await buyer.ok("test.order", {"order_id": f"o-alert-{i}", "sku": "MUG"}, "test.ok")
        assert (await metrics(node))[ALERT] == 0

        # nobody answers: once the ticket waits longer than the target, the alert goes up
        slow = (await buyers[0].ok(
            "aftersales.open", {"order_id": "o-alert-0", "reason": "damaged", "text": "Chipped"}, "aftersales.opened"
        ))["ticket"]
        raised = await poll(lambda: metrics(node), lambda m: m[ALERT] == 1)
        assert raised[ALERT] == 1 and raised[MEDIAN] > target
        events = await fake_events(node)
        slow_events = [e for e in events if e["name"] == "aftersales.slow_first_response"]
        assert len(slow_events) == 1 and slow_events[0]["source"] == "aftersales"
        assert slow_events[0]["data"]["target_seconds"] == target
        assert slow_events[0]["data"]["median_seconds"] > target and slow_events[0]["data"]["alert"] is True
        log = [json.loads(line) for line in node.log_path.read_text().splitlines() if "aftersales_slow" in line]
        assert log and log[0]["level"] == "warning" and log[0]["event"] == "aftersales_slow_first_response"

        await agent.ok("aftersales.message", {"ticket_id": slow["ticket_id"], "text": "Sorry!"}, "aftersales.sent")
        # two fast answers: the median of the last three is back under the target
        for i in (1, 2):
            ticket = (await buyers[i].ok(
                "aftersales.open", {"order_id": f"o-alert-{i}", "reason": "damaged", "text": "Chipped"}, "aftersales.opened"
            ))["ticket"]
            await agent.wait_for("aftersales.ticket", lambda e: e["data"]["ticket"]["ticket_id"] == ticket["ticket_id"])
            await agent.ok("aftersales.message", {"ticket_id": ticket["ticket_id"], "text": "Here"}, "aftersales.sent")
        lowered = await poll(lambda: metrics(node), lambda m: m[ALERT] == 0)
        assert lowered[ALERT] == 0 and lowered[MEDIAN] <= target
        assert lowered['edge_aftersales_first_response_seconds_count{queue="normal"}'] == 3
        names = [e["name"] for e in await fake_events(node) if "first_response" in e["name"] and "recovered" in e["name"]]
        assert names == ["aftersales.first_response_recovered"]
        stats = await ahttp(node, "GET", "/stats", node.token("*", "ops", "admin"))
        assert stats.json()["first_response"]["alert"] is False and stats.json()["open"] == 3
        await close_all(agent, *buyers)
    finally:
        node.stop()


async def test_a_handler_over_the_hook_budget_still_completes_and_answers(data_dir: str) -> None:
    """With a 1 ms hook budget the handlers outlive their hook: the ticket is still
    written, and the answer (or the refusal) reaches the sender by edge.send_to."""
    node = aftersales_node(node_config({"loyalty": False}, timeout_ms=1), data_dir).start()
    try:
        buyer = await Client.join(node, "slow-disk", "sam", "viewer")
        agent = await Client.join(node, "slow-disk", "agent-s", "service")
        await buyer.ok("test.order", {"order_id": "o-budget", "sku": "BAG"}, "test.ok")
        opened = await buyer.ok(
            "aftersales.open", {"order_id": "o-budget", "reason": "damaged", "text": "Torn strap"}, "aftersales.opened"
        )
        await agent.wait_for("aftersales.ticket", lambda e: e["data"]["ticket"]["ticket_id"] == opened["ticket"]["ticket_id"])
        await buyer.refused("aftersales.open", {"order_id": "o-other", "reason": "damaged", "text": "x"}, "not_found")
        queue = await agent.ok("aftersales.queue", {}, "aftersales.queue")
        assert [t["ticket_id"] for t in queue["tickets"]] == [opened["ticket"]["ticket_id"]]
        assert "plugin_hook_timeout" in node.log_path.read_text()  # the budget did cut the hooks short
        await close_all(buyer, agent)
    finally:
        node.stop()


def test_a_bad_config_stops_the_node(tmp_path: Path) -> None:
    from edge.app import create_app
    from edge.config import load_config
    from edge.errors import ConfigError
    from edge_aftersales.plugin import AftersalesPlugin

    config = load_config(env={"EDGE_NODE_DATA_DIR": str(tmp_path), "EDGE_AUTH_SECRET": "s" * 32})
    config.plugins = {"aftersales": {"first_response_target_seconds": -1}}
    with pytest.raises(ConfigError, match=r"\[plugins.aftersales\]: first_response_target_seconds"):
        create_app(config, load_entrypoints=False, plugins=[("aftersales", AftersalesPlugin())])
