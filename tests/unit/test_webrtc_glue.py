"""Regression tests for the aiortc/aioice private APIs edge/transport/webrtc.py relies on.

If an upgrade moves any of these, this file fails loudly before anything else does.
"""

import importlib.metadata

import pytest

import aioice.ice
from aiortc import RTCPeerConnection, RTCSessionDescription, rtcrtpreceiver, rtcrtpsender
from aiortc.rtcdtlstransport import SRTP_PROFILES, RTCDtlsTransport

from edge.transport.webrtc import EdgePeerConnection, WebRtcTransport, supported_codecs


def test_pinned_versions() -> None:
    assert importlib.metadata.version("aiortc") == "1.16.0"
    assert importlib.metadata.version("aioice") == "0.13.0"
    assert importlib.metadata.version("pylibsrtp") == "1.0.0"


def test_private_hook_points_exist() -> None:
    assert hasattr(RTCPeerConnection, "_RTCPeerConnection__createTransceiver")
    for name in ("_handle_rtp_data", "_handle_rtcp_data", "_setup_srtp"):
        assert callable(getattr(RTCDtlsTransport, name))
    assert callable(rtcrtpreceiver.get_decoder) and callable(rtcrtpsender.get_encoder)
    assert callable(aioice.ice.get_host_addresses)
    profile = SRTP_PROFILES[0]
    for attr in ("key_length", "salt_length", "libsrtp_profile", "openssl_profile", "get_key_and_salt"):
        assert hasattr(profile, attr), attr


async def test_transceivers_never_start() -> None:
    pc = EdgePeerConnection()
    transceiver = pc.addTransceiver("video", direction="sendonly")
    assert transceiver.sender.send.__name__ == "_never_start"
    assert transceiver.receiver.receive.__name__ == "_never_start"
    assert isinstance(transceiver.sender._ssrc, int)
    await pc.close()


async def test_answer_collects_negotiated_facts() -> None:
    offerer = RTCPeerConnection()
    offerer.addTransceiver("audio", direction="sendonly")
    offerer.addTransceiver("video", direction="sendonly")
    await offerer.setLocalDescription(await offerer.createOffer())
    transport = WebRtcTransport("t")
    answer = await transport.answer(offerer.localDescription.sdp, send=False)
    assert "a=recvonly" in answer
    kinds = [s.kind for s in transport.sections]
    assert kinds == ["audio", "video"]
    video = transport.sections[1]
    assert video.codecs[0].name == "vp8" and video.codecs[0].rtx_payload_type is not None
    assert {"nack", "nack pli", "goog-remb"} <= video.codecs[0].feedback
    assert video.remote_ssrcs and video.remote_rtx
    assert "urn:ietf:params:rtp-hdrext:sdes:mid" in video.extensions
    await transport.close()
    await offerer.close()


def test_supported_codecs_lists_what_is_forwarded() -> None:
    names = supported_codecs()
    assert "audio/opus" in names and "video/VP8" in names and "video/H264" in names
    assert not any(n.lower().endswith("/rtx") for n in names)


async def test_answers_ask_for_opus_in_band_fec() -> None:
    from edge.transport.webrtc import install_opus_fec

    install_opus_fec()  # what the node does at start-up (edge.app.build_context)
    offerer = RTCPeerConnection()
    offerer.addTransceiver("audio", direction="sendonly")
    await offerer.setLocalDescription(await offerer.createOffer())
    transport = WebRtcTransport("t")
    answer = await transport.answer(offerer.localDescription.sdp, send=False)
    fmtp = [line for line in answer.splitlines() if line.startswith("a=fmtp:") and "useinbandfec" in line]
    assert fmtp and "useinbandfec=1" in fmtp[0] and "minptime=10" in fmtp[0]
    await transport.close()
    await offerer.close()


def test_udp_mux_hook_points_exist() -> None:
    """edge/transport/udpmux.py: what it replaces, reads and calls in aioice/aiortc."""
    import inspect

    from aioice import stun
    from aioice.ice import Connection, StunProtocol

    assert hasattr(RTCPeerConnection, "_RTCPeerConnection__createDtlsTransport")
    params = list(inspect.signature(Connection.get_component_candidates).parameters)
    assert params == ["self", "component", "addresses", "timeout"]
    for name in ("request_received", "data_received", "gather_candidates"):
        assert callable(getattr(Connection, name)), name
    assert list(inspect.signature(StunProtocol.request).parameters) == [
        "self", "request", "addr", "integrity_key", "retransmissions",
    ]
    assert callable(stun.Transaction.response_received) and callable(stun.Message.check_message_integrity)
    connection = Connection(ice_controlling=False)
    for attr in ("_local_username", "_protocols", "_use_ipv4", "_use_ipv6", "_nominated"):
        assert hasattr(connection, attr), attr


async def test_udp_mux_gathers_the_shared_port_only() -> None:
    from edge.errors import ConfigError
    from edge.transport.udpmux import UFRAG_LENGTH, UdpMux

    mux = UdpMux(["127.0.0.1"], 0)
    await mux.start()
    try:
        assert mux.port > 0
        offerer = RTCPeerConnection()
        offerer.addTransceiver("audio", direction="sendonly")
        offerer.addTransceiver("video", direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        transports = [WebRtcTransport(f"t{i}", udp_mux=mux) for i in range(2)]
        answers = [await t.answer(offerer.localDescription.sdp, send=False) for t in transports]
        for answer in answers:
            candidates = {line for line in answer.splitlines() if line.startswith("a=candidate:")}
            assert len(candidates) == 1 and f" 127.0.0.1 {mux.port} typ host" in candidates.pop()
        ufrags = [a.split("a=ice-ufrag:", 1)[1].split()[0] for a in answers]
        assert len(set(ufrags)) == 2 and all(len(u) == UFRAG_LENGTH for u in ufrags)
        assert mux.transports == 2
        # the same socket for both: a native plane sees one fd's socket
        socks = [
            t._dtls().transport._connection._protocols[0].transport.get_extra_info("socket") for t in transports
        ]
        assert socks[0].fileno() == socks[1].fileno()
        for t in transports:
            await t.close()
        assert mux.transports == 0  # closing detaches the ufrag (and any address)
        await offerer.close()
        # a second mux on the same port is a clear error naming it
        with pytest.raises(ConfigError, match=f"cannot bind the WebRTC UDP port 127.0.0.1:{mux.port}"):
            UdpMux(["127.0.0.1"], mux.port).bind()
    finally:
        mux.close()


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
async def test_an_aiortc_peer_connects_through_the_udp_mux(address: str) -> None:
    """Full ICE + DTLS between a real aiortc client and a WebRtcTransport on the mux,
    over IPv4 and IPv6 loopback; both ends' nominated pair uses the mux's port."""
    import asyncio

    from edge.transport.udpmux import UdpMux
    from edge.transport.webrtc import install_ice_addresses

    from ..clients import client_config, selected_pair, wait_connected

    mux = UdpMux([address], 0)
    await mux.start()
    install_ice_addresses([address])  # the client gathers on the same family
    client = RTCPeerConnection(client_config())
    transport = WebRtcTransport("t", udp_mux=mux)
    try:
        client.addTransceiver("video", direction="recvonly")
        await client.setLocalDescription(await client.createOffer())
        answer = await transport.answer(client.localDescription.sdp, send=True)
        await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await wait_connected(client)
        await asyncio.wait_for(transport.connected.wait(), 10)
        local, remote = selected_pair(client)
        assert remote == (address, mux.port)
        assert transport.local_port == mux.port
        assert tuple(transport.remote_address) == local
        assert mux.remote_addresses == 1 and mux.transports == 1
        fd, route = transport.egress_route()
        assert tuple(route) == local
        sock = transport._dtls().transport._connection._nominated[1].protocol.transport.get_extra_info("socket")
        assert fd == sock.fileno() and sock.getsockname()[1] == mux.port
    finally:
        await client.close()
        await transport.close()
        install_ice_addresses(["127.0.0.1"])
        assert mux.transports == 0 and mux.remote_addresses == 0
        mux.close()
