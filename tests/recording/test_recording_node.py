"""A real node records a real aiortc publisher; the file plays back; the pin is a marker.

The recorded live (tests/recording/conftest.py): ~3.5 s of VP8 320x240 + Opus
from an aiortc publisher, a product pinned after 2 s (commerce.product_pinned
from the test plugin), then the publisher leaves and the node remuxes.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
from pathlib import Path

import av
import httpx
import numpy as np

from ..clients import VIDEO_SIZE, WhipPublisher
from .conftest import PUBLISH_SECONDS, RecordedLive, recording_node


def stripe_x(frame: av.VideoFrame) -> int:
    """Where the publisher's white 20 px stripe is (PatternVideoTrack: x = frame index * 4)."""
    gray = frame.to_ndarray(format="gray").astype(np.float64)
    columns = gray.mean(axis=0)
    window = np.convolve(columns, np.ones(20), mode="valid")
    return int(np.argmax(window))


def test_recording_plays_back_with_its_marker(recorded_live: RecordedLive) -> None:
    node, room = recorded_live.node, recorded_live.room
    listing = httpx.get(f"{node.url}/v1/rooms/{room}/recordings", timeout=5).json()  # public by default
    [rec] = listing["recordings"]
    assert rec["state"] == "ready" and rec["media_type"] == "video/webm", rec
    assert abs(rec["duration"] - PUBLISH_SECONDS) < 0.6, rec

    # the media, whole and by Range (what a <video> element asks for)
    url = f"{node.url}{rec['media_url']}"
    data = httpx.get(url, timeout=10).content
    assert len(data) == rec["bytes"]
    part = httpx.get(url, headers={"Range": "bytes=1000-1999"}, timeout=10)
    assert part.status_code == 206 and part.content == data[1000:2000]

    path = Path(tempfile.mkdtemp(prefix="edge-rec-test-")) / "replay.webm"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        names = sorted(s.codec_context.name for s in container.streams)
        assert names == ["opus", "vp8"], names
        video_packets = sum(1 for p in container.demux(video=0) if p.size)
    with av.open(str(path)) as container:
        audio_packets = sum(1 for p in container.demux(audio=0) if p.size)
    sent = recorded_live.frames_sent
    assert 0.85 * sent <= video_packets <= sent, (video_packets, sent)
    assert audio_packets >= 0.8 * rec["duration"] * 50, audio_packets  # 20 ms Opus packets

    # decoded here, in the test process (the node never decodes)
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert {(f.width, f.height) for f in frames} == {VIDEO_SIZE}
    assert len(frames) == video_packets

    # the pin is a marker, at the offset of its moment in the media timeline ...
    doc = httpx.get(f"{node.url}/v1/rooms/{room}/recordings/latest/markers", timeout=5).json()
    [marker] = doc["markers"]
    pin = recorded_live.pin
    assert (marker["sku"], marker["title"], marker["price"], marker["currency"]) == (
        "SKU-RED-MUG", "Red mug", "12.50", "EUR"
    )
    assert abs(marker["offset"] - (pin["at"] - rec["media_start"])) < 0.002, (marker, rec)
    assert 1.0 < marker["offset"] < rec["duration"] - 0.5, marker
    # ... and the frame shown there is one the publisher captured while it pinned
    # (PatternVideoTrack draws frame n's stripe at x = 4n; a little slack for encoding
    # and sending on a busy machine)
    shown = min(frames, key=lambda f: abs(float(f.time) - marker["offset"]))
    index = stripe_x(shown) // 4  # frame index modulo 80
    before, after = recorded_live.frames_at_pin
    window = {n % 80 for n in range(before - 10, after + 3)}
    assert index in window, (stripe_x(shown), recorded_live.frames_at_pin, marker)

    # the recordings service other plugins see gives the same marker and a replay link
    # (through the API here: the service lives in the node process)
    assert doc["media_url"] == rec["media_url"]

    # no decoder or encoder was ever created in the node; nothing was dropped
    metrics = node.metrics()
    assert all(v == 0 for k, v in metrics.items() if k.startswith("edge_codec_instances_total")), metrics
    assert metrics["edge_recording_packets_total"] > video_packets
    assert metrics["edge_recording_dropped_packets_total"] == 0
    assert metrics['edge_recordings_total{result="ready"}'] >= 1


def test_rest_start_stop_on_the_live_node(recorded_live: RecordedLive) -> None:
    node = recorded_live.node
    room = "rest-" + recorded_live.room
    url = f"{node.url}/v1/rooms/{room}/recording"
    host = {"Authorization": "Bearer " + node.token(room, "seller", "host")}
    viewer = {"Authorization": "Bearer " + node.token(room, "fan", "viewer")}
    assert httpx.post(url, timeout=5).status_code == 401
    assert httpx.post(url, headers=viewer, timeout=5).status_code == 403
    r = httpx.get(url, headers=host, timeout=5)
    assert r.status_code == 200 and r.json()["recorded"] is True  # enabled, auto, all rooms
    r = httpx.delete(url, headers=host, timeout=5)
    assert r.status_code == 200 and r.json()["recorded"] is False
    r = httpx.post(url, headers=node.admin_headers(), timeout=5)
    assert r.status_code == 200 and r.json()["recorded"] is True


async def test_shutdown_finishes_the_recording(tmp_path: Path) -> None:
    """SIGTERM while the host is live: the node remuxes before it exits."""
    node = recording_node({"EDGE_RECORDING_DIRECTORY": str(tmp_path)}).start()
    room = "bye-" + secrets.token_hex(3)
    publisher = WhipPublisher(node.url, room, node.token(room, "seller", "host"), audio=False)
    try:
        r = await publisher.start()
        assert r.status_code == 201, r.text
        await asyncio.sleep(1.5)
        assert await asyncio.to_thread(node.stop) == 0, node.log()
    finally:
        await publisher.stop(delete=False)
    [doc] = [json.loads(p.read_text()) for p in tmp_path.glob(f"{room}/*/recording.json")]
    assert doc["state"] == "ready" and doc["end_reason"] == "shutdown", doc
    assert doc["audio"] is None and doc["video"]["frames"] > 20, doc
    assert (tmp_path / room / doc["id"] / doc["media"]).stat().st_size == doc["bytes"]
