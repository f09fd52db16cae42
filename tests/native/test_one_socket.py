"""With the node's one UDP port, a native fan-out is one sendmmsg for all its viewers.

Every viewer's ``egress_route()`` then gives the same socket (the UdpMux's); each
NativeConsumer holds its own dup() of it, and ``Fanout`` batches by socket
identity, not by fd number. ``Fanout.send_calls`` counts the sendmmsg calls.
"""

from __future__ import annotations

import socket
import struct

import pytest

from edge.media.rtp import RtpHeader, serialize_extensions

from .rig import KEY_LENGTHS, PROFILES_FOR_TESTS, Rig, SlotSpec, make_producer

VIEWERS = 12
PACKETS = 20


@pytest.mark.parametrize("shared", [True, False], ids=["one-socket", "socket-per-viewer"])
def test_sendmmsg_calls_per_fanout(shared: bool) -> None:
    from edge.media.native_plane import NativeDataPlane

    producer = make_producer("audio", ssrc=4321, payload_type=111, level_id=1, name="mic")
    profile = PROFILES_FOR_TESTS[1]
    specs = [
        SlotSpec("audio", 900 + i, "0", 111, 3, None, 1, 64, profile, bytes([i]) * KEY_LENGTHS[profile], None)
        for i in range(VIEWERS)
    ]
    plane = NativeDataPlane()
    rig = Rig(plane, [producer], specs)
    mux = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    mux.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    mux.bind(("127.0.0.1", 0))
    mux.setblocking(False)
    try:
        if shared:
            for transport in rig.transports:  # what every transport on the UdpMux returns
                transport.sock.close()
                transport.sock = mux
        for i in range(VIEWERS):
            rig.attach(i, 0)
        for n in range(PACKETS):
            data = struct.pack("!BBHII", 0x90, 111, n, n * 960, 4321)
            data += serialize_extensions({1: b"\x10"}) + bytes([n]) * 100
            assert plane.forward(producer, data, RtpHeader.parse(data), False, 1.7e9 + n * 0.02) == VIEWERS
        fanout = plane.fanout(producer)
        assert fanout.send_calls == (PACKETS if shared else PACKETS * VIEWERS)
        # Each viewer got every packet, from the socket its route named, decrypting with its key.
        got = rig.drain()
        for k, transport in enumerate(rig.transports):
            assert len(got[k]) == PACKETS
            viewer = transport.receiver()
            assert [RtpHeader.parse(viewer.unprotect(d)).ssrc for d in got[k]] == [900 + k] * PACKETS
    finally:
        rig.close()
        mux.close()
