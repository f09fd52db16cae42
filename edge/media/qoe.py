"""Quality of experience of one viewer, as the node sees it.

Measured once a tick (about a second) from what the node already has: the
viewer's bandwidth estimate (REMB), its receiver reports (loss, RTT), the
bit rate the node sends it, the simulcast layer it gets, and stalls. A *stall*
here is a tick in which a started video consumer was sent no packet at all
(the publisher's layer went quiet, or the consumer waits for a keyframe after
a restart): a node-side lower bound of what the viewer sees. Freezes caused
by loss on the viewer's own link are only visible at the viewer (its decoded
frame times); the test suite measures those there.

The summary level is ``good`` / ``fair`` / ``poor``; a change of level or of
layer is reported through the ``edge_quality_changed`` plugin hook.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .consumer import Consumer
    from .viewer_session import ViewerSession

POOR_LOSS = 0.10
FAIR_LOSS = 0.02
POOR_RTT = 0.400
FAIR_RTT = 0.200


class ViewerQoe:
    def __init__(self, viewer: "ViewerSession") -> None:
        self.viewer = viewer
        self.estimate: int | None = None  # bit/s: the node's TWCC estimate, else the viewer's REMB
        self.estimate_source = ""  # "twcc" / "remb" once there is one
        self.stalls = 0
        self.stalled_seconds = 0.0
        self.watched_seconds = 0.0
        self.join_ms: int | None = None
        self.level = ""
        self.current: dict[str, object] = {}
        self._last_tick: float | None = None
        self._stalled = False
        self._packets: dict[int, int] = {}

    def measure(self, consumers: list["Consumer"], now: float) -> None:
        elapsed = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        stalled = False
        watching = False
        for consumer in consumers:
            # A consumer attached since the last tick is measured from its attach time.
            span = now - max(consumer.attached_at, now - elapsed if elapsed else 0.0)
            if span > 0:
                consumer.bitrate = int((consumer.bytes - consumer.bytes_at_tick) * 8 / span)
            consumer.bytes_at_tick = consumer.bytes
            sent = consumer.packets - consumer.packets_at_tick
            asked = consumer.nacked_packets - consumer.nacks_at_tick
            consumer.nack_ratio = min(1.0, asked / sent) if sent > 0 else 0.0
            consumer.packets_at_tick = consumer.packets
            consumer.nacks_at_tick = consumer.nacked_packets
            if not consumer.producer.video or not consumer.forwarder.started:
                continue
            watching = True
            before = self._packets.get(id(consumer.slot))
            self._packets[id(consumer.slot)] = consumer.packets
            if before is not None and consumer.packets == before and elapsed > 0:
                stalled = True
        if watching and elapsed > 0:
            self.watched_seconds += elapsed
            if stalled:
                self.stalled_seconds += elapsed
                if not self._stalled:
                    self.stalls += 1
        self._stalled = stalled

    def started(self, consumer: "Consumer", now: float) -> None:
        """A video consumer of this viewer forwarded its first keyframe."""
        if self.join_ms is None:
            self.join_ms = int((now - self.viewer.created_at) * 1000)

    def assess(self, consumers: list["Consumer"], now: float) -> None:
        video = [c for c in consumers if c.producer.video]
        main = video[0] if video else None
        loss = max((c.loss for c in consumers), default=0.0)
        rtts = [c.rtt for c in consumers if c.rtt is not None]
        rtt = max(rtts) if rtts else None
        layer = main.layer if main is not None else None
        top = None
        if main is not None and main.producer.layers:
            live = [x for x in main.producer.layers if x.active(now)]
            top = live[-1] if live else None
        # The highest VP8 temporal layer forwarded (None: the layer has none).
        temporal = None
        if layer is not None and layer.temporal_layers > 1:
            temporal = min(int(main.forwarder.tid), layer.temporal_layers - 1)  # type: ignore[union-attr]
        if loss >= POOR_LOSS or self._stalled or (rtt is not None and rtt >= POOR_RTT):
            level = "poor"
        elif (
            loss >= FAIR_LOSS
            or (rtt is not None and rtt >= FAIR_RTT)
            or (layer is not None and top is not None and layer.index < top.index)
            or (temporal is not None and temporal < layer.temporal_layers - 1)  # type: ignore[union-attr]
        ):
            level = "fair"
        else:
            level = "good"
        quality: dict[str, object] = {
            "level": level,
            "layer": None if layer is None else layer.rid,
            "layer_index": None if layer is None else layer.index,
            "layers": None if main is None else len(main.producer.layers) or None,
            "temporal_layer": temporal,
            "estimated_bitrate": self.estimate,
            "estimate_source": self.estimate_source or None,
            "bitrate": sum(c.bitrate for c in consumers),
            "fraction_lost": round(loss, 4),
            "rtt_ms": None if rtt is None else round(rtt * 1000, 1),
            "stalls": self.stalls,
            "stalled_seconds": round(self.stalled_seconds, 3),
            "watched_seconds": round(self.watched_seconds, 3),
            "stall_rate": round(self.stalled_seconds / self.watched_seconds, 4)
            if self.watched_seconds
            else 0.0,
            "join_ms": self.join_ms,
            "layer_switches": sum(c.layer_switches for c in consumers),
            "playout_delay_ms": self.viewer.playout.min_ms,
            "audio_red_distance": self.viewer.red_policy.distance,
        }
        previous = self.current
        self.current = quality
        for consumer in consumers:
            consumer.quality = quality
        if (
            previous.get("level") != level
            or previous.get("layer") != quality["layer"]
            or previous.get("temporal_layer") != temporal
        ):
            self.level = level
            self.viewer.node.quality_changed(self.viewer, quality, previous)

    def describe(self) -> dict[str, object]:
        out = dict(self.current) if self.current else {"level": "unknown", "at": time.time()}
        # These change between ticks (on NACKs).
        out["playout_delay_ms"] = self.viewer.playout.min_ms
        out["audio_red_distance"] = self.viewer.red_policy.distance
        return out
