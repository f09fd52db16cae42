"""Every first-party plugin loaded together, as `edge serve` does by default.

Each plugin's own suite runs it alone; this checks they coexist on one node: all
load, a live show with chat, a pin and an order works end to end, the pieces
that build on each other (loyalty on commerce events) see each other's events,
and no hook of any plugin fails along the way.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import websockets

from ..clients import WhepViewer, WhipPublisher
from ..nodeproc import NodeProcess

PLUGINS = {"chat", "commerce", "flashsale", "loyalty", "segments", "aftersales"}


@pytest.fixture(scope="module")
def full_node() -> Iterator[NodeProcess]:
    conf = Path(tempfile.mkdtemp(prefix="edge-all-")) / "edge.toml"
    conf.write_text("[plugins.commerce]\npayment_delay_seconds = 0.2\n")
    node = NodeProcess(env={"EDGE_CONFIG": str(conf)}).start()
    yield node
    node.stop()


class Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def wait_for(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        for env in self.seen:
            if env["type"] == kind:
                self.seen.remove(env)
                return env
        async def read() -> dict[str, Any]:
            while True:
                env = json.loads(await self.ws.recv())
                if env["type"] == kind:
                    return env
                self.seen.append(env)
        return await asyncio.wait_for(read(), timeout)

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        await self.ws.send(json.dumps({"type": kind, "data": data}))


async def test_all_first_party_plugins_work_together(full_node: NodeProcess) -> None:
    node = full_node
    admin = node.admin_headers()
    listed = httpx.get(node.url + "/v1/plugins", headers=admin).json()["plugins"]
    assert PLUGINS <= {p["name"] for p in listed}

    room = "allplugins"
    host_token = node.token(room, "seller", "host")
    pub = WhipPublisher(node.url, room, host_token)
    assert (await pub.start()).status_code == 201
    viewer = WhepViewer(node.url, room, node.token(room, "fan", "viewer"))
    assert (await viewer.start()).status_code == 201

    ws_base = node.url.replace("http://", "ws://") + f"/v1/rooms/{room}/ws?token="
    async with websockets.connect(ws_base + host_token) as h, websockets.connect(
        ws_base + viewer.token
    ) as v:
        host, fan = Client(h), Client(v)
        assert (await fan.wait_for("welcome"))["data"]["room"] == room  # chat
        await fan.wait_for("coupon.granted")  # segments: a first-time viewer's welcome coupon

        await fan.send("chat.send", {"text": "hello from the fan"})
        got = await host.wait_for("chat.message")
        assert got["data"]["text"] == "hello from the fan"

        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {host_token}"}) as http:
            r = await http.post(
                f"{node.url}/v1/plugins/commerce/rooms/{room}/products",
                json={"sku": "tee", "title": "Tee", "price": 20, "currency": "USD", "stock": 3},
            )
            assert r.status_code == 201, r.text
        await host.send("product.pin", {"sku": "tee"})
        pinned = await fan.wait_for("product.pinned")
        assert pinned["data"]["sku"] == "tee"

        await fan.send("order.place", {"sku": "tee", "quantity": 1, "key": "order-1"})
        accepted = await fan.wait_for("order.accepted")
        order_id = accepted["data"]["order_id"]
        paid = await fan.wait_for("order.updated")
        assert (paid["data"]["order_id"], paid["data"]["state"]) == (order_id, "paid")

        # loyalty heard commerce.order_paid: the buyer's growth went up
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {viewer.token}"}) as http:
            for _ in range(50):
                me = (await http.get(f"{node.url}/v1/plugins/loyalty/me")).json()
                if me.get("growth", 0) > 0:
                    break
                await asyncio.sleep(0.1)  # loyalty writes on its own worker: poll its API
            assert me["growth"] > 0, me

    await viewer.wait_frames("video", 10)  # the media path is untouched by all of this
    errors = {k: v for k, v in node.metrics().items() if k.startswith("edge_plugin_errors_total") and v}
    assert errors == {}, errors
    await viewer.stop()
    await pub.stop()
