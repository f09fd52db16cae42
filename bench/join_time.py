#!/usr/bin/env python3
"""Viewer join time with aiortc peers: WHEP POST to the first decoded video frame.

Run from the repo root::

    python bench/join_time.py --viewers 30

Starts a real ``edge serve`` (tests/nodeproc.NodeProcess, free ports, a
temporary data dir), one aiortc WHIP publisher sending VP8 + Opus
(tests/clients.WhipPublisher), waits until the node has its producers and the
encoder has been running for ``--warmup`` seconds, then joins ``--viewers``
aiortc WHEP viewers one after another (tests/clients.WhepViewer). Each viewer
measures ``wait_first_frame()``: the seconds from its WHEP POST to its first
decoded video frame, which covers the HTTP offer/answer, ICE, DTLS, the
consumer attach, the PLI and the publisher's next keyframe, and the decode. The
viewer is stopped (DELETE) before the next one joins, so every join meets an
otherwise idle room.

Joins that follow each other closely meet the node's PLI throttle
(media.keyframe_min_interval_ms, 500 ms by default: at most one PLI per
producer per interval), so with ``--gap 0`` most joins wait for the throttle;
``--gap 0.6`` measures isolated joins, and ``--node-env
EDGE_MEDIA_KEYFRAME_MIN_INTERVAL_MS=50`` shows the effect of the setting.

Prints one JSON object: p50/p95/min/max/mean join time in ms, every sample,
and the failures (a viewer that gets no frame within ``--timeout``).
Everything here runs on loopback: no network latency, both peers are aiortc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.transport.webrtc import install_ice_addresses  # noqa: E402
from tests.clients import WhepViewer, WhipPublisher  # noqa: E402
from tests.nodeproc import NodeProcess  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


async def wait_for_producers(node: NodeProcess, room: str, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await asyncio.to_thread(node.room, room)
        producers = (info or {}).get("producers", 0)  # a list in the detailed view
        if (len(producers) if isinstance(producers, list) else int(producers)) >= count:
            return
        await asyncio.sleep(0.1)  # the admin API has no event to wait on
    raise RuntimeError(f"the node did not register {count} producers in room {room!r}")


async def run(args: argparse.Namespace) -> dict[str, object]:
    node = NodeProcess(env=dict(args.node_env))
    await asyncio.to_thread(node.start)
    publisher: WhipPublisher | None = None
    samples: list[float] = []
    failures: list[str] = []
    try:
        publisher = WhipPublisher(node.url, args.room, node.token(args.room, "host", "host"))
        response = await publisher.start()
        if response.status_code != 201:
            raise RuntimeError(f"WHIP publish failed: {response.status_code} {response.text[:300]}")
        await wait_for_producers(node, args.room, 2)
        await asyncio.sleep(args.warmup)

        for n in range(args.viewers):
            if n and args.gap:
                await asyncio.sleep(args.gap)
            viewer = WhepViewer(node.url, args.room, node.token(args.room, f"viewer-{n}", "viewer"))
            try:
                response = await viewer.start()
                if response.status_code != 201:
                    failures.append(f"viewer {n}: WHEP {response.status_code} {response.text[:200]}")
                    continue
                seconds = await viewer.wait_first_frame(timeout=args.timeout)
                samples.append(seconds * 1000.0)
                if args.verbose:
                    print(f"viewer {n}: {seconds * 1000.0:.1f} ms", file=sys.stderr)
            except (asyncio.TimeoutError, TimeoutError, RuntimeError) as exc:
                failures.append(f"viewer {n}: {type(exc).__name__}: {exc}")
            finally:
                await viewer.stop()
    finally:
        if publisher is not None:
            try:
                await publisher.stop()
            except Exception as exc:  # never hide the measurements behind teardown
                failures.append(f"publisher stop: {exc!r}")
        await asyncio.to_thread(node.stop)

    def ms(value: float) -> float:
        return round(value, 1)

    return {
        "benchmark": "join_time_aiortc",
        "viewers": args.viewers,
        "measured": len(samples),
        "failures": failures,
        "join_ms": {
            "p50": ms(percentile(samples, 0.50)),
            "p95": ms(percentile(samples, 0.95)),
            "min": ms(min(samples)) if samples else None,
            "max": ms(max(samples)) if samples else None,
            "mean": ms(sum(samples) / len(samples)) if samples else None,
        },
        "samples_ms": [ms(s) for s in samples],
        "warmup_s": args.warmup,
        "gap_s": args.gap,
        "node_env": dict(args.node_env),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("EDGE_"):
        raise argparse.ArgumentTypeError("expected EDGE_<SECTION>_<KEY>=VALUE")
    return key, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=30, help="viewers joined one after another")
    parser.add_argument("--room", default="bench-join", help="room name")
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of publishing before the first viewer"
    )
    parser.add_argument(
        "--gap",
        type=float,
        default=0.0,
        help="seconds between one viewer's stop and the next one's POST (default 0)",
    )
    parser.add_argument(
        "--timeout", type=float, default=15.0, help="seconds a viewer waits for its first frame"
    )
    parser.add_argument(
        "--node-env",
        action="append",
        default=[],
        type=_env_pair,
        metavar="EDGE_KEY=VALUE",
        help="extra node config, e.g. EDGE_MEDIA_KEYFRAME_MIN_INTERVAL_MS=100 (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print each join on stderr")
    args = parser.parse_args()
    if args.viewers < 1:
        parser.error("--viewers must be at least 1")

    logging.basicConfig(level=logging.WARNING)
    # aiortc peers and the node live on loopback; aioice skips 127.0.0.1 otherwise.
    install_ice_addresses(["127.0.0.1"])
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    return 0 if result["measured"] else 1


if __name__ == "__main__":
    sys.exit(main())
