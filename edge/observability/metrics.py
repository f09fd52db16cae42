"""Prometheus metrics of one node.

Low-rate events (sessions, PLIs, NACKs, drops) are prometheus counters. Per-packet
counts live as plain ints on Producer/Consumer objects (a prometheus ``inc()``
takes a lock: too dear per packet) and are summed at scrape time by
``MediaCollector``, together with what closed objects left behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ..media.node import MediaNode


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Counter(
            "edge_sessions", "WHIP/WHEP sessions created", ["kind"], registry=r
        )
        self.session_errors = Counter(
            "edge_session_errors", "Session requests refused", ["kind", "status"], registry=r
        )
        self.transports_reaped = Counter(
            "edge_transports_reaped", "Transports closed by the node", ["reason"], registry=r
        )
        self.pli_sent = Counter(
            "edge_pli_sent", "Keyframe requests (PLI) sent to publishers", registry=r
        )
        self.keyframe_requests = Counter(
            "edge_keyframe_requests",
            "Keyframe requests received (consumer joins, viewer PLI/FIR), before aggregation",
            ["source"],
            registry=r,
        )
        self.nack_received = Counter(
            "edge_nack_received", "Sequence numbers NACKed by viewers", registry=r
        )
        self.nack_served = Counter(
            "edge_nack_served", "NACKed packets retransmitted from a RetransmitBuffer", registry=r
        )
        self.nack_missed = Counter(
            "edge_nack_missed", "NACKed packets no longer in the RetransmitBuffer", registry=r
        )
        self.nack_stale = Counter(
            "edge_nack_stale",
            "NACKed packets not retransmitted because a newer keyframe made them useless",
            registry=r,
        )
        self.nack_throttled = Counter(
            "edge_nack_throttled",
            "NACKed packets not retransmitted because the consumer used its per-second budget",
            registry=r,
        )
        self.nack_sent = Counter(
            "edge_nack_sent", "Sequence numbers NACKed upstream to publishers", registry=r
        )
        self.nack_retries = Counter(
            "edge_nack_retries",
            "Sequence numbers NACKed upstream again because their repair had not arrived",
            registry=r,
        )
        self.twcc_reported = Counter(
            "edge_twcc_reported_packets",
            "Packets sent to viewers that their transport-cc feedback reported, by outcome",
            ["outcome"],
            registry=r,
        )
        self.dropped = Counter(
            "edge_dropped_packets", "Inbound packets dropped", ["reason"], registry=r
        )
        self.codec_instances = Counter(
            "edge_codec_instances",
            "Decoders/encoders instantiated in the node (must stay 0: the node never transcodes)",
            ["what"],
            registry=r,
        )
        self.layer_switches = Counter(
            "edge_layer_switches",
            "Simulcast layer switches of consumers (taken at a keyframe of the new layer)",
            ["direction"],
            registry=r,
        )
        self.red_recovered = Counter(
            "edge_red_recovered_packets",
            "Publisher audio packets lost upstream and rebuilt from the publisher's RED",
            registry=r,
        )
        self.temporal_switches = Counter(
            "edge_temporal_switches",
            "Changes of a consumer's VP8 temporal-layer cap (taken at the next frame start)",
            ["direction"],
            registry=r,
        )
        self.quality_changes = Counter(
            "edge_quality_changes",
            "Viewer quality level or layer changes, by the new level",
            ["level"],
            registry=r,
        )
        self.dataplane = Gauge(
            "edge_dataplane_info", "Active media data plane", ["plane"], registry=r
        )
        self.info = Gauge("edge_node_info", "Node identity", ["name", "region"], registry=r)

    def attach(self, node: "MediaNode") -> None:
        self.registry.register(MediaCollector(node))


class MediaCollector(Collector):
    def __init__(self, node: "MediaNode") -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        rooms = GaugeMetricFamily("edge_rooms", "Open rooms")
        rooms.add_metric([], len(node.rooms))
        yield rooms
        participants = GaugeMetricFamily("edge_participants", "Participants", labels=["role"])
        by_role: dict[str, int] = {}
        producers = consumers = 0
        for room in node.rooms.values():
            for p in room.participants.values():
                by_role[p.role] = by_role.get(p.role, 0) + 1
            producers += len(room.producers)
            consumers += sum(len(p.consumers) for p in room.producers.values())
        for role, n in sorted(by_role.items()):
            participants.add_metric([role], n)
        yield participants
        g = GaugeMetricFamily("edge_producers", "Producers (incoming tracks)")
        g.add_metric([], producers)
        yield g
        g = GaugeMetricFamily("edge_consumers", "Consumers (one per viewer per producer)")
        g.add_metric([], consumers)
        yield g
        yield from _quality(node)
        counters = getattr(node.dataplane, "counters", None)
        if counters is not None:  # the native plane
            c = CounterMetricFamily(
                "edge_native_ingress_packets",
                "Inbound SRTP/SRTCP packets the native plane unprotected or refused",
                labels=["event"],
            )
            for event, value in counters().items():
                c.add_metric([event], value)
            yield c
            g = GaugeMetricFamily(
                "edge_native_consumer_events",
                "Egress events of the live native consumers (protect errors, EAGAIN drops, ...)",
                labels=["event"],
            )
            for event, value in node.dataplane.consumer_counters().items():
                g.add_metric([event], value)
            yield g
        totals = node.packet_totals()
        for name, help_text, key in (
            ("edge_packets_in", "RTP packets received from publishers", "packets_in"),
            ("edge_bytes_in", "RTP bytes received from publishers", "bytes_in"),
            ("edge_packets_out", "RTP packets sent to viewers", "packets_out"),
            ("edge_bytes_out", "RTP bytes sent to viewers", "bytes_out"),
        ):
            c = CounterMetricFamily(name, help_text)
            c.add_metric([], totals[key])
            yield c
        mux = node.udp_mux
        if mux is not None:
            g = GaugeMetricFamily(
                "edge_udp_mux_port", "The node's one WebRTC UDP port, per ICE address", labels=["address"]
            )
            for endpoint in mux.endpoints:
                g.add_metric([endpoint.host], endpoint.port)
            yield g
            g = GaugeMetricFamily("edge_udp_mux_transports", "Transports (ICE ufrags) on the UDP mux")
            g.add_metric([], mux.transports)
            yield g
            g = GaugeMetricFamily(
                "edge_udp_mux_remote_addresses", "Remote addresses the UDP mux routes to a transport"
            )
            g.add_metric([], mux.remote_addresses)
            yield g
            # Its drops (unknown address/ufrag, bad STUN) are edge_dropped_packets{reason}.


def _quality(node: "MediaNode") -> Iterator[Metric]:
    """Viewers' quality of experience, aggregated (per-viewer detail is in the API)."""
    levels = {"good": 0, "fair": 0, "poor": 0}
    layers: dict[str, int] = {}
    estimates: list[int] = []
    stalled = watched = 0.0
    stalls = 0
    joins: list[int] = []
    lossy = 0
    for room in node.rooms.values():
        for viewer in room.viewers.values():
            q = viewer.qoe.current
            if not q:
                continue
            level = str(q.get("level"))
            levels[level] = levels.get(level, 0) + 1
            if q.get("layer") is not None:
                key = str(q.get("layer_index"))
                layers[key] = layers.get(key, 0) + 1
            if q.get("estimated_bitrate"):
                estimates.append(int(q["estimated_bitrate"]))  # type: ignore[call-overload]
            if float(q.get("fraction_lost") or 0) >= 0.02:  # type: ignore[arg-type]
                lossy += 1
            stalled += viewer.qoe.stalled_seconds
            watched += viewer.qoe.watched_seconds
            stalls += viewer.qoe.stalls
            if viewer.qoe.join_ms is not None:
                joins.append(viewer.qoe.join_ms)
    g = GaugeMetricFamily("edge_viewer_quality", "Viewers by quality level", labels=["level"])
    for level, n in sorted(levels.items()):
        g.add_metric([level], n)
    yield g
    g = GaugeMetricFamily(
        "edge_viewer_layer", "Simulcast viewers by layer index (0 = lowest)", labels=["layer"]
    )
    for layer, n in sorted(layers.items()):
        g.add_metric([layer], n)
    yield g
    g = GaugeMetricFamily("edge_viewers_lossy", "Viewers reporting 2% loss or more")
    g.add_metric([], lossy)
    yield g
    g = GaugeMetricFamily(
        "edge_viewer_estimated_bitrate_min", "Lowest viewer bandwidth estimate (bit/s)"
    )
    g.add_metric([], min(estimates) if estimates else 0)
    yield g
    g = GaugeMetricFamily(
        "edge_viewer_stall_rate", "Stalled over watched seconds, open viewer sessions"
    )
    g.add_metric([], stalled / watched if watched else 0.0)
    yield g
    g = GaugeMetricFamily("edge_viewer_stalls", "Stalls of open viewer sessions")
    g.add_metric([], stalls)
    yield g
    g = GaugeMetricFamily(
        "edge_viewer_join_ms_max", "Slowest join (WHEP request to first keyframe) of open viewers"
    )
    g.add_metric([], max(joins) if joins else 0)
    yield g
