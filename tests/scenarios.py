"""Media scenarios shared by tests that run them on different data planes."""

from __future__ import annotations

import asyncio

from .clients import WhepViewer, WhipPublisher
from .netimpair import UdpLoss
from .nodeproc import NodeProcess


async def lossy_viewer_is_served_nacks(node: NodeProcess, room: str) -> None:
    """One viewer's downlink drops 5 %: it is served retransmissions and keeps
    decoding, the clean viewer is neither retransmitted to nor held back, and
    every payload the lossy viewer got is exactly what the publisher sent."""
    pub = WhipPublisher(node.url, room, node.token(room, "seller", "host"))
    assert (await pub.start()).status_code == 201
    clean = WhepViewer(node.url, room, node.token(room, "clean", "viewer"))
    lossy = WhepViewer(node.url, room, node.token(room, "lossy", "viewer"))
    assert (await clean.start()).status_code == 201
    assert (await lossy.start()).status_code == 201
    await lossy.wait_frames("video", 5)

    before = node.metrics()
    with UdpLoss(lossy.nominated_local_port(), 5) as loss:
        start = lossy.frames["video"]
        await lossy.wait_frames("video", start + 90, timeout=30)  # ~3 s of video
        # aiortc's viewer NACKs some gaps only: keep the loss on until the node
        # has served at least one retransmission (or 20 s have passed).
        deadline = asyncio.get_running_loop().time() + 20
        while (
            node.metrics()["edge_nack_served_total"] <= before["edge_nack_served_total"]
            and asyncio.get_running_loop().time() < deadline
        ):
            await lossy.wait_frames("video", lossy.frames["video"] + 15, timeout=30)
        dropped = loss.dropped()
    after = node.metrics()

    assert dropped > 10, "the impairment dropped nothing"
    moved = {k: after[k] - before.get(k, 0.0) for k in after if k.startswith(("edge_nack", "edge_dropped")) and after[k] != before.get(k, 0.0)}
    assert after["edge_nack_served_total"] - before["edge_nack_served_total"] > 0, (dropped, moved)
    info = node.room(room)
    assert info is not None
    by_viewer = {c["viewer"]: c for c in info["consumers"] if c["kind"] == "video"}
    assert by_viewer["lossy"]["retransmitted"] > 0
    assert by_viewer["clean"]["retransmitted"] == 0
    assert clean.frames["video"] >= lossy.frames["video"] - 15
    # The viewer negotiated RTX (aiortc offers it): the repairs came on the RTX
    # stream, and unwrapped they are the packets the publisher sent, untouched.
    assert lossy.rtx_packets["video"] and not lossy.rtx_packets["audio"]
    foreign = [p for p in lossy.received_payloads["video"] if p not in pub.sent_payloads["video"]]
    assert foreign == []
    for v in (clean, lossy):
        await v.stop()
    await pub.stop()
