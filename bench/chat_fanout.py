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


async def load(url: str, room: str, viewer_token: str, host_token: str, viewers: int,
               messages: int, rate: float, sample: int) -> dict:
    import websockets

    ws_url = url.replace("http://", "ws://") + f"/v1/rooms/{room}/ws?token="
    counts = [0] * viewers
    latencies: list[float] = []
    expected = messages
    all_done = asyncio.Event()
    done_viewers = 0
    ready = 0
    all_ready = asyncio.Event()

    async def viewer(i: int) -> None:
        nonlocal done_viewers, ready
        async with websockets.connect(ws_url + viewer_token, max_queue=None, ping_interval=None) as ws:
            ready += 1
            if ready == viewers:
                all_ready.set()
            measure = i < sample
            async for raw in ws:
                # Cheap check: only chat.message frames count.
                if '"chat.message"' not in raw:
                    continue
                counts[i] += 1
                if measure:
                    sent = float(json.loads(raw)["data"]["text"].split()[1])
                    latencies.append(time.time() - sent)
                if counts[i] == expected:
                    done_viewers += 1
                    if done_viewers == viewers:
                        all_done.set()
                    return

    tasks = []
    for i in range(viewers):
        tasks.append(asyncio.ensure_future(viewer(i)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # spread the connection burst
    await asyncio.wait_for(all_ready.wait(), 120)
    async with websockets.connect(ws_url + host_token, ping_interval=None) as host:
        print("READY", flush=True)
        start = time.time()
        for n in range(messages):
            await host.send(json.dumps({"type": "chat.send", "data": {"text": f"{n} {time.time():.6f}"}}))
            next_at = start + (n + 1) / rate
            delay = next_at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        try:
            await asyncio.wait_for(all_done.wait(), 60)
        except asyncio.TimeoutError:
            pass
        elapsed = time.time() - start
    for t in tasks:
        t.cancel()
    latencies.sort()
    total = sum(counts)

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) if latencies else -1

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
