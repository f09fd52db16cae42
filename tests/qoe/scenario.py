"""One weak-network scenario: node, publisher and viewer in their own namespaces.

The node runs in namespace ``node``; the simulcast publisher (three VP8 layers
q/h/f, tests/simulcast_client.py) on a clean link in ``pub``; an aiortc viewer
in ``viewer`` behind the profile's impairment (tests/impair), applied to both
directions of its link and changed on the profile's schedule. Everything the
result says about freezes and layers comes from the viewer's decoded frames.
Used by tests/qoe (pass criteria) and bench/qoe.py (the QoE table).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tests.impair import PROFILES, Network, play
from tests.impair.profiles import Phase, Profile
from tests.impair.shaping import Impairment
from tests.impair.peerproc import PeerProcess
from tests.nodeproc import NodeProcess
from tests.simulcast_client import LAYERS

from . import analysis

SIZES = {rid: (w, h) for rid, (w, h, _) in LAYERS.items()}
RID_OF = {size: rid for rid, size in SIZES.items()}


@dataclass
class QoeResult:
    profile: str
    plane: str
    seconds: float
    first_frame_s: float
    video_frames: int
    audio_frames: int
    video_times: list[float]
    audio_times: list[float]
    size_log: list[tuple[float, int, int]]
    freezes: analysis.Freezes
    stall_rate: float
    node_metrics: dict[str, float]
    link_dropped: tuple[int, int]  # (towards the viewer, from the viewer)
    node_log: str = ""

    def layers(self) -> list[tuple[float, str]]:
        return [(round(t, 1), RID_OF.get((w, h), f"{w}x{h}")) for t, w, h in self.size_log]

    def summary(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "plane": self.plane,
            "first_frame_s": round(self.first_frame_s, 2),
            "fps": round(self.video_frames / max(0.1, self.seconds - self.first_frame_s), 1),
            "freezes": self.freezes.count,
            "freeze_s": round(self.freezes.total_s, 2),
            "longest_freeze_s": round(self.freezes.longest_s, 2),
            "stall_rate": round(self.stall_rate, 4),
            "layers": self.layers(),
        }


def profile_spec(profile: str, clear_at: float | None) -> Profile:
    """The named profile, with a clean phase appended at ``clear_at`` when given."""
    spec = PROFILES[profile]
    if clear_at is not None:
        spec = Profile(spec.name, (*spec.phases, Phase(clear_at, Impairment(), Impairment())))
    return spec


def node_in(ns: Any, plane: str) -> NodeProcess:
    return NodeProcess(netns=ns, env={"EDGE_MEDIA_DATAPLANE": plane, "EDGE_LOAD_PLUGINS": "chat"}).start()


async def simulcast_publisher(ns: Any, node: NodeProcess, room: str) -> PeerProcess:
    """The three-layer publisher, connected, on its own (clean) link."""
    publisher = await PeerProcess(ns, "publish-simulcast", node.url, room, node.token(room, "seller", "host")).start()
    await publisher.wait_for("connected")
    return publisher


async def run(
    profile: str,
    seconds: float,
    *,
    plane: str = "python",
    room: str = "qoe",
    clear_at: float | None = None,
    join_clean: bool = False,
) -> QoeResult:
    """Watch for ``seconds`` behind ``profile``; the profile's schedule starts when
    video does. ``clear_at``: the impairment ends then (a clean link after it)."""
    with Network() as net:
        node_ns, pub_ns, viewer_ns = net.host("node"), net.host("pub"), net.host("viewer")
        node = node_in(node_ns, plane)
        publisher = viewer = None
        try:
            publisher = await simulcast_publisher(pub_ns, node, room)
            spec = profile_spec(profile, clear_at)
            if not join_clean:
                viewer_ns.link.apply(spec.phases[0])
            viewer = await PeerProcess(
                viewer_ns, "view", node.url, room, node.token(room, "shopper", "viewer"), seconds=seconds
            ).start()
            await viewer.wait_for("connected", timeout=60)
            first = await viewer.wait_for("first_frame", timeout=60)
            schedule = asyncio.ensure_future(play(viewer_ns.link, spec))
            result = await viewer.wait_for("result", timeout=seconds + 60)
            schedule.cancel()
            metrics = node.metrics()
            node_log = node.log()
            dropped = (viewer_ns.link.down.dropped(), viewer_ns.link.up.dropped())
            await publisher.finish()
        finally:
            for peer in (viewer, publisher):
                if peer is not None:
                    await peer.kill()
            node.stop()
    times = result["video_frame_times"]
    offset = first["after_s"]  # the schedule started at the first frame
    shift = [round(t - offset, 4) for t in times]
    audio = [round(t - offset, 4) for t in result["audio_frame_times"]]
    size_log = [(round(t - offset, 4), w, h) for t, w, h in result["size_log"]]
    end = seconds - offset
    return QoeResult(
        profile=profile,
        plane=plane,
        seconds=end,
        first_frame_s=offset,
        video_frames=len(times),
        audio_frames=len(audio),
        video_times=shift,
        audio_times=audio,
        size_log=size_log,
        freezes=analysis.freezes(shift),
        stall_rate=analysis.stall_rate(shift, end),
        node_metrics=metrics,
        link_dropped=dropped,
        node_log=node_log,
    )
