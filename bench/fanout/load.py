"""The load process: one publisher and N viewers, all in one asyncio loop on the load core.

    python -m bench.fanout.load --target edge --url http://127.0.0.1:PORT --room R \
        --publisher-token T --viewer-token T -n 100 --node-pid PID --out result.json
    python -m bench.fanout.load --target janus --url http://127.0.0.1:8088/janus \
        --ice-address 192.0.2.2 -n 100 --node-pid PID --out result.json

Viewers complete ICE and DTLS for real with aiortc (WHEP against edge; the Streaming
plugin's watch/start against Janus). Once DTLS is up, the viewer's socket leaves
asyncio and goes to counter.c, which counts RTP per SSRC from the clear header and
copies out one packet in --sample-every plus everything that is not RTP (STUN consent,
DTLS, SRTCP goes back to aioice unchanged). Sampled packets are decrypted with the
viewer's own SRTP session (proof the media is real) and their payload is matched with
the publisher's send time: added latency = kernel receive timestamp - publisher send
time, one clock. Prints a JSON result and writes it to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import string
import struct
import time
from pathlib import Path
from typing import Any

import httpx
from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from edge.transport.webrtc import install_ice_addresses

from .counter import Counter, Datagram, ViewerCount
from .media import EncodedTrack, LoopClock, Pacer, PlainRtpSource, describe, load_stream

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


def cpu_table() -> dict[str, list[int]]:
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3].isdigit():
            p = line.split()
            out[p[0]] = list(map(int, p[1:9]))
    return out


def cpu_busy_steal(a: dict[str, list[int]], b: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    res = {}
    for k in a:
        d = [y - x for x, y in zip(a[k], b[k])]
        tot = max(1, sum(d))
        res[k] = {"busy_pct": round(100 * (tot - d[3] - d[4]) / tot, 1), "steal_pct": round(100 * d[7] / tot, 1)}
    return res


def udp_errors() -> dict[str, int]:
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    d = dict(zip(lines[0][1:], map(int, lines[1][1:])))
    return {"RcvbufErrors": d.get("RcvbufErrors", 0), "SndbufErrors": d.get("SndbufErrors", 0)}


def socket_drops(pid: int) -> int:
    """Kernel drops (receive buffer full) summed over pid's UDP sockets."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    total = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        for line in Path(name).read_text().splitlines()[1:]:
            p = line.split()
            if p[9] in inodes:
                total += int(p[-1])
    return total


def run_delay_s(pid: int) -> float:
    """Time pid's threads spent runnable but waiting for a CPU (schedstat field 2)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
        except (OSError, IndexError):
            pass
    return total / 1e9


def rtp_payload(data: bytes) -> bytes:
    b0 = data[0]
    pos = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        pos += 4 + struct.unpack_from("!H", data, pos + 2)[0] * 4
    end = len(data) - (data[-1] if b0 & 0x20 else 0)
    return data[pos:end]


class SendTimes:
    """Publisher send time (time.time()) per video payload, for the last few seconds."""

    def __init__(self, keep_s: float = 5.0) -> None:
        self.times: dict[int, float] = {}
        self.order: collections.deque[tuple[float, int]] = collections.deque()
        self.keep = keep_s

    def sent(self, payload: bytes, at: float) -> None:
        key = hash(payload)
        self.times[key] = at
        self.order.append((at, key))
        while self.order and self.order[0][0] < at - self.keep:
            _, old = self.order.popleft()
            if self.times.get(old, at) < at - self.keep:
                self.times.pop(old, None)

    def lookup(self, payload: bytes) -> float | None:
        return self.times.get(hash(payload))


class Viewer:
    """One aiortc peer used for ICE/DTLS only; media is counted by counter.c."""

    def __init__(self, idx: int) -> None:
        self.idx = idx
        self.pc: RTCPeerConnection | None = None
        self.dtls: Any = None
        self.protocol: Any = None
        self.ready = False
        self.rtcp_ssrc = random.getrandbits(32)

    def _mute_receivers(self) -> None:
        # Packets that arrive before the socket is handed over must not reach the
        # receivers (jitter buffer, decoder thread): they are dropped here.
        assert self.pc is not None
        for t in self.pc.getTransceivers():
            async def drop(data: bytes, arrival_time_ms: int | None = None) -> None:
                return None
            t.receiver.transport._handle_rtp_data = drop

    async def _connected(self, timeout: float = 60.0) -> None:
        assert self.pc is not None
        done = asyncio.Event()

        def check() -> None:
            if self.pc is not None and self.pc.connectionState in ("connected", "failed", "closed"):
                done.set()

        self.pc.on("connectionstatechange", check)
        check()
        await asyncio.wait_for(done.wait(), timeout)
        if self.pc.connectionState != "connected":
            raise RuntimeError(f"viewer {self.idx}: peer connection {self.pc.connectionState}")

    def send_receiver_report(self, count: ViewerCount) -> None:
        reports = [RtcpReceiverInfo(ssrc=s.ssrc, fraction_lost=0, packets_lost=0,
                                    highest_sequence=s.ext_max & 0xFFFFFFFF, jitter=0, lsr=0, dlsr=0)
                   for s in count.streams]
        packet = RtcpRrPacket(ssrc=self.rtcp_ssrc, reports=reports)
        asyncio.ensure_future(self.dtls._send_rtp(bytes(packet)))

    def hand_over(self, counter: Counter) -> None:
        """Move the nominated socket from asyncio to counter.c."""
        assert self.pc is not None
        self.dtls = self.pc.getTransceivers()[0].receiver.transport
        conn = self.dtls.transport._connection  # aioice.Connection
        protocols = list(conn._protocols)
        if len(protocols) != 1:
            raise RuntimeError(f"viewer {self.idx}: expected one local candidate, got {len(protocols)}")
        self.protocol = protocols[0]
        transport = self.protocol.transport
        transport.pause_reading()
        counter.add(self.idx, transport.get_extra_info("socket"))
        self.ready = True


class EdgeViewer(Viewer):
    async def start(self, http: httpx.AsyncClient, url: str, room: str, token: str, counter: Counter) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self._mute_receivers()
        r = await http.post(f"{url}/whep/{room}", content=self.pc.localDescription.sdp,
                            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
        if r.status_code != 201:
            raise RuntimeError(f"WHEP POST {r.status_code}: {r.text[:200]}")
        await self.pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
        await self._connected()
        self.hand_over(counter)


def _tx() -> str:
    return "".join(random.choices(string.ascii_letters, k=12))


class JanusViewer(Viewer):
    """Janus Streaming plugin over its HTTP API: create, attach, watch, answer, start."""

    session = 0

    async def _post(self, http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await http.post(url, json={**body, "transaction": _tx()})
        return r.json()

    async def start(self, http: httpx.AsyncClient, url: str, mountpoint: int, counter: Counter) -> None:
        self.url = url
        self.session = (await self._post(http, url, {"janus": "create"}))["data"]["id"]
        handle = (await self._post(http, f"{url}/{self.session}",
                                   {"janus": "attach", "plugin": "janus.plugin.streaming"}))["data"]["id"]
        await self._post(http, f"{url}/{self.session}/{handle}",
                         {"janus": "message", "body": {"request": "watch", "id": mountpoint}})
        offer = None
        deadline = time.monotonic() + 30
        while offer is None and time.monotonic() < deadline:
            r = await http.get(f"{url}/{self.session}?maxev=5&rid={int(time.time() * 1000)}", timeout=40)
            events = r.json()
            for ev in events if isinstance(events, list) else [events]:
                if ev.get("jsep"):
                    offer = ev["jsep"]
        if offer is None:
            raise RuntimeError("no JSEP offer from Janus")
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        self._mute_receivers()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self._post(http, f"{url}/{self.session}/{handle}",
                         {"janus": "message", "body": {"request": "start"},
                          "jsep": {"type": "answer", "sdp": self.pc.localDescription.sdp}})
        await self._connected()
        self.hand_over(counter)

    async def keepalive(self, http: httpx.AsyncClient) -> None:
        await self._post(http, f"{self.url}/{self.session}", {"janus": "keepalive"})


async def start_edge_publisher(url: str, room: str, token: str, stream: list, send_times: SendTimes) -> RTCPeerConnection:
    clock = LoopClock()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    pc.addTrack(EncodedTrack("audio", stream, clock))
    pc.addTrack(EncodedTrack("video", stream, clock))
    await pc.setLocalDescription(await pc.createOffer())
    video_ssrcs = {t.sender._ssrc for t in pc.getTransceivers() if t.kind == "video"}
    dtls = pc.getTransceivers()[0].sender.transport
    original = dtls._send_rtp

    pacer = Pacer()

    async def record(data: bytes) -> None:
        # Publisher-side hook (the test peer, not the node): pace video like a
        # browser and stamp each video payload with its send time.
        if not (192 <= data[1] <= 223) and struct.unpack_from("!I", data, 8)[0] in video_ssrcs:
            await pacer.wait(len(data))
            send_times.sent(rtp_payload(data), time.time())
        await original(data)

    dtls._send_rtp = record
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{url}/whip/{room}", content=pc.localDescription.sdp,
                            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
    if r.status_code != 201:
        raise RuntimeError(f"WHIP POST {r.status_code}: {r.text[:200]}")
    await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
    return pc


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    install_ice_addresses([args.ice_address])
    stream = load_stream()
    counter = Counter(args.n, args.sample_every)
    send_times = SendTimes()
    http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64))
    background: list[asyncio.Task[Any]] = []
    if args.target == "edge":
        await start_edge_publisher(args.url, args.room, args.publisher_token, stream, send_times)
        viewers: list[Viewer] = [EdgeViewer(i) for i in range(args.n)]
    else:
        source = PlainRtpSource(stream, args.janus_video_port, args.janus_audio_port, send_times.sent)
        background.append(asyncio.create_task(source.run()))
        viewers = [JanusViewer(i) for i in range(args.n)]

    stats = {"samples": 0, "decrypt_ok": 0, "decrypt_fail": 0, "latency_s": [], "unmatched": 0}
    measuring = {"on": False}

    def handle(d: Datagram) -> None:
        v = viewers[d.viewer]
        if not d.sampled_rtp:
            v.protocol.datagram_received(d.data, d.addr)
            return
        if not measuring["on"]:
            return
        stats["samples"] += 1
        try:
            clear = v.dtls._rx_srtp.unprotect(d.data)
        except Exception:
            stats["decrypt_fail"] += 1
            return
        stats["decrypt_ok"] += 1
        sent = send_times.lookup(rtp_payload(clear))
        if sent is None:
            stats["unmatched"] += 1
        elif d.ts_ns:
            stats["latency_s"].append(d.ts_ns / 1e9 - sent)

    async def pump() -> None:
        while True:
            for d in counter.sweep():
                handle(d)
            await asyncio.sleep(args.sweep_ms / 1000)

    background.append(asyncio.create_task(pump()))

    async def receiver_reports() -> None:
        # Browsers send an RTCP Receiver Report about once a second; edge closes a
        # session that sends nothing for inactivity_timeout, and Janus needs them for
        # RTT. aiortc's receivers never see the packets here, so the reports are
        # built from counter.c's per-SSRC counts.
        while True:
            await asyncio.sleep(1.0)
            snap = counter.snapshot()
            for v, count in zip(viewers, snap):
                if v.ready and count.streams:
                    v.send_receiver_report(count)

    background.append(asyncio.create_task(receiver_reports()))

    sem = asyncio.Semaphore(args.concurrency)
    failures: list[str] = []

    async def start_one(v: Viewer) -> None:
        async with sem:
            try:
                if args.target == "edge":
                    await v.start(http, args.url, args.room, args.viewer_token, counter)  # type: ignore[attr-defined]
                else:
                    await v.start(http, args.url, args.mountpoint, counter)  # type: ignore[attr-defined]
            except Exception as exc:  # counted and reported, the run goes on
                failures.append(f"{v.idx}: {exc!r}"[:300])

    if args.target == "janus":
        async def keepalives() -> None:
            # Janus drops a session after session_timeout (60 s) without a request;
            # setting up 1000 viewers takes longer than that, so this runs from the start.
            while True:
                await asyncio.sleep(15)
                await asyncio.gather(*(v.keepalive(http) for v in viewers if v.session),  # type: ignore[attr-defined]
                                     return_exceptions=True)
        background.append(asyncio.create_task(keepalives()))

    t0 = time.monotonic()
    await asyncio.gather(*(start_one(v) for v in viewers))
    setup_s = time.monotonic() - t0
    # wait (bounded) until every connected viewer has received media
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        snap = counter.snapshot()
        if all(s.rtp_packets > 0 for v, s in zip(viewers, snap) if v.ready):
            break
        await asyncio.sleep(0.2)
    receiving = sum(1 for s in counter.snapshot() if s.rtp_packets > 0)
    await asyncio.sleep(args.warmup)

    # ---- measurement window
    me = os.getpid()
    c0, n0, m0, k0, u0 = counter.snapshot(), cpu_seconds(args.node_pid), cpu_seconds(me), cpu_table(), udp_errors()
    d0 = (socket_drops(args.node_pid), socket_drops(me), run_delay_s(args.node_pid), run_delay_s(me))
    t_start = time.monotonic()
    measuring["on"] = True
    await asyncio.sleep(args.duration)
    measuring["on"] = False
    c1, n1, m1, k1, u1 = counter.snapshot(), cpu_seconds(args.node_pid), cpu_seconds(me), cpu_table(), udp_errors()
    d1 = (socket_drops(args.node_pid), socket_drops(me), run_delay_s(args.node_pid), run_delay_s(me))
    dt = time.monotonic() - t_start
    # ----

    received = expected = 0
    viewers_with_loss = 0
    per_viewer_pps = []
    for a, b in zip(c0, c1):
        rx = b.rtp_packets - a.rtp_packets
        received += rx
        per_viewer_pps.append(rx / dt)
        before = {s.ssrc: s for s in a.streams}
        lost_here = 0
        for s in b.streams:
            if s.ssrc in before:
                exp = s.ext_max - before[s.ssrc].ext_max
                got = s.packets - before[s.ssrc].packets
                expected += exp
                lost_here += max(0, exp - got)
            else:  # a stream that started inside the window: count what came
                expected += s.packets
        # received includes packets of streams that started in the window; expected does too
        viewers_with_loss += lost_here > 0
    lost = max(0, expected - received)
    node_cpu = n1 - n0
    lat = stats["latency_s"]
    for t in background:
        t.cancel()
    result = {
        "target": args.target, "n": args.n, "viewers_connected": sum(v.ready for v in viewers),
        "viewers_receiving": receiving, "setup_failures": failures[:5], "setup_failures_count": len(failures),
        "setup_s": round(setup_s, 1), "duration_s": round(dt, 2), "stream": describe(stream),
        "egress_packets": received, "egress_pps": round(received / dt),
        "per_viewer_pps_min": round(min(per_viewer_pps), 1) if per_viewer_pps else 0,
        "expected_packets": expected, "lost_packets": lost,
        "loss_pct": round(100 * lost / expected, 4) if expected else None,
        "viewers_with_loss": viewers_with_loss,
        "node_cpu_s": round(node_cpu, 3), "node_cpu_pct": round(100 * node_cpu / dt, 1),
        "us_per_egress_packet": round(1e6 * node_cpu / received, 2) if received else None,
        "egress_packets_per_core_s": round(received / node_cpu) if node_cpu > 0 else None,
        "load_cpu_pct": round(100 * (m1 - m0) / dt, 1),
        "cpus": cpu_busy_steal(k0, k1),
        "udp_errors_delta": {k: u1[k] - u0[k] for k in u0},
        "node_socket_drops": d1[0] - d0[0], "load_socket_drops": d1[1] - d0[1],
        "node_run_delay_pct": round(100 * (d1[2] - d0[2]) / dt, 1),
        "load_run_delay_pct": round(100 * (d1[3] - d0[3]) / dt, 1),
        "samples": stats["samples"], "decrypt_ok": stats["decrypt_ok"], "decrypt_fail": stats["decrypt_fail"],
        "latency_matched": len(lat), "latency_unmatched": stats["unmatched"],
        "latency_ms": {q: (round(1000 * v, 3) if v is not None else None)
                       for q, v in (("p50", percentile(lat, 0.5)), ("p99", percentile(lat, 0.99)),
                                    ("max", percentile(lat, 1.0)))},
    }
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--target", choices=["edge", "janus"], required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--room", default="fanout")
    p.add_argument("--publisher-token", default="")
    p.add_argument("--viewer-token", default="")
    p.add_argument("--mountpoint", type=int, default=1)
    p.add_argument("--janus-video-port", type=int, default=5004)
    p.add_argument("--janus-audio-port", type=int, default=5006)
    p.add_argument("--ice-address", default="127.0.0.1")
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--node-pid", type=int, required=True)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--sample-every", type=int, default=100)
    p.add_argument("--sweep-ms", type=float, default=5)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    asyncio.run(run_and_exit(args))


async def run_and_exit(args: argparse.Namespace) -> None:
    result = await run(args)
    text = json.dumps(result)
    Path(args.out).write_text(text)
    print(text, flush=True)
    # Peers are not closed one by one (1000 DTLS shutdowns): the node or Janus is
    # stopped next, and the sockets go with this process.
    os._exit(0)


if __name__ == "__main__":
    main()
