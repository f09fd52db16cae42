"""The weak-network scenario with headless Chromium as the viewer.

Chromium runs inside the viewer's namespace (``NetNs.exec_wrapper``), loads
tests/e2e/pages/view.html from a static server in the root namespace and
watches over WHEP; the page samples its own ``getStats()`` every 250 ms. The
freeze figures are Chromium's (inbound-rtp ``freezeCount`` and
``totalFreezesDuration``: measured by the browser from its decoded frames),
the layer is the decoded frame size, audio continuity is its concealment.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import async_playwright

from tests.e2e.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.static_server import StaticServer
from tests.impair import Network, play

from .scenario import RID_OF, node_in, profile_spec, simulcast_publisher


@dataclass
class BrowserQoe:
    profile: str
    seconds: float
    timeline: list[tuple[float, dict[str, Any], dict[str, Any] | None]]  # (s since first frame, video, audio)
    node_log: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def last(self) -> dict[str, Any]:
        return self.timeline[-1][1]

    def freeze_s(self, start: float = 0.0, end: float | None = None) -> float:
        inside = [v for t, v, _ in self.timeline if t >= start * 1000 and (end is None or t <= end * 1000)]
        return inside[-1]["totalFreezesDuration"] - inside[0]["totalFreezesDuration"] if inside else 0.0

    @property
    def stall_rate(self) -> float:
        watched = self.timeline[-1][0] / 1000 if self.timeline else 0
        return self.last["totalFreezesDuration"] / watched if watched else 1.0

    def layers(self) -> list[tuple[float, str]]:
        out: list[tuple[float, str]] = []
        for t, v, _ in self.timeline:
            rid = RID_OF.get((v["width"], v["height"]), f"{v['width']}x{v['height']}")
            if not out or out[-1][1] != rid:
                out.append((round(t / 1000, 1), rid))
        return out

    def layer_at(self, seconds: float) -> str | None:
        current = None
        for t, rid in self.layers():
            if t <= seconds:
                current = rid
        return current

    def first_time(self, rids: set[str], after: float = 0.0) -> float | None:
        if self.layer_at(after) in rids:
            return after
        return next((t for t, rid in self.layers() if t >= after and rid in rids), None)

    def fps(self, start: float = 0.0, end: float | None = None) -> float:
        inside = [(t, v) for t, v, _ in self.timeline if t >= start * 1000 and (end is None or t <= end * 1000)]
        if len(inside) < 2:
            return 0.0
        frames = inside[-1][1]["framesDecoded"] - inside[0][1]["framesDecoded"]
        return frames / ((inside[-1][0] - inside[0][0]) / 1000)

    def smooth_from(self, after: float, window: float = 1.0, fraction: float = 0.6) -> float | None:
        """The first time at/after ``after`` from which ``window`` seconds decode at
        least ``fraction`` of the run's clean frame rate with no new freeze."""
        nominal = 15.0  # the test publisher's frame rate (tests/simulcast_client.py)
        for t, v, _ in self.timeline:
            if t < after * 1000:
                continue
            end = [x for x in self.timeline if x[0] >= t + window * 1000]
            if not end:
                return None
            t2, v2, _ = end[0]
            frames = v2["framesDecoded"] - v["framesDecoded"]
            if frames >= fraction * nominal * window and v2["freezeCount"] == v["freezeCount"]:
                return t / 1000
        return None

    def longest_freeze(self) -> float:
        """Longest single freeze, from the steps of totalFreezesDuration (one freeze per 250 ms sample)."""
        longest = 0.0
        previous = None
        for _, v, _ in self.timeline:
            if previous is not None and v["freezeCount"] > previous["freezeCount"]:
                added = v["totalFreezesDuration"] - previous["totalFreezesDuration"]
                longest = max(longest, added / (v["freezeCount"] - previous["freezeCount"]))
            previous = v
        return longest

    def audio_concealed(self, start: float = 0.0, end: float | None = None) -> float:
        inside = [a for t, _, a in self.timeline if a and t >= start * 1000 and (end is None or t <= end * 1000)]
        if len(inside) < 2:
            return 0.0
        samples = inside[-1]["totalSamplesReceived"] - inside[0]["totalSamplesReceived"]
        concealed = inside[-1]["concealedSamples"] - inside[0]["concealedSamples"]
        return concealed / samples if samples else 1.0

    def summary(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "viewer": "chromium",
            "freezes": self.last["freezeCount"],
            "freeze_s": round(self.last["totalFreezesDuration"], 2),
            "stall_rate": round(self.stall_rate, 4),
            "layers": self.layers(),
            "audio_concealed": round(self.audio_concealed(), 4),
            "video_lost": self.last["packetsLost"],
            "nacks": self.last["nackCount"],
        }


JOIN_TIMEOUT_MS = 150_000


class JoinTimeout(RuntimeError):
    """The viewer never showed a first frame: the join itself got stuck on the
    impaired link (the DTLS retransmission backoff, docs/weak-networks.md)."""


def _network_changed(exc: Exception) -> bool:
    text = str(exc)
    return any(
        x in text
        for x in ("ERR_NETWORK_CHANGED", "interrupted by another navigation", "Execution context was destroyed")
    )


async def open_viewer(page: Any, url: str, attempts: int = 5) -> None:
    """Load view.html and wait for its first decoded frame (or its error phase).

    Chromium in a namespace whose link was just shaped sees a network change:
    it aborts the navigation (ERR_NETWORK_CHANGED) or reloads the page by
    itself (the same URL: "interrupted by another navigation", or the
    page's context destroyed under a wait). Either way the page to wait for is
    the one Chromium ends up on; a new navigation is made only when it is not ours.

    Joining can take long on the 30 %-loss link: a DTLS flight of several
    packets gets through a third of the time and the retransmission timers
    back off exponentially (1, 2, 4, 8, 16, 32 s), so about one join in five
    needs a minute or more there. The wait for the first frame allows for it;
    the profile's measurements start at the first frame.
    """
    for attempt in range(attempts):
        try:
            if not page.url.startswith(url.split("?", 1)[0]):
                await page.goto(url)
            await page.wait_for_load_state("load")
            await page.wait_for_function(
                "window.view && (window.view.t.firstDecoded !== undefined || window.view.phase === 'error')",
                timeout=JOIN_TIMEOUT_MS, polling=100,
            )
            return
        except Exception as exc:
            if not _network_changed(exc) or attempt == attempts - 1:
                if "Timeout" in type(exc).__name__:
                    raise JoinTimeout(f"no first frame within {JOIN_TIMEOUT_MS // 1000} s: {exc}") from exc
                raise


async def run(profile: str, seconds: float, *, room: str = "qoe-chromium", clear_at: float | None = None,
              plane: str = "python", join_clean: bool = False) -> BrowserQoe:
    with Network() as net:
        node_ns, pub_ns, viewer_ns = net.host("node"), net.host("pub"), net.host("viewer")
        node = node_in(node_ns, plane)
        publisher = None
        try:
            with StaticServer(host=net.root_address) as static:
                publisher = await simulcast_publisher(pub_ns, node, room)
                spec = profile_spec(profile, clear_at)
                if not join_clean:
                    viewer_ns.link.apply(spec.phases[0])
                async with async_playwright() as p:
                    browser = await p.chromium.launch(
                        executable_path=viewer_ns.exec_wrapper(CHROMIUM), headless=True, args=CHROMIUM_ARGS
                    )
                    try:
                        page = await (await browser.new_context()).new_page()
                        query = f"node={node.url}&room={room}&token={node.token(room, 'shopper', 'viewer')}"
                        await open_viewer(page, f"{static.url}/view.html?{query}")
                        schedule = asyncio.ensure_future(play(viewer_ns.link, spec))
                        # The run's length is the scenario's parameter: watch for that long.
                        await page.wait_for_function(
                            f"(window.view.timeline || []).length && window.view.timeline.at(-1)[0] >= {seconds * 1000}",
                            timeout=(seconds + 60) * 1000, polling=250,
                        )
                        schedule.cancel()
                        timeline = await page.evaluate("window.view.timeline")
                    finally:
                        await browser.close()
            metrics = node.metrics()
            log = node.log()
            await publisher.finish()
        finally:
            if publisher is not None:
                await publisher.kill()
            node.stop()
    return BrowserQoe(profile, seconds, [tuple(x) for x in timeline], node_log=log, metrics=metrics)  # type: ignore[misc]
