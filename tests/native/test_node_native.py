"""A real `edge serve` with EDGE_MEDIA_DATAPLANE=native, real aiortc peers.

The publisher encodes VP8 + Opus, the viewers decode; every payload a viewer
gets is one the publisher sent, byte for byte, after the native plane
unprotected it (SrtpReceiver, in place of aiortc's pylibsrtp session), rewrote
and SRTP-protected it with its own contexts (and the node's SRs, protected by
aiortc's session, still reach the viewer). With 5 % loss on a viewer's
downlink, its NACKs are served from the native retransmit ring.
"""

from __future__ import annotations

import asyncio
from typing import Iterator

import httpx
import pytest

from ..clients import WhepViewer, WhipPublisher, selected_pair
from ..nodeproc import NodeProcess
from ..scenarios import lossy_viewer_is_served_nacks


@pytest.fixture(scope="module")
def native_node() -> Iterator[NodeProcess]:
    proc = NodeProcess(env={"EDGE_MEDIA_DATAPLANE": "native"}).start()
    yield proc
    proc.stop()


def test_healthz_reports_the_native_plane(native_node: NodeProcess) -> None:
    health = httpx.get(native_node.url + "/healthz", timeout=5).json()
    assert health["dataplane"] == "native", (
        "the node fell back to the Python plane: " + native_node.log()
    )
    assert '"dataplane_fallback"' not in native_node.log()
    metrics = native_node.metrics()
    assert metrics['edge_dataplane_info{plane="native"}'] == 1.0


async def test_viewers_decode_byte_identical_payloads(native_node: NodeProcess) -> None:
    node = native_node
    room = "native-fwd"
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    viewers = [WhepViewer(node.url, room, node.token(room, f"v{i}", "viewer")) for i in range(3)]
    for r in await asyncio.gather(*(v.start() for v in viewers)):
        assert r.status_code == 201, r.text
    await asyncio.gather(*(v.wait_frames("video", 40) for v in viewers))
    await asyncio.gather(*(v.wait_frames("audio", 40) for v in viewers))
    # The node's SRs (aiortc's SRTCP context) coexist with the native SRTP contexts.
    await asyncio.gather(*(v.wait_sender_reports(2) for v in viewers))
    # The native plane sends on the socket of each viewer's nominated pair: the node's
    # one UDP port (the default), or one per viewer with EDGE_MEDIA_UDP_MUX=false.
    node_ends = {selected_pair(v.pc)[1] for v in viewers}
    udp = httpx.get(node.url + "/v1/admin/runtime", headers=node.admin_headers(), timeout=5).json()["udp"]
    if udp["mode"] == "mux":
        assert node_ends == {("127.0.0.1", node.udp_port)}, node_ends
    else:
        assert len(node_ends) == len(viewers) and ("127.0.0.1", node.udp_port) not in node_ends, node_ends

    for v in viewers:
        assert v.frame_sizes == {(320, 240)}
        for kind in ("video", "audio"):
            got = v.received_payloads[kind]
            assert len(got) > 20, kind
            foreign = [p for p in got if p not in pub.sent_payloads[kind]]
            assert foreign == [], f"{kind}: {len(foreign)} of {len(got)} payloads were altered"

    info = node.room(room)
    assert info is not None
    # The publisher's packets were parsed by the native RtpParser (one C call each).
    [whip] = [s for s in info["sessions"] if s["kind"] == "whip"]
    assert whip["ingress_parser"] == "native"
    consumers = info["consumers"]
    assert len(consumers) == 6
    # Consumer.packets/bytes are kept by the native plane as by the Python one.
    assert all(c["packets"] > 0 and c["bytes"] > c["packets"] * 12 for c in consumers)
    assert all(not c["waiting_for_keyframe"] for c in consumers)
    metrics = node.metrics()
    assert metrics["edge_packets_out_total"] > 0
    # Ingress went through the native SrtpReceivers, not aiortc's pylibsrtp session:
    # the publisher's SRTP and every peer's SRTCP, none refused.
    ingress = {
        event: metrics.get(f'edge_native_ingress_packets_total{{event="{event}"}}', 0.0)
        for event in ("srtp_unprotected", "srtp_unprotect_failed", "srtcp_unprotected", "srtcp_unprotect_failed")
    }
    assert ingress["srtp_unprotected"] >= metrics["edge_packets_in_total"] > 0, ingress
    assert ingress["srtcp_unprotected"] > 0, ingress
    assert ingress["srtp_unprotect_failed"] == ingress["srtcp_unprotect_failed"] == 0, ingress
    assert metrics.get('edge_dropped_packets_total{reason="srtp"}', 0.0) == 0
    assert not any(k.startswith("edge_codec_instances_total") and v > 0 for k, v in metrics.items())

    await asyncio.gather(*(v.stop() for v in viewers))
    await pub.stop()


async def test_nacks_are_served_from_the_native_ring(native_node: NodeProcess) -> None:
    await lossy_viewer_is_served_nacks(native_node, "native-lossy")
