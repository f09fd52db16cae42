"""The node's one WebRTC UDP port (edge/transport/udpmux.py), with real aiortc peers.

Every node the tests start (tests/nodeproc.py) gets a free UDP port of its own
(``node.udp_port``); the nodes here run the one-port mode explicitly, so these
tests hold when the rest of the suite runs with EDGE_MEDIA_UDP_MUX=false.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Iterator

import pytest
from aioice import stun

from edge.transport.udpmux import DROP_REASONS

from ..clients import WhepViewer, WhipPublisher, selected_pair
from ..nodeproc import NodeProcess, free_udp_port


MUX = {"EDGE_MEDIA_UDP_MUX": "true", "EDGE_LOAD_PLUGINS": "chat"}


@pytest.fixture(scope="module")
def node() -> Iterator[NodeProcess]:
    proc = NodeProcess(env=MUX).start()
    yield proc
    proc.stop()


def mux_dropped(node: NodeProcess) -> dict[str, float]:
    """The UDP mux's drops, as counted in edge_dropped_packets_total{reason}."""
    metrics = node.metrics()
    return {r: metrics.get(f'edge_dropped_packets_total{{reason="{r}"}}', 0.0) for r in DROP_REASONS}


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` (the node has no event for its counters) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for {what}"
            return value
        await asyncio.sleep(0.05)


def session_id(location: str) -> str:
    return location.rsplit("/", 1)[1]


async def test_every_peer_uses_the_one_port_and_media_flows(node: NodeProcess) -> None:
    room = "mux-fanout"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    answer = await pub.start()
    assert answer.status_code == 201, answer.text
    # The answer offers one candidate (repeated in each bundled m-line): the node's port.
    candidates = {line for line in answer.text.splitlines() if line.startswith("a=candidate:")}
    assert len(candidates) == 1, candidates
    assert f" 127.0.0.1 {node.udp_port} typ host" in candidates.pop()
    viewers = [WhepViewer(node.url, room, node.token(room, f"v{i}", "viewer")) for i in range(4)]
    for r in await asyncio.gather(*(v.start() for v in viewers)):
        assert r.status_code == 201, r.text
    await asyncio.gather(*(v.wait_frames("video", 30) for v in viewers))

    # Client side: every peer's nominated pair goes to 127.0.0.1:<the one port>,
    # from a local port of its own.
    pairs = [selected_pair(pub.pc)] + [selected_pair(v.pc) for v in viewers]
    assert {remote for _, remote in pairs} == {("127.0.0.1", node.udp_port)}, pairs
    assert len({local for local, _ in pairs}) == len(pairs), pairs

    # Node side: the mux, and each session's nominated local port.
    runtime = await asyncio.to_thread(node.runtime)
    udp = runtime["udp"]
    assert udp["mode"] == "mux" and udp["port"] == node.udp_port, udp
    assert udp["addresses"] == ["127.0.0.1"], udp
    ours = {session_id(p.location) for p in [pub, *viewers]}
    transports = {t["session"]: t for t in runtime["transports"] if t["session"] in ours}
    assert len(transports) == 5, runtime["transports"]
    assert {t["local_port"] for t in transports.values()} == {node.udp_port}, transports
    # The node routes each client's own address to its session.
    expected = {session_id(p.location): f"{local[0]}:{local[1]}" for p, (local, _) in zip([pub, *viewers], pairs)}
    assert {s: t["remote"] for s, t in transports.items()} == expected

    metrics = node.metrics()
    assert metrics[f'edge_udp_mux_port{{address="127.0.0.1"}}'] == node.udp_port
    assert metrics["edge_udp_mux_transports"] >= 5

    for v in viewers:
        got = v.received_payloads["video"]
        assert len(got) > 20
        assert [p for p in got if p not in pub.sent_payloads["video"]] == []
    await asyncio.gather(*(v.stop() for v in viewers))
    await pub.stop()


@pytest.mark.parametrize("delete", [True, False], ids=["after-delete", "vanished"])
async def test_a_new_viewer_from_the_address_of_one_that_left(node: NodeProcess, delete: bool) -> None:
    room = f"mux-reuse-{delete}"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    port = free_udp_port()
    first = WhepViewer(node.url, room, node.token(room, "first", "viewer"), local_port=port)
    assert (await first.start()).status_code == 201
    await first.wait_frames("video", 10)
    assert selected_pair(first.pc)[0] == ("127.0.0.1", port)
    # Leave (with or without DELETE), then a new viewer binds the very same address:port.
    await first.stop(delete=delete)
    second = WhepViewer(node.url, room, node.token(room, "second", "viewer"), local_port=port)
    assert (await second.start()).status_code == 201, "the new viewer could not connect"
    await second.wait_frames("video", 20)
    assert selected_pair(second.pc) == (("127.0.0.1", port), ("127.0.0.1", node.udp_port))
    new = session_id(second.location)
    runtime = await asyncio.to_thread(node.runtime)
    mine = [t for t in runtime["transports"] if t["session"] == new]
    assert mine and mine[0]["remote"] == f"127.0.0.1:{port}", runtime["transports"]
    # The first session is gone from the node (DELETE, or its DTLS close_notify).
    old = session_id(first.location)
    await until("the first session to close", lambda: all(t["session"] != old for t in node.runtime()["transports"]))
    assert [p for p in second.received_payloads["video"] if p not in pub.sent_payloads["video"]] == []
    await second.stop()
    await pub.stop()


def binding_request(username: str | None, password: str | None) -> bytes:
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    if username is not None:
        message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = 1
    if password is not None:
        message.add_message_integrity(password.encode())
    return bytes(message)


async def test_garbage_and_unknown_ufrags_are_dropped_counted_and_harmless(node: NodeProcess) -> None:
    room = "mux-garbage"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    viewer = WhepViewer(node.url, room, node.token(room, "watcher", "viewer"))
    assert (await viewer.start()).status_code == 201
    await viewer.wait_frames("video", 10)
    live_ufrag = viewer.answer_sdp.split("a=ice-ufrag:", 1)[1].split()[0]
    before = mux_dropped(node)
    srtp_before = node.metrics().get('edge_dropped_packets_total{reason="srtp"}', 0.0)

    target = ("127.0.0.1", node.udp_port)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    sent = {
        # not STUN, from an address no transport authenticated
        "unknown_address": [
            b"\x80\x60" + os.urandom(200),  # looks like RTP
            b"\x16\xfe\xfd" + os.urandom(60),  # looks like a DTLS record
            b"\xff" * 40,
        ],
        # well-formed, authenticated with some password, for a ufrag nobody has
        "unknown_ufrag": [binding_request("nosuchufrag:abcd", "x" * 22)] * 3,
        # first byte 0-3 but not a STUN message
        "malformed_stun": [b"\x00\x01\x00\x08" + os.urandom(8), b"\x01"],
        # a binding request without USERNAME
        "unroutable_stun": [binding_request(None, None)],
        # a response to a request nobody sent
        "unknown_transaction": [
            bytes(stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE))
        ],
    }
    for datagrams in sent.values():
        for data in datagrams:
            stranger.sendto(data, target)
    # A request for the live viewer's ufrag with the wrong password: answered 401 by
    # aioice, and it must not teach the mux the stranger's address (its SRTP-looking
    # datagram afterwards is still an unknown address).
    stranger.sendto(binding_request(f"{live_ufrag}:zzzz", "y" * 22), target)
    stranger.settimeout(5)
    reply = stun.parse_message(stranger.recv(2048))
    assert reply.message_class == stun.Class.ERROR and reply.error_code == 401, reply
    sent["unknown_address"].append(b"\x80\x60" + os.urandom(100))
    stranger.sendto(sent["unknown_address"][-1], target)
    stranger.close()

    # Garbage from the *viewer's own* address goes to its session and fails SRTP there.
    protocol = viewer.pc.getTransceivers()[0].receiver.transport.transport._connection._nominated[1].protocol
    protocol.transport.sendto(b"\x80\x60" + os.urandom(300), target)

    expected = {reason: before.get(reason, 0) + len(datagrams) for reason, datagrams in sent.items()}
    await until(
        f"mux drops {expected}",
        lambda: all(mux_dropped(node).get(r, 0) >= n for r, n in expected.items()),
    )
    assert mux_dropped(node) == {**before, **expected}
    await until(
        "the SRTP failure to be counted",
        lambda: node.metrics().get('edge_dropped_packets_total{reason="srtp"}', 0.0) > srtp_before,
    )

    # The live session did not notice: still connected, still decoding.
    frames = viewer.frames["video"]
    await viewer.wait_frames("video", frames + 20)
    assert viewer.pc.connectionState == "connected"
    assert [p for p in viewer.received_payloads["video"] if p not in pub.sent_payloads["video"]] == []
    await viewer.stop()
    await pub.stop()


async def test_socket_per_peer_mode_still_connects() -> None:
    proc = NodeProcess(env={"EDGE_MEDIA_UDP_MUX": "false", "EDGE_LOAD_PLUGINS": ""}).start()
    try:
        room = "per-peer"
        pub = WhipPublisher(proc.url, room, proc.token(room, "seller", "host"))
        assert (await pub.start()).status_code == 201
        viewers = [WhepViewer(proc.url, room, proc.token(room, f"v{i}", "viewer")) for i in range(2)]
        for r in await asyncio.gather(*(v.start() for v in viewers)):
            assert r.status_code == 201, r.text
        await asyncio.gather(*(v.wait_frames("video", 20) for v in viewers))
        remote_ports = {selected_pair(p.pc)[1][1] for p in [pub, *viewers]}
        assert len(remote_ports) == 3 and proc.udp_port not in remote_ports, remote_ports
        runtime = await asyncio.to_thread(proc.runtime)
        assert runtime["udp"] == {"mode": "per_peer"}
        assert not any(k.startswith("edge_udp_mux") for k in proc.metrics())
        await asyncio.gather(*(v.stop() for v in viewers))
        await pub.stop()
    finally:
        proc.stop()


def test_a_taken_port_stops_the_node_with_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        proc = NodeProcess(env={**MUX, "EDGE_MEDIA_UDP_PORT": str(port)})
        try:
            done = subprocess.run(
                [sys.executable, "-m", "edge.cli", "serve"], env=proc.env, capture_output=True, timeout=60
            )
        finally:
            shutil.rmtree(proc.data_dir, ignore_errors=True)
    assert done.returncode == 2, done
    assert f"cannot bind the WebRTC UDP port 127.0.0.1:{port}".encode() in done.stderr, done.stderr
    assert b"Address already in use" in done.stderr
