"""Chat fan-out at room scale: 200 WebSocket and 5 data-channel viewers.

Every recipient gets every chat message, in order per sender, whatever its
connection kind; a malformed envelope is answered with its error code on the
sender's connection and nobody else receives anything.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription

from ..clients import client_config, wait_connected
from ..nodeproc import NodeProcess
from ..plugins.chat_clients import (
    BACKGROUND,
    ChatClient,
    MessageClient,
    assert_next_is,
    close_all,
)

ROOM = "chat-scale"
WS_VIEWERS = 200
DC_VIEWERS = 5
MESSAGES = 10


class DataChannelClient(MessageClient):
    """A WHEP viewer whose peer connection carries the ``edge`` data channel."""

    def __init__(self, node: NodeProcess, room: str, identity: str) -> None:
        super().__init__(room, identity, "viewer")
        self.node = node
        self.token = node.token(room, identity, "viewer")
        self.pc = RTCPeerConnection(client_config())
        self.location = ""
        # WHEP needs a media m-line; the data channel rides on the same transport.
        self.pc.addTransceiver("video", direction="recvonly")
        self.channel = self.pc.createDataChannel("edge")
        self.channel.on("message", self.inbox.put)

    async def start(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient() as client:
            r = await client.post(
                f"{self.node.url}/whep/{self.room}",
                content=self.pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"},
            )
        assert r.status_code == 201, r.text
        self.location = r.headers["location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        await wait_connected(self.pc)
        await self.greeted(timeout=20)

    async def transmit(self, raw: str | bytes) -> None:
        self.channel.send(raw)

    async def close(self) -> None:
        await self.pc.close()
        async with httpx.AsyncClient() as client:
            await client.delete(self.node.url + self.location, headers={"Authorization": f"Bearer {self.token}"})


async def join_websockets(node: NodeProcess, count: int) -> list[ChatClient]:
    clients: list[ChatClient] = []
    for batch in range(0, count, 25):  # a few at a time: joins are cheap but not free
        clients += await asyncio.gather(
            *(ChatClient.join(node, ROOM, f"w{i}", "viewer") for i in range(batch, min(count, batch + 25)))
        )
    return clients


async def test_every_recipient_gets_every_message_in_order_and_bad_input_reaches_no_one(
    node: NodeProcess,
) -> None:
    host = await ChatClient.join(node, ROOM, "host", "host")
    data_viewers = [DataChannelClient(node, ROOM, f"d{i}") for i in range(DC_VIEWERS)]
    await asyncio.gather(*(d.start() for d in data_viewers))
    ws_viewers = await join_websockets(node, WS_VIEWERS)
    everyone: list[MessageClient] = [host, *data_viewers, *ws_viewers]
    # Wait until the room's presence is settled, so no more room news is due.
    await host.inbox.wait_for("presence", lambda e: e["data"]["viewers"] == WS_VIEWERS + DC_VIEWERS, 15)

    # 3 senders (WebSocket host, WebSocket viewer, data-channel viewer) x 10, interleaved.
    senders: list[MessageClient] = [host, ws_viewers[0], data_viewers[0]]
    for i in range(MESSAGES):
        for sender in senders:
            await sender.send("chat.send", {"text": f"{sender.identity}:{i}"})

    async def collect(client: MessageClient) -> dict[str, list[int]]:
        by_sender: dict[str, list[int]] = defaultdict(list)
        for _ in range(len(senders) * MESSAGES):
            envelope = await client.inbox.next(timeout=20, skip=BACKGROUND)
            assert envelope["type"] == "chat.message", (client.identity, envelope)
            name, _, index = envelope["data"]["text"].partition(":")
            assert envelope["from"]["identity"] == name
            by_sender[name].append(int(index))
        return by_sender

    received = await asyncio.gather(*(collect(c) for c in everyone))
    expected = {s.identity: list(range(MESSAGES)) for s in senders}
    wrong = [(c.identity, dict(r)) for c, r in zip(everyone, received) if dict(r) != expected]
    assert wrong == [], wrong[:3]

    # Malformed input over a WebSocket ...
    bad = ws_viewers[1]
    for frame, code in [
        ('{"type": "chat.send", "data": {"te', "invalid_json"),
        (json.dumps({"type": "chat.send", "data": {"text": "x" * (1 << 20)}}), "too_large"),
        (json.dumps({"type": "chat.send", "data": {"text": 42}}), "invalid_data"),
        (json.dumps({"type": "chat.send", "data": ["text"]}), "invalid_envelope"),
        (json.dumps({"type": 7, "data": {}}), "invalid_envelope"),
        (json.dumps({"type": "chat.broadcast_all", "data": {"text": "hi"}}), "unknown_type"),
        (b"\x00\x01binary", "binary_not_supported"),
    ]:
        await bad.send_raw(frame)
        await bad.error(code)
    # ... and over a data channel.
    bad_dc = data_viewers[1]
    for frame, code in [
        ("{not json", "invalid_json"),
        (json.dumps({"type": "like", "data": {"count": "lots"}}), "invalid_data"),
        (json.dumps({"type": "mod.mute", "data": {"identity": "host"}}), "forbidden"),
        (b'{"type": "chat.send"}', "binary_not_supported"),
    ]:
        await bad_dc.send_raw(frame)
        await bad_dc.error(code)
    # A sentinel sent after the errors came back: it is everyone's next envelope.
    await bad.send("chat.send", {"text": "sentinel"})
    await asyncio.gather(
        *(assert_next_is([c], "chat.message", lambda e: e["data"]["text"] == "sentinel") for c in everyone)
    )
    # The bad senders saw their errors and nothing else of their own making.
    for client, errors in ((bad, 7), (bad_dc, 4)):
        seen = [e["type"] for e in client.inbox.seen if e["type"] not in BACKGROUND]
        assert seen[2 + len(senders) * MESSAGES:] == ["error"] * errors + ["chat.message"], seen
    await close_all(everyone)
