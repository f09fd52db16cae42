"""Fan-out benchmark: one publisher (VP8 ~2.5 Mbit/s + Opus), N real WebRTC viewers.

    bash bench/fanout/run.sh                      # everything, writes bench/fanout/.build/results.md
    python -m bench.fanout --configs edge-native --n 10 100 --duration 10

Configurations: edge-python, edge-native (EDGE_MEDIA_DATAPLANE), janus-default and
janus-loops1 (Janus 1.1.2, Streaming plugin, default config and event_loops = 1).
For each N, every configuration runs back to back (so the ratios hold on a noisy
machine): a fresh node pinned to --node-cpu, a load process (load.py) pinned to
--load-cpu, a warm-up, then a steady window in which the node's utime+stime delta
(/proc/<pid>/stat) is divided by the RTP packets the viewers received.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import targets
from .targets import EdgeTarget, JanusTarget

HERE = Path(__file__).resolve().parent
CONFIGS = ["edge-python", "edge-native", "janus-default", "janus-loops1"]


def make_target(name: str, cpus: set[int] | None) -> Any:
    if name.startswith("edge-"):
        return EdgeTarget(name.split("-", 1)[1], cpus)
    return JanusTarget(1 if name == "janus-loops1" else None, cpus)


def run_one(name: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    node_cpus = {args.node_cpu} if args.pin else None
    target = make_target(name, node_cpus)
    out = Path(tempfile.mkstemp(prefix="fanout-", suffix=".json")[1])
    try:
        target.start()
        cmd = [sys.executable, "-m", "bench.fanout.load", *target.load_args("fanout"),
               "-n", str(n), "--node-pid", str(target.pid), "--warmup", str(args.warmup),
               "--duration", str(args.duration), "--out", str(out)]
        if args.pin:
            cmd = ["taskset", "-c", str(args.load_cpu)] + cmd
        cmd = targets.sched_prefix() + cmd
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        if proc.returncode != 0 or not out.read_text():
            return {"config": name, "n": n, "error": (proc.stderr or proc.stdout)[-1500:]}
        result = json.loads(out.read_text())
        result["config"] = name
        return result
    except Exception as exc:  # one failed configuration must not lose the others
        return {"config": name, "n": n, "error": repr(exc)[:1500]}
    finally:
        logs = HERE / ".build" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        try:
            (logs / f"{name}-N{n}.log").write_text(target.log_tail())
        except Exception:
            pass
        target.stop()
        out.unlink(missing_ok=True)


def machine() -> dict[str, str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?")
    janus = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "janus"], capture_output=True, text=True).stdout
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release(),
            "python": platform.python_version(), "loadavg": Path("/proc/loadavg").read_text().split()[0], "janus": janus or "not installed",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def fmt(v: Any, spec: str = "") -> str:
    return "–" if v is None else format(v, spec)


def markdown(results: list[dict[str, Any]], m: dict[str, str], command: str) -> str:
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {m['nproc']} CPUs, {m['cpu']}, kernel {m['kernel']}, Python {m['python']}, "
        f"Janus {m['janus']}; {m['date']}; load average {m['loadavg']} at the end",
        "",
        "| config | N | viewers rx | egress pps | node CPU % | µs node CPU / egress pkt | egress pkts / core-s "
        "| loss % | latency p50 / p99 ms (samples) | SRTP samples ok/fail | load CPU % "
        "| node / load waited for CPU % | steal % (node/load core) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['config']} | {r['n']} | failed: {r['error'].splitlines()[-1][:120] if r['error'] else '?'} "
                         "| | | | | | | | | | |")
            continue
        lat = r["latency_ms"]
        steal = " / ".join(str(c["steal_pct"]) for c in r["cpus"].values())
        lines.append(
            f"| {r['config']} | {r['n']} | {r['viewers_receiving']} | {r['egress_pps']:,} | {r['node_cpu_pct']} "
            f"| {fmt(r['us_per_egress_packet'])} | {fmt(r['egress_packets_per_core_s'], ',')} "
            f"| {fmt(r['loss_pct'])} | {fmt(lat['p50'])} / {fmt(lat['p99'])} ({r['latency_matched']}) "
            f"| {r['decrypt_ok']}/{r['decrypt_fail']} | {r['load_cpu_pct']} "
            f"| {r.get('node_run_delay_pct', '–')} / {r.get('load_run_delay_pct', '–')} | {steal} |")
    s = next((r["stream"] for r in results if "stream" in r), None)
    if s:
        lines += ["", f"Stream: VP8 {s['video_mbit_s']:.2f} Mbit/s ({s['video_pps']:.0f} pps) + Opus "
                  f"({s['audio_pps']:.0f} pps) = {s['rtp_pps']:.0f} RTP packets/s per viewer."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.fanout")
    p.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    p.add_argument("--n", nargs="+", type=int, default=[10, 100, 500, 1000])
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--duration", type=float, default=15)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--node-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--no-pin", dest="pin", action="store_false")
    p.add_argument("--nice", type=int, default=targets.NICE,
                   help="niceness of node and load (default -15 as root: the machine is shared)")
    p.add_argument("--skip", nargs="*", default=[], help="config:N pairs not to run, e.g. edge-python:1000")
    p.add_argument("--fifo", type=int, default=0, metavar="PRIO",
                   help="run node and load as SCHED_FIFO PRIO (root): other jobs on a shared machine "
                        "cannot preempt them; the kernel's RT throttling still leaves them 5%%")
    p.add_argument("--json", help="write all results here")
    p.add_argument("--markdown", help="write the table here")
    args = p.parse_args()
    if args.pin and (os.cpu_count() or 1) < 2:
        args.pin = False
    targets.NICE = args.nice
    targets.FIFO = args.fifo
    targets.raise_priority()
    # SIGTERM stops the node/Janus of the run in progress (the finally in run_one)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    for n in args.n:
        for name in args.configs:
            if f"{name}:{n}" in args.skip:
                continue
            r = run_one(name, n, args)
            brief = {k: r.get(k) for k in ("config", "n", "viewers_receiving", "egress_pps", "node_cpu_pct",
                                            "us_per_egress_packet", "egress_packets_per_core_s", "loss_pct",
                                            "latency_ms", "load_cpu_pct", "error")}
            print(json.dumps(brief), file=sys.stderr, flush=True)
            results.append(r)
            if args.json:  # after every run, so an interrupted run keeps what it measured
                Path(args.json).write_text(json.dumps(results, indent=1))
    command = "python -m bench.fanout " + " ".join(sys.argv[1:])
    md = markdown(results, machine(), command)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(md)
    print(md)


if __name__ == "__main__":
    main()
