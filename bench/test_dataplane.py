"""Micro-benchmarks of the real PythonDataPlane (edge/media/dataplane.py).

Run from the repo root (bench/ is not part of the CI test run)::

    pytest bench/test_dataplane.py --benchmark-only
    pytest bench/test_dataplane.py --benchmark-only --bench-sink=thread   # see below

What is measured
----------------
``PythonDataPlane.forward(producer, data, header, keyframe, now)`` for one
ingress VP8 packet of one video producer fanned out to 1, 10 and 100 consumers,
and ``PythonDataPlane.retransmit(consumer, seqs)`` for a 16-sequence NACK.
``test_floor_protect_sendto`` is a reference: the transport's protect + sendto
alone, so that forward() minus it is the data plane's own Python work.

* The ingress packet is what a Chrome publisher sends: 1200 bytes of RTP, PT 96
  (VP8), one-byte header extensions sdes:mid (id 4) and abs-send-time (id 2),
  a VP8 payload descriptor. Sequence number and timestamp advance on every
  call (8 packets per frame), as they do live; SRTP needs it anyway.
* Producer, ConsumerSlot and Consumer are the real classes, built from
  MediaSection / CodecInfo like the ones WebRtcTransport negotiates. The
  ViewerSession that owns a slot is a stand-in (the data plane never reads it).
* Instead of a WebRtcTransport with a full ICE/DTLS handshake each consumer
  gets a ``BenchTransport`` that does the same egress work: ``protect_rtp``
  with its own pylibsrtp Session (AEAD_AES_128_GCM, SSRC_ANY_OUTBOUND,
  allow_repeat_tx, window 1024: aiortc's ``_tx_srtp`` policy) and
  ``send_protected`` with ``sendto`` on its own non-blocking UDP socket (one
  socket per viewer, as aioice has) to a sink socket on 127.0.0.1. The only
  difference: WebRtcTransport goes through asyncio's DatagramTransport.sendto,
  which runs a little Python before the same ``sock.sendto`` (the research
  probes measured 1.7-2.4 µs for it against 1.6-2.8 µs for a bare sendto).
* The sink is drained continuously so the kernel receive buffer never fills
  (a full buffer makes loopback ``sendto`` cheaper: the packet is dropped
  instead of queued). By default a thread in a helper process drains it: a
  draining thread inside the benchmark process has to take the GIL for every
  datagram and adds several µs of GIL hand-off to each packet the data plane
  sends, which a node whose viewers are other machines never pays, and it
  falls behind (on the 2-core test machine it lost 0.1-35 % of the datagrams
  to a full receive buffer, against 0-0.06 % for the helper process).
  ``--bench-sink=thread`` drains in-process anyway. After each benchmark the
  sink's count is compared with what was sent (``extra_info["sink_lost"]``).

Figures: pytest-benchmark's table gives the time per ``forward`` call (one
ingress packet); ``extra_info`` has the µs per egress packet (call time /
consumers, from the median and the min) and the egress packets per
core-second that implies. ``harness_us_per_call`` is the cost of the
benchmark's own per-call bookkeeping (advancing seq/ts, reading the clock),
included in the call time. Use ``--benchmark-json=FILE`` to keep everything.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import subprocess
import sys
import threading
import time
import timeit
from typing import Any, Iterator

import pytest
from pylibsrtp import Policy, Session

from edge.media.consumer import Consumer, ConsumerSlot
from edge.media.dataplane import PythonDataPlane
from edge.media.participant import Participant
from edge.media.producer import Producer
from edge.media.retransmit import buffer_size
from edge.media.rtp import RtpHeader, abs_send_time, build_packet, serialize_extensions
from edge.transport.webrtc import (
    EXT_ABS_SEND_TIME,
    EXT_MID,
    EXT_TRANSPORT_CC,
    CodecInfo,
    MediaSection,
)

PACKET_SIZE = 1200  # ingress RTP packet, header and extensions included
PACKETS_PER_FRAME = 8
FRAME_TICKS = 3000  # 90 kHz / 30 fps
RETRANSMIT_BUFFER = buffer_size(1024)  # edge/config.py media.retransmit_buffer_packets
NACK_SIZE = 16

# Chrome's ids in a WHIP/WHEP offer (the answer echoes them).
CHROME_EXT_IDS = {EXT_ABS_SEND_TIME: 2, EXT_TRANSPORT_CC: 3, EXT_MID: 4}
VIDEO_MID = "1"  # Chrome offers audio first: mid 0 audio, mid 1 video
VP8_PT, VP8_RTX_PT = 96, 97
VIDEO_FEEDBACK = frozenset({"goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"})


# --- the UDP sink the consumers send to ----------------------------------------------

_SINK_CHILD = r"""
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("127.0.0.1", 0))
count = [0]
def drain():
    buf = bytearray(2048)
    recv = s.recv_into
    n = 0
    while True:
        recv(buf)
        n += 1
        count[0] = n
threading.Thread(target=drain, daemon=True).start()
print(s.getsockname()[1], flush=True)
for line in sys.stdin:
    print(count[0], flush=True)
"""


class UdpSink:
    """A loopback UDP socket that a thread drains, counting the datagrams."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        if mode == "process":
            self._child = subprocess.Popen(
                [sys.executable, "-c", _SINK_CHILD],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self._child.stdout is not None
            self.address = ("127.0.0.1", int(self._child.stdout.readline()))
        else:
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._sock.bind(("127.0.0.1", 0))
            self.address = self._sock.getsockname()
            self._count = 0
            threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        buf = bytearray(2048)
        recv = self._sock.recv_into
        try:
            while True:
                recv(buf)
                self._count += 1
        except OSError:  # closed
            return

    def received(self) -> int:
        if self.mode == "process":
            assert self._child.stdin is not None and self._child.stdout is not None
            self._child.stdin.write("count\n")
            self._child.stdin.flush()
            return int(self._child.stdout.readline())
        return self._count

    def settled_count(self, timeout: float = 3.0) -> int:
        """The count once the drain has caught up (it stops changing)."""
        last = self.received()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.received()
            if now == last:
                return now
            last = now
        return last

    def close(self) -> None:
        if self.mode == "process":
            assert self._child.stdin is not None
            self._child.stdin.close()
            self._child.wait(5)
        else:
            self._sock.close()


# --- a transport doing WebRtcTransport's egress work ------------------------------------


def _tx_policy(key: bytes, ssrc_type: int) -> Policy:
    policy = Policy(key=key, ssrc_type=ssrc_type, srtp_profile=Policy.SRTP_PROFILE_AEAD_AES_128_GCM)
    policy.allow_repeat_tx = True
    policy.window_size = 1024
    return policy


class BenchTransport:
    """WebRtcTransport.protect_rtp / send_protected without ICE and DTLS.

    Same calls on the same kinds of objects: a pylibsrtp outbound Session
    configured like aiortc's ``_tx_srtp`` and a ``sendto`` bound method with a
    remote address, behind the same ``closed`` check.
    """

    def __init__(self, remote: tuple[str, int]) -> None:
        self.key = os.urandom(16 + 12)  # AES-128 key + 12-byte GCM salt
        self._tx = Session(_tx_policy(self.key, Policy.SSRC_ANY_OUTBOUND))
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind(("127.0.0.1", 0))
        self._sendto = self._sock.sendto
        self._remote_addr = remote
        self.closed = False
        self.eagain = 0  # asyncio would have queued these; here they are dropped

    def protect_rtp(self, packet: bytes) -> bytes:
        return self._tx.protect(packet)

    def send_protected(self, data: bytes) -> None:
        if self._sendto is not None and not self.closed:
            try:
                self._sendto(data, self._remote_addr)
            except BlockingIOError:
                self.eagain += 1

    def receiver(self) -> Session:
        """The viewer's side of this SRTP context (to check what was sent)."""
        return Session(_tx_policy(self.key, Policy.SSRC_ANY_INBOUND))

    def close(self) -> None:
        self.closed = True
        self._sock.close()


# --- real Producer / ConsumerSlot / Consumer ---------------------------------------------


class StandInViewer:
    """What ConsumerSlot and Consumer read of their ViewerSession (only describe())."""

    def __init__(self, n: int) -> None:
        self.id = f"bench-viewer-{n}"
        self.participant = Participant(f"viewer-{n}", "viewer")
        self.cname = f"bench{n:08x}"


def vp8_section(local_ssrc: int, remote_ssrcs: list[int]) -> MediaSection:
    return MediaSection(
        mid=VIDEO_MID,
        kind="video",
        index=1,
        codecs=[
            CodecInfo(
                name="vp8",
                payload_type=VP8_PT,
                clock_rate=90000,
                channels=None,
                parameters={},
                rtx_payload_type=VP8_RTX_PT,
                feedback=VIDEO_FEEDBACK,
            )
        ],
        extensions=dict(CHROME_EXT_IDS),
        local_ssrc=local_ssrc,
        remote_ssrcs=remote_ssrcs,
    )


def make_producer() -> Producer:
    ssrc = random.getrandbits(32)
    return Producer(
        producer_id="bench-producer",
        participant=Participant("host", "host"),
        room_name="bench",
        section=vp8_section(random.getrandbits(32), [ssrc]),
        ssrc=ssrc,
        source="camera",
        send_pli=lambda producer: None,
        keyframe_interval=0.5,
    )


def attach_consumer(producer: Producer, n: int, transport: BenchTransport) -> Consumer:
    """What ViewerSession._attach does, minus the keyframe request."""
    slot = ConsumerSlot(StandInViewer(n), vp8_section(random.getrandbits(32), []), RETRANSMIT_BUFFER)
    slot.forwarder.switch(producer, producer.codec.clock_rate)
    consumer = Consumer(producer, slot, transport)  # type: ignore[arg-type]
    slot.consumer = consumer
    producer.consumers.append(consumer)
    return consumer


def chrome_vp8_packet(ssrc: int, seq: int, ts: int, keyframe: bool) -> bytes:
    extensions = serialize_extensions(
        {CHROME_EXT_IDS[EXT_MID]: VIDEO_MID.encode(), CHROME_EXT_IDS[EXT_ABS_SEND_TIME]: abs_send_time(time.time())}
    )
    # VP8 payload descriptor as libwebrtc writes it: X, S, PID 0; I with a 15-bit
    # picture id; then the VP8 payload header (P bit clear on a keyframe).
    descriptor = bytes((0x90, 0x80, 0x80 | 0x12, 0x34))
    vp8_header = bytes((0x10 if keyframe else 0x11, 0x02, 0x00))
    body_size = PACKET_SIZE - 12 - len(extensions) - len(descriptor) - len(vp8_header)
    payload = descriptor + vp8_header + random.randbytes(body_size)
    packet = build_packet(
        marker=False,
        payload_type=VP8_PT,
        sequence_number=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        extension_block=extensions,
        payload=payload,
    )
    assert len(packet) == PACKET_SIZE
    return packet


class Rig:
    """One video producer with ``consumers`` viewers, forwarding started."""

    def __init__(self, consumers: int, sink: UdpSink) -> None:
        self.plane = PythonDataPlane()
        self.producer = make_producer()
        self.transports = [BenchTransport(sink.address) for _ in range(consumers)]
        self.consumers = [attach_consumer(self.producer, n, t) for n, t in enumerate(self.transports)]
        self.seq = itertools.count(random.getrandbits(16))
        self.ts0 = random.getrandbits(32)
        ssrc = self.producer.ssrc
        assert ssrc is not None
        # The first packet is a keyframe: it starts every consumer's Forwarder.
        first = next(self.seq)
        keyframe = chrome_vp8_packet(ssrc, first, self.ts0, keyframe=True)
        assert self.plane.forward(self.producer, keyframe, RtpHeader.parse(keyframe), True, time.time()) == consumers
        self._check_output(keyframe)
        # Later packets reuse one buffer; the header advances seq/ts per call.
        self.data = chrome_vp8_packet(ssrc, first + 1, self.ts0, keyframe=False)
        self.header = RtpHeader.parse(self.data)

    def _check_output(self, ingress: bytes) -> None:
        """What the first consumer got decrypts to the rewritten ingress packet."""
        consumer = self.consumers[0]
        seq = consumer.forwarder.last_seq
        assert seq is not None
        protected = consumer.retransmit.get(seq)
        assert protected is not None
        clear = self.transports[0].receiver().unprotect(protected)
        out, into = RtpHeader.parse(clear), RtpHeader.parse(ingress)
        assert out.ssrc == consumer.ssrc and out.payload_type == VP8_PT
        assert out.extensions[CHROME_EXT_IDS[EXT_MID]] == VIDEO_MID.encode()
        assert len(out.extensions[CHROME_EXT_IDS[EXT_ABS_SEND_TIME]]) == 3
        assert out.payload(clear) == into.payload(ingress)

    def step_function(self, plane: Any = None) -> Any:
        """A no-argument callable: advance seq/ts, forward one ingress packet."""
        forward = (plane or self.plane).forward
        producer, data, header, ts0 = self.producer, self.data, self.header, self.ts0
        # The harness measurement must not move the real stream's sequence numbers.
        counter = self.seq if plane is None else itertools.count()
        clock = time.time

        def step() -> int:
            i = next(counter)
            header.sequence_number = i & 0xFFFF
            header.timestamp = (ts0 + (i // PACKETS_PER_FRAME) * FRAME_TICKS) & 0xFFFFFFFF
            return forward(producer, data, header, False, clock())

        return step

    def harness_us_per_call(self) -> float:
        """Cost of step() itself, around a data plane that does nothing."""

        class NullPlane:
            @staticmethod
            def forward(*_args: object) -> int:
                return 0

        step = self.step_function(NullPlane())
        runs = timeit.repeat(step, number=100_000, repeat=5)
        return min(runs) / 100_000 * 1e6

    def sent(self) -> int:
        return sum(c.packets for c in self.consumers)

    def eagain(self) -> int:
        return sum(t.eagain for t in self.transports)

    def close(self) -> None:
        for t in self.transports:
            t.close()


# --- fixtures and benchmarks --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sink(request: pytest.FixtureRequest) -> Iterator[UdpSink]:
    s = UdpSink(request.config.getoption("--bench-sink"))
    yield s
    s.close()


def _summary(benchmark: Any) -> dict[str, float] | None:
    stats = getattr(benchmark, "stats", None)
    if not stats:  # --benchmark-disable: the function ran once, unmeasured
        return None
    s = stats.stats
    return {"min": s.min, "median": s.median, "mean": s.mean}


@pytest.mark.parametrize("consumers", [1, 10, 100])
@pytest.mark.benchmark(group="dataplane-forward", warmup=True, max_time=2.0)
def test_forward(benchmark: Any, sink: UdpSink, consumers: int) -> None:
    rig = Rig(consumers, sink)
    try:
        harness = rig.harness_us_per_call()
        step = rig.step_function()
        before_sent, before_sink = rig.sent(), sink.settled_count()
        result = benchmark(step)
        assert result == consumers
        sent = rig.sent() - before_sent
        received = sink.settled_count() - before_sink
        info = benchmark.extra_info
        info.update(
            consumers=consumers,
            packet_bytes=PACKET_SIZE,
            srtp_profile="AEAD_AES_128_GCM",
            sink=sink.mode,
            harness_us_per_call=round(harness, 3),
            egress_sent=sent,
            eagain=rig.eagain(),
            sink_lost=sent - rig.eagain() - received,
        )
        summary = _summary(benchmark)
        if summary is not None:
            for name, seconds in summary.items():
                info[f"us_per_egress_packet_{name}"] = round(seconds * 1e6 / consumers, 3)
            info["egress_packets_per_core_second"] = round(consumers / summary["median"])
            info["egress_packets_per_core_second_best"] = round(consumers / summary["min"])
    finally:
        rig.close()


@pytest.mark.benchmark(group="egress-floor", warmup=True, max_time=2.0)
def test_floor_protect_sendto(benchmark: Any, sink: UdpSink) -> None:
    """Reference, not the data plane: only protect_rtp + send_protected per egress
    packet (10 consumers, one pre-built 1200-byte packet re-protected each time,
    which allow_repeat_tx permits). forward() minus this is the data plane's own
    Python work per packet (rewrite, extension block, Forwarder, buffer, counters)."""
    rig = Rig(10, sink)
    try:
        consumer = rig.consumers[0]
        last = consumer.forwarder.last_seq
        assert last is not None
        packet = consumer.retransmit.get(last)
        assert packet is not None
        clear = rig.transports[0].receiver().unprotect(packet)
        pairs = [(t.protect_rtp, t.send_protected) for t in rig.transports]

        def egress() -> None:
            for protect, send in pairs:
                send(protect(clear))

        benchmark(egress)
        info = benchmark.extra_info
        info.update(consumers=len(pairs), sink=sink.mode, eagain=rig.eagain())
        summary = _summary(benchmark)
        if summary is not None:
            for name, seconds in summary.items():
                info[f"us_per_egress_packet_{name}"] = round(seconds * 1e6 / len(pairs), 3)
    finally:
        rig.close()


@pytest.mark.benchmark(group="dataplane-retransmit", warmup=True, max_time=2.0)
def test_retransmit_nack16(benchmark: Any, sink: UdpSink) -> None:
    rig = Rig(1, sink)
    try:
        step = rig.step_function()
        for _ in range(RETRANSMIT_BUFFER):  # fill the consumer's RetransmitBuffer
            step()
        consumer = rig.consumers[0]
        last = consumer.forwarder.last_seq
        assert last is not None
        # 16 lost packets a few frames back, as one NACK (PID + BLP) reports them.
        seqs = [(last - 100 + i) & 0xFFFF for i in range(NACK_SIZE)]
        assert benchmark(rig.plane.retransmit, consumer, seqs) == NACK_SIZE
        info = benchmark.extra_info
        info.update(nack_seqs=NACK_SIZE, sink=sink.mode, eagain=rig.eagain())
        summary = _summary(benchmark)
        if summary is not None:
            info["us_per_nack_median"] = round(summary["median"] * 1e6, 3)
            info["us_per_retransmitted_packet_median"] = round(summary["median"] * 1e6 / NACK_SIZE, 3)
            info["us_per_retransmitted_packet_min"] = round(summary["min"] * 1e6 / NACK_SIZE, 3)
    finally:
        rig.close()
