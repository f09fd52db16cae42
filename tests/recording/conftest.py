"""One recorded live shared by the node and browser tests of recording.

A real `edge serve` with recording on (EDGE_RECORDING_ENABLED=true) and the
pin test plugin (tests/recording/pin_plugin.py, via [plugins] load); an aiortc
publisher sends VP8 + Opus for about 3.5 s; a product is pinned half-way; the
publisher leaves, which ends the recording, and the fixture waits until the
remuxed file is ready.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import av
import httpx
import numpy as np
import pytest
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from .. import clients
from ..clients import WhipPublisher
from ..e2e.conftest import chromium, static_server  # noqa: F401  (browser fixtures)
from ..nodeproc import NodeProcess

PUBLISH_SECONDS = 3.5
PIN_AFTER_SECONDS = 2.0
READY_TIMEOUT = 30.0


class Tone48k(AudioStreamTrack):
    """A 440 Hz tone in 20 ms frames of 960 samples at 48 kHz, paced in real time.

    (tests/clients.py's ToneAudioTrack puts 160 samples per 20 ms frame at 48 kHz,
    so its RTP clock runs at a sixth of real time: fine for forwarding tests, not
    for checking a recording's audio timeline.)
    """

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if hasattr(self, "_timestamp"):
            self._timestamp += 960
            await asyncio.sleep(self._start + self._timestamp / 48000 - time.time())
        else:
            self._start = time.time()
            self._timestamp = 0
        t = (np.arange(960) + self._timestamp) / 48000.0
        samples = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts, frame.time_base = self._timestamp, fractions.Fraction(1, 48000)
        return frame


@dataclass
class RecordedLive:
    node: NodeProcess
    room: str
    pin: dict[str, Any]  # the commerce.product_pinned data the plugin emitted
    frames_at_pin: tuple[int, int]  # the publisher's video frame counter before and after the pin
    frames_sent: int
    sender_reports: int
    timings: dict[str, float] = field(default_factory=dict)


def recording_node(extra_env: dict[str, str] | None = None) -> NodeProcess:
    conf = Path(tempfile.mkdtemp(prefix="edge-recording-conf-")) / "edge.toml"
    conf.write_text('[plugins]\nload = ["tests.recording.pin_plugin"]\n')
    env = {
        "EDGE_CONFIG": str(conf),
        "EDGE_LOAD_PLUGINS": "",  # no installed plugins: the test double stands in for commerce
        "EDGE_RECORDING_ENABLED": "true",
        **(extra_env or {}),
    }
    return NodeProcess(env=env)


def wait_ready(node: NodeProcess, room: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    """The room's latest recording's markers document, once its media is ready."""
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{node.url}/v1/rooms/{room}/recordings/latest/markers", timeout=5)
        if r.status_code == 200:
            return dict(r.json())
        if time.monotonic() > deadline:
            listing = httpx.get(f"{node.url}/v1/rooms/{room}/recordings", timeout=5).text
            raise AssertionError(f"no ready recording of {room}: {r.status_code} {listing}\n{node.log()}")
        time.sleep(0.1)  # the remux runs in a child process of the node: nothing to wait on


async def publish_and_pin(node: NodeProcess, room: str) -> RecordedLive:
    host = node.token(room, "seller", "host")
    publisher = WhipPublisher(node.url, room, host)
    async with httpx.AsyncClient() as client:  # made before the pin: its setup takes CPU
        with mock.patch.object(clients, "ToneAudioTrack", Tone48k):
            r = await publisher.start()
        assert r.status_code == 201, r.text
        started = time.monotonic()
        await asyncio.sleep(PIN_AFTER_SECONDS)
        assert publisher.video_track is not None
        frames_before = publisher.video_track.frames
        r = await client.post(
            f"{node.url}/v1/plugins/pin_plugin/pin",
            json={"room": room, "sku": "SKU-RED-MUG", "title": "Red mug", "price": "12.50", "currency": "EUR"},
            headers={"Authorization": f"Bearer {host}"},
        )
        frames_after = publisher.video_track.frames
        assert r.status_code == 200, r.text
        pin = r.json()
        await asyncio.sleep(PUBLISH_SECONDS - (time.monotonic() - started))
        await publisher.stop()
        frames_sent = publisher.video_track.frames  # every frame the track made, sent or not
        reports = len(publisher.sender_reports)
    return RecordedLive(node, room, pin, (frames_before, frames_after), frames_sent, reports)


@pytest.fixture(scope="session")
def recorded_live() -> Iterator[RecordedLive]:
    node = recording_node().start()
    try:
        room = "rec-" + secrets.token_hex(4)
        live = asyncio.run(publish_and_pin(node, room))
        t0 = time.monotonic()
        wait_ready(node, room)
        live.timings["ready_after_leave"] = time.monotonic() - t0
        yield live
    finally:
        node.stop()
