"""Rigs for comparing the native data plane with the Python one, packet for packet.

A ``TestTransport`` does WebRtcTransport's egress work without ICE/DTLS: a
pylibsrtp outbound Session configured like aiortc's ``_tx_srtp``
(SSRC_ANY_OUTBOUND, allow_repeat_tx, window 1024) for the Python plane, and
``srtp_keys()`` / ``egress_route()`` (the same key, a real non-blocking UDP
socket on 127.0.0.1 and the address it sends to) for the native plane. Every
consumer sends to a ``Sink`` of its own, a UDP socket bound on 127.0.0.1 that
the test drains after each call: loopback delivers a datagram before
``sendto``/``sendmmsg`` returns, so what a sink holds is exactly what was sent.
"""

from __future__ import annotations

import itertools
import socket
from dataclasses import dataclass
from typing import Any

from pylibsrtp import Policy, Session

from edge.media.consumer import Consumer, ConsumerSlot
from edge.media.participant import Participant
from edge.media.producer import Producer
from edge.transport.webrtc import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_PLAYOUT_DELAY,
    EXT_TRANSPORT_CC,
    EXT_MID,
    CodecInfo,
    MediaSection,
)

PROFILES_FOR_TESTS = [
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
]

KEY_LENGTHS = {
    Policy.SRTP_PROFILE_AES128_CM_SHA1_80: 30,
    Policy.SRTP_PROFILE_AEAD_AES_128_GCM: 28,
    Policy.SRTP_PROFILE_AEAD_AES_256_GCM: 44,
}


def tx_policy(key: bytes, profile: int, ssrc_type: int = Policy.SSRC_ANY_OUTBOUND) -> Policy:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=profile)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return policy


class Sink:
    """A UDP socket on 127.0.0.1 that collects what a consumer was sent."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()

    def drain(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


class TestTransport:
    """WebRtcTransport's egress surface, for both planes, with given keys."""

    __test__ = False  # not a pytest class

    def __init__(self, key: bytes, profile: int, remote: tuple[str, int]) -> None:
        self.key = key
        self.profile = profile
        self._tx = Session(tx_policy(key, profile))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self.remote = remote
        self.closed = False

    # the Python plane's path
    def protect_rtp(self, packet: bytes) -> bytes:
        return self._tx.protect(packet)

    def send_protected(self, data: bytes) -> None:
        if not self.closed:
            self.sock.sendto(data, self.remote)

    # the native plane's path
    def srtp_keys(self) -> dict[str, Any]:
        return {"profile": self.profile, "tx": self.key, "rx": self.key}

    def egress_route(self) -> tuple[int, tuple[str, int]]:
        return self.sock.fileno(), self.remote

    def receiver(self) -> Session:
        return Session(tx_policy(self.key, self.profile, Policy.SSRC_ANY_INBOUND))

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class StandInViewer:
    """What ConsumerSlot and Consumer read of their ViewerSession."""

    _n = itertools.count()

    def __init__(self) -> None:
        n = next(self._n)
        self.id = f"viewer-{n}"
        self.participant = Participant(f"viewer-{n}", "viewer")
        self.cname = f"cname{n}"


CODECS = {
    "video": ("vp8", 90000, None),
    "audio": ("opus", 48000, 2),
}


def section(
    kind: str,
    *,
    mid: str,
    payload_type: int,
    local_ssrc: int,
    remote_ssrcs: list[int] | None = None,
    mid_id: int | None = None,
    ast_id: int | None = None,
    level_id: int | None = None,
    pd_id: int | None = None,
    twcc_id: int | None = None,
    rtx_payload_type: int | None = None,
    rtx_ssrc: int | None = None,
) -> MediaSection:
    name, rate, channels = CODECS[kind]
    extensions: dict[str, int] = {}
    if mid_id:
        extensions[EXT_MID] = mid_id
    if ast_id:
        extensions[EXT_ABS_SEND_TIME] = ast_id
    if level_id:
        extensions[EXT_AUDIO_LEVEL] = level_id
    if pd_id:
        extensions[EXT_PLAYOUT_DELAY] = pd_id
    if twcc_id:
        extensions[EXT_TRANSPORT_CC] = twcc_id
    return MediaSection(
        mid=mid,
        kind=kind,
        index=0,
        codecs=[
            CodecInfo(
                name=name,
                payload_type=payload_type,
                clock_rate=rate,
                channels=channels,
                parameters={},
                rtx_payload_type=rtx_payload_type,
                feedback=frozenset({"nack", "nack pli"}),
            )
        ],
        extensions=extensions,
        local_ssrc=local_ssrc,
        remote_ssrcs=remote_ssrcs or [],
        local_rtx_ssrc=rtx_ssrc if rtx_payload_type is not None else None,
    )


def make_producer(kind: str, *, ssrc: int, payload_type: int, level_id: int | None, name: str) -> Producer:
    return Producer(
        producer_id=name,
        participant=Participant("host-" + name, "host"),
        room_name="native-test",
        section=section(kind, mid="0", payload_type=payload_type, local_ssrc=1, remote_ssrcs=[ssrc], level_id=level_id),
        ssrc=ssrc,
        source="camera" if kind == "video" else "microphone",
        send_pli=lambda producer: None,
        keyframe_interval=0.5,
    )


@dataclass
class SlotSpec:
    """One viewer slot: what the WHEP answer negotiated, and its SRTP keys."""

    kind: str
    ssrc: int
    mid: str
    payload_type: int
    mid_id: int | None
    ast_id: int | None
    level_id: int | None
    ring: int
    profile: int
    key: bytes
    pt_map: dict[int, int] | None  # None: what payload_type_map() computes
    pd_id: int | None = None  # the playout-delay extension's id, if negotiated
    twcc_id: int | None = None  # the transport-cc extension's id, if negotiated
    rtx_pt: int | None = None  # the RTX payload type of payload_type, if negotiated
    rtx_ssrc: int = 0  # the RTX SSRC (with rtx_pt)


def attach(producer: Producer, slot: ConsumerSlot, transport: Any, pt_map: dict[int, int] | None) -> Consumer:
    """What ViewerSession._attach does (minus the keyframe request)."""
    slot.forwarder.switch(producer, producer.codec.clock_rate)
    consumer = Consumer(producer, slot, transport)
    if pt_map is not None:
        consumer.pt_map = dict(pt_map)
    slot.consumer = consumer
    producer.consumers.append(consumer)
    return consumer


def detach(consumer: Consumer) -> None:
    """What ViewerSession.detach does."""
    consumer.closed = True
    if consumer in consumer.producer.consumers:
        consumer.producer.consumers.remove(consumer)
    if consumer.slot.consumer is consumer:
        consumer.slot.consumer = None


class Rig:
    """Producers, slots with consumers, transports and sinks for one plane."""

    def __init__(self, plane: Any, producers: list[Producer], specs: list[SlotSpec]) -> None:
        self.plane = plane
        self.producers = producers
        self.sinks = [Sink() for _ in specs]
        self.transports = [TestTransport(s.key, s.profile, sink.address) for s, sink in zip(specs, self.sinks)]
        self.slots = []
        self.specs = specs
        for spec in specs:
            sec = section(
                spec.kind,
                mid=spec.mid,
                payload_type=spec.payload_type,
                local_ssrc=spec.ssrc,
                mid_id=spec.mid_id,
                ast_id=spec.ast_id,
                level_id=spec.level_id,
                pd_id=spec.pd_id,
                twcc_id=spec.twcc_id,
                rtx_payload_type=spec.rtx_pt,
                rtx_ssrc=spec.rtx_ssrc,
            )
            slot = ConsumerSlot(StandInViewer(), sec, spec.ring)  # type: ignore[arg-type]
            slot.rtx_seq = spec.rtx_ssrc & 0xFFFF  # drawn at random in the node: fixed for comparisons
            self.slots.append(slot)

    def attach(self, slot_index: int, producer_index: int) -> Consumer:
        slot = self.slots[slot_index]
        if slot.consumer is not None:
            detach(slot.consumer)
        spec = self.specs[slot_index]
        return attach(self.producers[producer_index], slot, self.transports[slot_index], spec.pt_map)

    def drain(self) -> list[list[bytes]]:
        return [sink.drain() for sink in self.sinks]

    def close(self) -> None:
        for t in self.transports:
            if not t.closed:
                t.close()
        for s in self.sinks:
            s.close()
