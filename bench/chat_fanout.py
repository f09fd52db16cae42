"""Chat fan-out through the real message path: deliveries per node-CPU-second and latency.

    python bench/chat_fanout.py --viewers 1000 --messages 300 --rate 100
    python bench/chat_fanout.py --viewers 5000 --messages 200 --rate 20

A real `edge serve` (with the first-party chat plugin) is pinned to CPU 0; a
load-generator process pinned to CPU 1 opens N WebSocket viewers and one host
that sends `chat.send` messages at a fixed rate, each stamped with its send time.
Every viewer counts deliveries; a sample of viewers measures latency (send ->
receive, same machine clock). Node CPU time comes from /proc/<pid>/stat, so the
figure is deliveries per core-second of the node, whatever the load costs.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


class RawViewer(asyncio.Protocol):
    """A minimal WebSocket client: one handshake, then frame headers only.

    The load generator must outrun the node on one core, which a full client
    library does not at 100k frames/s; counting frames needs no JSON parsing.
    """

    def __init__(self, path: str, host: str, expected: int, measure: bool, state: dict) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.buf = b""
        self.upgraded = False
        self.expected = expected
        self.measure = measure
        self.state = state
        self.count = 0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            self.upgraded = True
            self.ready.set_result(None)
            buf = buf[end + 4:]
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            if n - pos < head + length:
                break
            payload = buf[pos + head:pos + head + length]
            pos += head + length
            if b'"chat.message"' not in payload:
                continue
            self.count += 1
            if self.measure:
                text = json.loads(payload)["data"]["text"]
                self.state["latencies"].append(time.time() - float(text.split()[1]))
            if self.count == self.expected:
                self.state["done"] += 1
                if self.state["done"] == self.state["viewers"]:
                    self.state["event"].set()
        self.buf = buf[pos:]


async def load(url: str, room: str, viewer_token: str, host_token: str, viewers: int,
               messages: int, rate: float, sample: int) -> dict:
    import websockets

    loop = asyncio.get_running_loop()
    hostport = url.split("//", 1)[1]
    host, port = hostport.split(":")
    path = f"/v1/rooms/{room}/ws?token={viewer_token}"
    state: dict = {"latencies": [], "done": 0, "viewers": viewers, "event": asyncio.Event()}
    protocols: list[RawViewer] = []
    for i in range(viewers):
        _, proto = await loop.create_connection(
            lambda i=i: RawViewer(path, hostport, messages, i < sample, state), host, int(port)
        )
        protocols.append(proto)
    await asyncio.wait_for(asyncio.gather(*(p.ready for p in protocols)), 120)
    ws_url = url.replace("http://", "ws://") + f"/v1/rooms/{room}/ws?token="
    async with websockets.connect(ws_url + host_token, ping_interval=None) as sender:
        await asyncio.sleep(1.0)  # let welcome/history/presence traffic settle
        print("READY", flush=True)
        start = time.time()
        for n in range(messages):
            await sender.send(json.dumps({"type": "chat.send", "data": {"text": f"{n} {time.time():.6f}"}}))
            delay = start + (n + 1) / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        try:
            await asyncio.wait_for(state["event"].wait(), 60)
        except asyncio.TimeoutError:
            pass
        elapsed = time.time() - start
    for p in protocols:
        p.transport.close()
    latencies = sorted(state["latencies"])
    total = sum(p.count for p in protocols)

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2) if latencies else -1

    return {
        "deliveries": total,
        "expected": viewers * messages,
        "elapsed_s": round(elapsed, 3),
        "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1.0)},
    }


def run_load(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {1})
    result = asyncio.run(load(args.url, args.room, args.viewer_token, args.host_token,
                              args.viewers, args.messages, args.rate, args.sample))
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="chat messages per second")
    parser.add_argument("--sample", type=int, default=200, help="viewers that measure latency")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--room", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--viewer-token", help=argparse.SUPPRESS)
    parser.add_argument("--host-token", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        run_load(args)
        return

    import subprocess

    from tests.nodeproc import NodeProcess

    conf = Path(tempfile.mkdtemp()) / "bench.toml"
    conf.write_text(
        "[limits]\nmessages_per_connection = 100000000\nmax_viewers_per_room = 100000\n"
        "[plugins.chat]\nstaff_rate = [100000000, 1]\n"
    )
    node = NodeProcess(env={"EDGE_CONFIG": str(conf), "EDGE_LOG_LEVEL": "warning"}).start()
    try:
        os.sched_setaffinity(node.proc.pid, {0})
        room = "bench"
        cmd = [
            sys.executable, __file__, "--load", "--url", node.url, "--room", room,
            "--viewers", str(args.viewers), "--messages", str(args.messages), "--rate", str(args.rate),
            "--sample", str(args.sample),
            "--viewer-token", node.token(room, "viewer", "viewer"),
            "--host-token", node.token(room, "host", "host"),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        cpu_start = None
        result = None
        for line in proc.stdout:
            if line.startswith("READY"):
                cpu_start = cpu_seconds(node.proc.pid)
            elif line.startswith("RESULT "):
                result = json.loads(line[7:])
        proc.wait()
        cpu = cpu_seconds(node.proc.pid) - (cpu_start or 0.0)
        assert result is not None, "load generator failed"
        result.update(
            viewers=args.viewers,
            messages=args.messages,
            rate=args.rate,
            node_cpu_s=round(cpu, 3),
            deliveries_per_node_cpu_s=round(result["deliveries"] / cpu) if cpu > 0 else None,
            deliveries_per_s=round(result["deliveries"] / result["elapsed_s"]),
        )
        print(json.dumps(result))
    finally:
        node.stop()


if __name__ == "__main__":
    main()
