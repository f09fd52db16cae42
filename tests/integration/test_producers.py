"""Co-hosts (连麦), several video tracks per publisher, and producers that come later."""

from __future__ import annotations

import asyncio

import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription

from edge.media.vp8 import parse_ids, write_ids

from ..clients import client_config, PatternVideoTrack, ToneAudioTrack, WhepViewer, WhipPublisher, wait_connected
from ..nodeproc import NodeProcess


async def publish_camera_and_screen(node: NodeProcess, room: str, identity: str) -> tuple[RTCPeerConnection, str]:
    """A publisher with mic + camera + screen share in one WHIP session."""
    pc = RTCPeerConnection(client_config())
    pc.addTrack(ToneAudioTrack())
    pc.addTrack(PatternVideoTrack())
    pc.addTrack(PatternVideoTrack())
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{node.url}/whip/{room}?sources=microphone,camera,screen",
            content=pc.localDescription.sdp,
            headers={
                "Content-Type": "application/sdp",
                "Authorization": "Bearer " + node.token(room, identity, "host"),
            },
        )
    assert r.status_code == 201, r.text
    await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
    await wait_connected(pc)
    return pc, r.headers["location"]


async def test_viewer_receives_host_camera_screen_and_cohost(node: NodeProcess) -> None:
    room = "multi-producers"
    host_pc, _ = await publish_camera_and_screen(node, room, "seller")
    cohost = WhipPublisher(node.url, room, node.token(room, "guest", "cohost"))
    assert (await cohost.start()).status_code == 201

    viewer = WhepViewer(node.url, room, node.token(room, "fan", "viewer"), video_slots=3, audio_slots=2)
    assert (await viewer.start()).status_code == 201
    await viewer.wait_frames("video", 60)

    async with httpx.AsyncClient() as client:
        r = await client.get(
            node.url + viewer.location, headers={"Authorization": "Bearer " + viewer.token}
        )
    slots = r.json()["slots"]
    filled = {(s["participant"], s["source"]) for s in slots if s["producer"]}
    assert filled == {
        ("seller", "microphone"),
        ("seller", "camera"),
        ("seller", "screen"),
        ("guest", "microphone"),
        ("guest", "camera"),
    }
    # The host's tracks take the first slots of each kind.
    video = [s for s in slots if s["kind"] == "video"]
    assert (video[0]["participant"], video[0]["source"]) == ("seller", "camera")
    info = node.room(room)
    assert info is not None and len(info["producers"]) == 5
    # Each of the viewer's three video consumers is forwarding.
    mine = [c for c in info["consumers"] if c["viewer"] == "fan" and c["kind"] == "video"]
    assert len(mine) == 3 and all(c["packets"] > 0 for c in mine)

    await viewer.stop()
    await cohost.stop()
    await host_pc.close()


async def test_producer_added_later_fills_a_free_slot_and_leaving_frees_it(node: NodeProcess) -> None:
    room = "late-producer"
    host = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await host.start()).status_code == 201
    viewer = WhepViewer(node.url, room, node.token(room, "fan", "viewer"), video_slots=2)
    assert (await viewer.start()).status_code == 201
    await viewer.wait_frames("video", 10)

    headers = {"Authorization": "Bearer " + viewer.token}
    async with httpx.AsyncClient() as client:
        slots = (await client.get(node.url + viewer.location, headers=headers)).json()["slots"]
        assert [s["participant"] for s in slots if s["kind"] == "video"] == ["seller", None]

        cohost = WhipPublisher(node.url, room, node.token(room, "guest", "cohost"))
        assert (await cohost.start()).status_code == 201
        session = (await client.get(node.url + viewer.location, headers=headers)).json()
        assert [s["participant"] for s in session["slots"] if s["kind"] == "video"] == ["seller", "guest"]
        # The co-host's audio has no free audio slot: it is listed as unassigned.
        assert [(p["participant"], p["kind"]) for p in session["unassigned_producers"]] == [("guest", "audio")]

        info = node.room(room)
        guest_video = [
            c for c in info["consumers"] if c["viewer"] == "fan" and c["producer"].startswith(cohost.location.rsplit("/", 1)[1][:8])
            and c["kind"] == "video"
        ]
        assert len(guest_video) == 1
        # Frames keep coming with both streams in.
        before = viewer.frames["video"]
        await viewer.wait_frames("video", before + 30)

        await cohost.stop()
        session = (await client.get(node.url + viewer.location, headers=headers)).json()
        assert [s["participant"] for s in session["slots"] if s["kind"] == "video"] == ["seller", None]

    await viewer.stop()
    await host.stop()


def without_vp8_ids(payload: bytes) -> bytes:
    ids = parse_ids(payload)
    return payload if ids is None else write_ids(payload, ids, 0, 0)


async def test_host_leaving_hands_the_slot_to_the_cohost(node: NodeProcess) -> None:
    """A one-slot viewer keeps watching when the host leaves and a co-host is live."""
    room = "slot-handover"
    host = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    cohost = WhipPublisher(node.url, room, node.token(room, "guest", "cohost"))
    assert (await host.start()).status_code == 201
    assert (await cohost.start()).status_code == 201
    viewer = WhepViewer(node.url, room, node.token(room, "fan", "viewer"))
    assert (await viewer.start()).status_code == 201
    await viewer.wait_frames("video", 10)
    await host.stop()
    before = viewer.frames["video"]
    await viewer.wait_frames("video", before + 30)
    async with httpx.AsyncClient() as client:
        slots = (await client.get(node.url + viewer.location, headers={"Authorization": "Bearer " + viewer.token})).json()["slots"]
    assert {s["participant"] for s in slots} == {"guest"}
    # Payloads still arrive untouched from the new producer, but for the VP8
    # PictureID/TL0PICIDX the node renumbers to continue the host's (edge/media/vp8.py).
    tail = [without_vp8_ids(p) for p in viewer.received_payloads["video"][-20:]]
    sent = {without_vp8_ids(p) for p in cohost.sent_payloads["video"]}
    assert all(p in sent for p in tail)
    await viewer.stop()
    await cohost.stop()


async def test_message_connections_hear_producers_come_and_go(node: NodeProcess) -> None:
    import json

    import websockets

    room = "producer-events"
    url = node.url.replace("http://", "ws://") + f"/v1/rooms/{room}/ws?token=" + node.token(room, "fan", "viewer")
    async with websockets.connect(url) as ws:

        async def next_of(kind: str) -> dict:
            while True:
                env = json.loads(await asyncio.wait_for(ws.recv(), 15))
                if env["type"] == kind:
                    return env["data"]

        host = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
        assert (await host.start()).status_code == 201
        added = [await next_of("producer.added") for _ in range(2)]
        assert {(a["kind"], a["source"], a["participant"]) for a in added} == {
            ("audio", "microphone", "seller"),
            ("video", "camera", "seller"),
        }
        await host.stop()
        removed = [await next_of("producer.removed") for _ in range(2)]
        assert {r["id"] for r in removed} == {a["id"] for a in added}
