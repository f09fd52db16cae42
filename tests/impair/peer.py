"""aiortc WHIP publisher / WHEP viewer as a process, to run inside a namespace.

    ip netns exec <ns> python -m tests.impair.peer view    --url U --room R --token T --address A --seconds 8
    ip netns exec <ns> python -m tests.impair.peer publish --url U --room R --token T --address A

Why a process: a network namespace belongs to a thread, and aiortc/aioice open
sockets lazily from the event loop, so the simplest robust way to put a peer
"on the viewer's link" is to run it there. Output is JSON lines on stdout:

* ``{"event": "connected", "status": 201}`` once the peer connection is up
  (or ``{"event": "failed", "status": 4xx/5xx, ...}`` and exit 1);
* viewer: ``{"event": "first_frame", "after_s": ...}`` at the first decoded
  video frame, then at the end ``{"event": "result", ...}`` with decoded frame
  counts, video frame arrival times (seconds since connected, for freeze and
  frame-rate analysis), frame sizes and RTP packet counts;
* publisher (``publish``: aiortc single stream; ``publish-simulcast``: three
  VP8 layers q/h/f, tests/simulcast_client.py): keeps sending until its stdin
  closes, then ``{"event": "result", "video_frames_sent": ...}``.

``--address`` pins ICE to the namespace's address (what the fixture's
``NetNs.address`` is), so candidates are exactly the link under test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import json
import sys
import time
from typing import Any

from edge.transport.webrtc import install_ice_addresses
from tests.clients import WhepViewer, WhipPublisher
from tests.simulcast_client import SimulcastPublisher


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def wait_stdin_eof() -> None:
    # A pipe reader on the loop, not a thread: a thread blocked in read()
    # would keep asyncio.run from returning.
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


async def view(args: argparse.Namespace) -> int:
    viewer = WhepViewer(args.url, args.room, args.token)
    frame_times: list[float] = []
    try:
        response = await viewer.start()
    except (RuntimeError, TimeoutError) as e:
        emit(event="failed", status=0, error=str(e))
        return 1
    if response.status_code != 201:
        emit(event="failed", status=response.status_code, error=response.text)
        return 1
    connected_at = time.monotonic()
    emit(event="connected", status=201)

    audio_times: list[float] = []

    async def watch() -> None:
        # Each decoded frame bumps viewer.frames; sample it via the frame event.
        seen = heard = 0
        while True:
            viewer._frame.clear()
            await viewer._frame.wait()
            now = time.monotonic() - connected_at
            while seen < viewer.frames["video"]:
                seen += 1
                frame_times.append(round(now, 4))
                if seen == 1:
                    emit(event="first_frame", after_s=round(now, 4))
            while heard < viewer.frames["audio"]:
                heard += 1
                audio_times.append(round(now, 4))

    watcher = asyncio.ensure_future(watch())
    stdin_closed = asyncio.ensure_future(wait_stdin_eof())
    # The viewing session's length is the test's parameter: --seconds, or
    # until the test closes our stdin, whichever comes first.
    await asyncio.wait([stdin_closed], timeout=args.seconds or None)
    watcher.cancel()
    stdin_closed.cancel()
    emit(
        event="result",
        frames=viewer.frames,
        video_frame_times=frame_times,
        audio_frame_times=audio_times,
        frame_sizes=sorted(viewer.frame_sizes),
        # (seconds since connected, width, height) each time the decoded size changed
        size_log=[(round(t - connected_at, 4), w, h) for t, w, h in viewer.size_log],
        rtp_packets={kind: len(p) for kind, p in viewer.received_payloads.items()},
    )
    await viewer.stop()
    return 0


async def publish(args: argparse.Namespace) -> int:
    publisher: WhipPublisher | SimulcastPublisher
    if args.role == "publish-simulcast":
        # EDGE_TEST_TEMPORAL_LAYERS=1 (bench/qoe.py --temporal): three VP8 temporal layers per layer.
        temporal = os.environ.get("EDGE_TEST_TEMPORAL_LAYERS") == "1"
        publisher = SimulcastPublisher(args.url, args.room, args.token, temporal=temporal)
    else:
        publisher = WhipPublisher(args.url, args.room, args.token)
    try:
        response = await publisher.start()
    except (RuntimeError, TimeoutError) as e:
        emit(event="failed", status=0, error=str(e))
        return 1
    if response.status_code != 201:
        emit(event="failed", status=response.status_code, error=response.text)
        return 1
    emit(event="connected", status=201)
    await wait_stdin_eof()  # publish until the test closes our stdin
    extra: dict[str, Any] = {}
    if isinstance(publisher, SimulcastPublisher):
        frames = publisher.frames
        extra["layers"] = {
            rid: {"packets": x.packets, "keyframes": x.keyframes, "plis": x.plis, "nacked": x.nacked}
            for rid, x in publisher.layers.items()
        }
    else:
        frames = publisher.video_track.frames if publisher.video_track else 0
    await publisher.stop()
    emit(event="result", video_frames_sent=frames, **extra)
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description="aiortc peer for namespace tests")
    ap.add_argument("role", choices=["view", "publish", "publish-simulcast"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--room", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--address", required=True, help="the only ICE host address to gather")
    ap.add_argument(
        "--seconds", type=float, default=8.0, help="viewer: how long to watch (0: until stdin closes)"
    )
    args = ap.parse_args()
    install_ice_addresses([args.address])
    sys.exit(asyncio.run(view(args) if args.role == "view" else publish(args)))


if __name__ == "__main__":
    main()
