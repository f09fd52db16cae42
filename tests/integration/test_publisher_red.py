"""A publisher's RED audio, unwrapped at ingress with uplink losses rebuilt
(edge/media/red_receive.py), on both data planes.

The aiortc publisher offers red/48000/2 as Chromium does and, since the node
answers RED first, sends every Opus packet wrapped in RED with the previous
frame as a redundant block. Every tenth packet is lost before it leaves. The
viewer negotiated plain Opus: it must get every frame, the lost ones rebuilt
from the next packet's block, in order and with no gap in its sequence.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Iterator

import pytest

from ..clients import WhepViewer, WhipPublisher, _payload
from ..nodeproc import NodeProcess


@pytest.fixture(scope="module", params=["python", "native"])
def plane_node(request: pytest.FixtureRequest) -> Iterator[NodeProcess]:
    proc = NodeProcess(env={"EDGE_MEDIA_DATAPLANE": request.param, "EDGE_LOAD_PLUGINS": "chat"}).start()
    yield proc
    proc.stop()


async def _until(predicate: object, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


async def test_red_from_a_publisher_rebuilds_its_lost_audio(plane_node: NodeProcess) -> None:
    node = plane_node
    room = "red-in"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"), video=False, red=True, drop_audio_every=10)
    viewer = WhepViewer(node.url, room, node.token(room, "v", "viewer"), video_slots=0)
    try:
        r = await pub.start()
        assert r.status_code == 201, r.text
        # The answer lists RED first (that is what makes a browser send it).
        audio_line = next(line for line in r.text.split("\r\n") if line.startswith("m=audio"))
        assert audio_line.split(" ")[3] == "63", audio_line
        assert (await viewer.start()).status_code == 201
        await viewer.wait_raw("audio", 30)
        # Losses from now on must all come back.
        start = len(viewer.raw_packets["audio"])
        lost_before = len(pub.dropped_audio)
        await _until(lambda: len(pub.dropped_audio) >= lost_before + 5)
        await viewer.wait_raw("audio", len(viewer.raw_packets["audio"]) + 20)
        got = viewer.raw_packets["audio"][start:]
        payloads = [_payload(d) for d in got]
        lost = pub.dropped_audio[lost_before : lost_before + 5]
        assert all(p in payloads for p in lost), "a lost packet was not rebuilt"
        # One plain Opus stream: no RED, no gap, timestamps in step with the sequence.
        seqs = [struct.unpack_from("!H", d, 2)[0] for d in got]
        assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:])), seqs
        assert {d[1] & 0x7F for d in got} == {next(iter({d[1] & 0x7F for d in got}))}
        stamps = [struct.unpack_from("!I", d, 4)[0] for d in got]
        assert all((b - a) & 0xFFFFFFFF == 960 for a, b in zip(stamps, stamps[1:])), stamps
        info = node.room(room) or {"producers": []}
        audio = next(p for p in info["producers"] if p["kind"] == "audio")
        assert audio["codec"] == "opus" and audio["red"]["recovered"] >= 5, audio
        assert audio["packets_lost"] == 0, audio  # nothing left missing upstream
        assert node.metrics()["edge_red_recovered_packets_total"] >= 5
    finally:
        await viewer.stop()
        await pub.stop()
