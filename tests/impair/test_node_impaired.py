"""A real node in one namespace, a viewer behind a `lossy` link in another.

The shape the weak-network QoE tests build on: node in namespace A, publisher
on a clean link in namespace B, viewer in namespace C with the profile on its
link (both directions), peers as processes inside their namespaces
(tests/impair/peer.py), the node's metrics read from the test process over the
bridge.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.impair import PROFILES, Network
from tests.impair.peerproc import PeerProcess
from tests.nodeproc import NodeProcess


@pytest.fixture
def network() -> Iterator[Network]:
    with Network() as net:
        yield net


async def test_viewer_behind_lossy_link_decodes_video_and_is_served_nacks(network: Network) -> None:
    node_ns, pub_ns, viewer_ns = network.host("node"), network.host("pub"), network.host("viewer")
    node = NodeProcess(netns=node_ns).start()
    publisher = viewer = None
    try:
        room = "impaired"
        publisher = await PeerProcess(pub_ns, "publish", node.url, room, node.token(room, "seller", "host")).start()
        assert (await publisher.wait_for("connected"))["status"] == 201

        viewer_ns.link.apply(PROFILES["lossy"])  # 10 % each way, from before the viewer joins
        viewer = await PeerProcess(
            viewer_ns, "view", node.url, room, node.token(room, "shopper", "viewer"), seconds=8
        ).start()
        await viewer.wait_for("connected")
        await viewer.wait_for("first_frame")
        result = await viewer.wait_for("result", timeout=30)
        published = await publisher.finish()
        metrics = node.metrics()
    finally:
        for peer in (viewer, publisher):
            if peer is not None:
                await peer.kill()
        node.stop()

    dropped_down = viewer_ns.link.down.dropped()
    assert dropped_down > 20, "the lossy link dropped (almost) nothing towards the viewer"
    assert viewer_ns.link.up.dropped() > 0, "the lossy link dropped nothing from the viewer"
    # aiortc only returns decoded frames from track.recv(): video keeps playing.
    assert result["frames"]["video"] >= 60, result["frames"]
    assert result["frame_sizes"] == [[320, 240]]
    assert published["video_frames_sent"] > result["frames"]["video"] / 2
    assert metrics["edge_nack_served_total"] > 0, "the node retransmitted nothing"
    assert metrics["edge_nack_received_total"] > 0
