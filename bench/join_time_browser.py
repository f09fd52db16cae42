"""Browser join time: WHEP POST -> first decoded frame, in headless Chromium.

Starts a real `edge serve` (tests/nodeproc.NodeProcess), one Chromium page that
publishes the fake camera + mic via WHIP, then N viewer pages one after the other
(each in a fresh browser context, stopped with WHEPClient.stop() before the next).
Each viewer measures, in the page, the time from its WHEP POST to the first
framesDecoded > 0 (getStats polled every 10 ms). Prints JSON with p50/p95/min/max.

    python bench/join_time_browser.py --runs 20

Needs what the browser tests need: Debian's /usr/bin/chromium and
`npm ci --prefix tests/e2e`. Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.chromium import (  # noqa: E402
    BrowserPages,
    launch,
    missing_prerequisites,
    prerequisites_message,
)
from tests.e2e.static_server import StaticServer  # noqa: E402
from tests.nodeproc import NodeProcess  # noqa: E402

ROOM = "bench-join"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "min": None, "max": None, "mean": None}
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "min": min(values),
        "max": max(values),
        "mean": round(sum(values) / len(values), 1),
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def wait_page(pages: BrowserPages, name: str, var: str, ok: str, timeout_s: float) -> None:
    failed = (
        f"(window.{var} && (window.{var}.phase === 'error' || "
        f"window.{var}.connectionState === 'failed'))"
    )
    page = pages.pages[name]
    try:
        await page.wait_for_function(f"({ok}) || {failed}", timeout=timeout_s * 1000, polling=20)
    except Exception as exc:
        raise RuntimeError(f"{name}: timed out waiting for {ok}: {exc.__class__.__name__}\n"
                           f"{await pages.report(**{name: var})}") from None
    if not await page.evaluate(ok):
        raise RuntimeError(f"{name}: page failed\n{await pages.report(**{name: var})}")


async def run(args: argparse.Namespace, node: NodeProcess, static: StaticServer) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    samples: list[dict[str, Any]] = []
    async with async_playwright() as p:
        t0 = time.perf_counter()
        browser = await launch(p)
        launch_ms = round((time.perf_counter() - t0) * 1000)
        version = browser.version
        pages = BrowserPages(browser, static.url)
        try:
            await pages.open(
                "pub", "pub.html", node=node.url, room=ROOM, token=node.token(ROOM, "host", "host")
            )
            await wait_page(pages, "pub", "pub", "window.pub.connectionState === 'connected'",
                            args.timeout)
            # let the publisher's encoder settle (first keyframes, bitrate ramp) before measuring
            await pages.pages["pub"].wait_for_function(
                "window.pub.framesSent > 30", timeout=args.timeout * 1000)
            log(f"publisher connected (browser launch {launch_ms} ms, Chromium {version})")

            total = args.warmup + args.runs
            for i in range(total):
                name = f"view{i}"
                await pages.open(name, "view.html", node=node.url, room=ROOM,
                                 token=node.token(ROOM, f"viewer-{i}", "viewer"))
                await wait_page(pages, name, "view", "window.view.joinMs !== null", args.timeout)
                view = await pages.state(name, "view")
                page = pages.pages[name]
                await page.evaluate("window.whep.stop()")
                await page.context.close()
                warm = i < args.warmup
                log(f"{'warmup' if warm else 'run'} {i + 1}/{total}: join {view['joinMs']} ms "
                    f"(answer {view.get('answerMs')} ms, connected {view.get('connectedMs')} ms)")
                if not warm:
                    samples.append({k: view.get(k) for k in
                                    ("joinMs", "answerMs", "connectedMs", "codec", "frameSize", "pair")})
            await pages.pages["pub"].evaluate("window.whip.stop()")
        finally:
            await browser.close()

    join = [s["joinMs"] for s in samples]
    return {
        "metric": "browser WHEP POST -> first decoded frame (ms)",
        "runs": len(samples),
        "warmup": args.warmup,
        "join_ms": summary(join),
        "answer_ms": summary([s["answerMs"] for s in samples if s["answerMs"] is not None]),
        "connected_ms": summary([s["connectedMs"] for s in samples if s["connectedMs"] is not None]),
        "samples_join_ms": join,
        "codec": samples[0]["codec"] if samples else None,
        "frame_size": samples[0]["frameSize"] if samples else None,
        "ice_pair": samples[0]["pair"] if samples else None,
        "chromium": version,
        "browser_launch_ms": launch_ms,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="measured viewers (default 20)")
    ap.add_argument("--warmup", type=int, default=0, help="unmeasured viewers first (default 0)")
    ap.add_argument("--timeout", type=float, default=20.0, help="per step, seconds")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    missing = missing_prerequisites()
    if missing:
        log(prerequisites_message(missing))
        return 2

    node = NodeProcess().start()
    static = StaticServer().start()
    try:
        result = asyncio.run(run(args, node, static))
    except Exception as exc:
        log(f"FAILED: {exc}\n--- node log (tail) ---\n{node.log()}")
        return 1
    finally:
        static.stop()
        node.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
