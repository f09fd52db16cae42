"""Python vs native data plane, side by side in one run (pytest-benchmark).

Run from the repo root::

    pytest bench/test_native_dataplane.py --benchmark-only
    pytest bench/test_native_dataplane.py --benchmark-only --benchmark-group-by=group

Same rig as bench/test_dataplane.py (imported from it): one VP8 video producer,
Chrome-like 1200-byte ingress packets, real Producer/ConsumerSlot/Consumer
objects, AEAD_AES_128_GCM, one non-blocking UDP socket per viewer sending to a
loopback sink drained by a helper process. Each group times the same
``forward()`` of one ingress packet to 1, 10 and 100 consumers with:

* ``python``: PythonDataPlane (pylibsrtp protect + sendto per consumer);
* ``native``: NativeDataPlane (edge.media._native: rewrite, protect on
  libcrypto, ring, sendmmsg per socket, GIL released), same sockets;
* ``native-shared``: NativeDataPlane with all viewers on one socket (the
  one-UDP-port node of ARCHITECTURE.md): one sendmmsg per 64 packets.

``extra_info`` has µs per egress packet (median and min of the call time /
consumers) and the egress packets per core-second that implies, and the same
from this process's CPU time (``cpu_us_per_egress_packet``,
``egress_packets_per_cpu_second``: user + system time, so the kernel's send
work is in it; on a busy machine wall time also counts time the process waited
for a core, CPU time does not). Loopback delivers in the sender's context, so
the receive side's kernel work is counted too; the sink process draining the
other end runs on the other core. ``sink_lost`` counts datagrams the sink did
not get (it can fall behind the native plane). ``forward x100, no send`` is the
planes' own work without the syscalls (transports closed). The NACK group
re-sends 16 packets from the ring.
"""

from __future__ import annotations

import itertools
import random
import socket
import time
from typing import Any, Iterator

import pytest
from test_dataplane import (  # bench/ is on sys.path under pytest (rootdir-relative import)
    NACK_SIZE,
    PACKET_SIZE,
    RETRANSMIT_BUFFER,
    BenchTransport,
    Rig,
    UdpSink,
    _summary,
    attach_consumer,
    chrome_vp8_packet,
    make_producer,
)

from edge.media.dataplane import PythonDataPlane
from edge.media.rtp import RtpHeader

try:
    from edge.media.native_plane import NativeDataPlane
except ImportError as exc:  # the bench must say so, not skip
    NativeDataPlane = None  # type: ignore[assignment,misc]
    NATIVE_ERROR = str(exc)
else:
    NATIVE_ERROR = ""

GCM128 = 7  # libsrtp srtp_profile_aead_aes_128_gcm (what BenchTransport keys)


class NativeBenchTransport(BenchTransport):
    """BenchTransport plus what the native plane reads of a WebRtcTransport."""

    def __init__(self, remote: tuple[str, int], shared: socket.socket | None = None) -> None:
        super().__init__(remote)
        if shared is not None:
            self._sock.close()
            self._sock = shared
            self._sendto = shared.sendto

    def srtp_keys(self) -> dict[str, Any]:
        return {"profile": GCM128, "tx": self.key, "rx": self.key}

    def egress_route(self) -> tuple[int, tuple[str, int]]:
        return self._sock.fileno(), self._remote_addr

    def close(self) -> None:
        self.closed = True
        if self._sock.fileno() >= 0:
            self._sock.close()


class PlaneRig(Rig):
    """bench/test_dataplane.Rig with a choice of plane and socket layout."""

    def __init__(self, consumers: int, sink: UdpSink, plane: str) -> None:
        if plane != "python" and NativeDataPlane is None:
            pytest.fail(f"the native data plane is not built: {NATIVE_ERROR}", pytrace=False)
        self.plane_name = plane
        self.plane = PythonDataPlane() if plane == "python" else NativeDataPlane()
        self.producer = make_producer()
        self.shared: socket.socket | None = None
        if plane == "native-shared":
            self.shared = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.shared.setblocking(False)
            self.shared.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            self.shared.bind(("127.0.0.1", 0))
        self.transports = [NativeBenchTransport(sink.address, self.shared) for _ in range(consumers)]
        self.consumers = [attach_consumer(self.producer, n, t) for n, t in enumerate(self.transports)]
        self.seq = itertools.count(random.getrandbits(16))
        self.ts0 = random.getrandbits(32)
        ssrc = self.producer.ssrc
        assert ssrc is not None
        first = next(self.seq)
        keyframe = chrome_vp8_packet(ssrc, first, self.ts0, keyframe=True)
        assert self.plane.forward(self.producer, keyframe, RtpHeader.parse(keyframe), True, time.time()) == consumers
        self._check_output(keyframe)
        self.data = chrome_vp8_packet(ssrc, first + 1, self.ts0, keyframe=False)
        self.header = RtpHeader.parse(self.data)

    def eagain(self) -> int:
        if self.plane_name == "python":
            return super().eagain()
        return sum(int(c.forwarder.eagain) for c in self.consumers)

    def close(self) -> None:
        super().close()
        if self.shared is not None:
            self.shared.close()


@pytest.fixture(scope="module")
def sink(request: pytest.FixtureRequest) -> Iterator[UdpSink]:
    s = UdpSink(request.config.getoption("--bench-sink"))
    yield s
    s.close()


CASES = [
    (consumers, plane)
    for consumers in (1, 10, 100)
    for plane in ("python", "native", "native-shared")
    if not (plane == "native-shared" and consumers == 1)  # one socket either way
]


def _cpu_us_per_call(step: Any, calls: int = 3000) -> float:
    """This process's CPU time per call (user + system: the kernel's send work
    is in it), best of 3: what a core spends, whatever else the machine runs."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for _ in range(calls):
            step()
        best = min(best, time.process_time() - t0)
    return best / calls * 1e6


@pytest.mark.parametrize("consumers,plane", CASES)
@pytest.mark.benchmark(warmup=True, max_time=2.0)
def test_forward(benchmark: Any, sink: UdpSink, consumers: int, plane: str) -> None:
    benchmark.group = f"forward x{consumers}"
    rig = PlaneRig(consumers, sink, plane)
    try:
        step = rig.step_function()
        before_sent, before_sink = rig.sent(), sink.settled_count()
        assert benchmark(step) == consumers
        sent = rig.sent() - before_sent
        received = sink.settled_count() - before_sink
        info = benchmark.extra_info
        info.update(
            plane=plane,
            consumers=consumers,
            packet_bytes=PACKET_SIZE,
            srtp_profile="AEAD_AES_128_GCM",
            sink=sink.mode,
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
            cpu = _cpu_us_per_call(step, max(30, 30000 // consumers))
            info["cpu_us_per_egress_packet"] = round(cpu / consumers, 3)
            info["egress_packets_per_cpu_second"] = round(consumers / cpu * 1e6)
    finally:
        rig.close()


@pytest.mark.parametrize("plane", ["python", "native"])
@pytest.mark.benchmark(group="forward x100, no send (the plane's own work)", warmup=True, max_time=2.0)
def test_forward_without_send(benchmark: Any, sink: UdpSink, plane: str) -> None:
    """100 consumers whose transports are closed: map, rewrite, extension block,
    SRTP protect, ring store and counters, but no syscall."""
    rig = PlaneRig(100, sink, plane)
    try:
        for t in rig.transports:
            t.closed = True
        step = rig.step_function()
        assert benchmark(step) == 100
        info = benchmark.extra_info
        info.update(plane=plane, consumers=100)
        summary = _summary(benchmark)
        if summary is not None:
            info["us_per_egress_packet_median"] = round(summary["median"] * 1e6 / 100, 3)
            info["us_per_egress_packet_min"] = round(summary["min"] * 1e6 / 100, 3)
            info["cpu_us_per_egress_packet"] = round(_cpu_us_per_call(step, 300) / 100, 3)
    finally:
        rig.close()


@pytest.mark.parametrize("plane", ["python", "native"])
@pytest.mark.benchmark(group="retransmit nack16", warmup=True, max_time=2.0)
def test_retransmit_nack16(benchmark: Any, sink: UdpSink, plane: str) -> None:
    rig = PlaneRig(1, sink, plane)
    try:
        step = rig.step_function()
        for _ in range(RETRANSMIT_BUFFER):
            step()
        consumer = rig.consumers[0]
        last = consumer.forwarder.last_seq
        assert last is not None
        seqs = [(last - 100 + i) & 0xFFFF for i in range(NACK_SIZE)]
        python_copy = [consumer.retransmit.get(s) for s in seqs]
        assert all(python_copy)
        assert benchmark(rig.plane.retransmit, consumer, seqs) == NACK_SIZE
        info = benchmark.extra_info
        info.update(plane=plane, nack_seqs=NACK_SIZE, sink=sink.mode, eagain=rig.eagain())
        summary = _summary(benchmark)
        if summary is not None:
            info["us_per_nack_median"] = round(summary["median"] * 1e6, 3)
            info["us_per_retransmitted_packet_median"] = round(summary["median"] * 1e6 / NACK_SIZE, 3)
    finally:
        rig.close()
