"""The systems under test: an `edge serve` (Python or native plane) and Janus 1.1.2."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


NICE = -15 if os.geteuid() == 0 else 0  # the machine is shared: keep other work off our cores
FIFO = 0  # SCHED_FIFO priority for node and load (--fifo): other jobs cannot preempt them


def raise_priority() -> None:
    """Give this process's autogroup the NICE value.

    With sched_autogroup_enabled (Debian's default) a process's nice value only
    counts inside its session's autogroup; against other sessions' work the whole
    autogroup competes at its own nice. Node, load and this orchestrator share one
    session, so renicing the autogroup is what keeps other jobs off their cores.
    """
    path = Path("/proc/self/autogroup")
    if NICE and path.exists():
        try:
            path.write_text(str(NICE))
        except OSError:
            pass


def sched_prefix() -> list[str]:
    if FIFO:
        return ["chrt", "-f", str(FIFO)]
    if NICE:
        return ["nice", "-n", str(NICE)]
    return []


def pin(pid: int, cpus: set[int] | None) -> None:
    """Pin and renice every thread of pid (threads made later inherit both)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if cpus:
                os.sched_setaffinity(int(tid), cpus)
            if FIFO:
                os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(FIFO))
            elif NICE:
                os.setpriority(os.PRIO_PROCESS, int(tid), NICE)
        except ProcessLookupError:
            pass


class EdgeTarget:
    kind = "edge"

    def __init__(self, dataplane: str, cpus: set[int] | None) -> None:
        from tests.nodeproc import NodeProcess  # the tests' real `edge serve` runner

        self.name = f"edge-{dataplane}"
        self.node = NodeProcess(env={
            "EDGE_MEDIA_DATAPLANE": dataplane,
            "EDGE_LOG_LEVEL": "info",  # one line per session: close reasons land in .build/logs
            "EDGE_LIMITS_MAX_VIEWERS_PER_ROOM": "100000",
        })
        self.cpus = cpus

    def start(self) -> None:
        self.node.start()
        pin(self.node.proc.pid, self.cpus)  # type: ignore[union-attr]

    @property
    def pid(self) -> int:
        return self.node.proc.pid  # type: ignore[union-attr]

    def load_args(self, room: str) -> list[str]:
        return ["--target", "edge", "--url", self.node.url, "--room", room,
                "--publisher-token", self.node.token(room, "host", "host"),
                "--viewer-token", self.node.token(room, "viewer", "viewer"),
                "--ice-address", "127.0.0.1"]

    def log_tail(self) -> str:
        # the publisher's lines (why it closed, if it did), then the end of the log
        try:
            text = self.node.log_path.read_text()
        except FileNotFoundError:
            return self.node.log()
        whip = [line for line in text.splitlines() if '"whip"' in line or "warning" in line or "error" in line]
        return "\n".join(whip[-50:]) + "\n...\n" + text[-3000:]

    def stop(self) -> None:
        self.node.stop()


def local_ipv4() -> tuple[str, str]:
    """(interface, address) of the first global IPv4 address: Janus will not use lo."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        return parts[1], parts[3].split("/")[0]
    raise RuntimeError("Janus needs a non-loopback IPv4 address for ICE (it skips lo)")


class JanusTarget:
    kind = "janus"
    http_port = 8188
    video_port = 5104
    audio_port = 5106

    def __init__(self, event_loops: int | None, cpus: set[int] | None) -> None:
        self.name = "janus-loops1" if event_loops else "janus-default"
        self.event_loops = event_loops
        self.cpus = cpus
        self.dir = Path(tempfile.mkdtemp(prefix="fanout-janus-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not shutil.which("janus"):
            raise RuntimeError("janus is not installed: run bench/fanout/setup.sh")
        self.iface, self.address = local_ipv4()
        subs = {"@CONF@": str(self.dir), "@IFACE@": self.iface,
                "@EVENT_LOOPS@": f"event_loops = {self.event_loops}" if self.event_loops else "",
                "@VIDEO_PORT@": str(self.video_port), "@AUDIO_PORT@": str(self.audio_port),
                "@HTTP_PORT@": str(self.http_port)}
        for tpl in (HERE / "janus").glob("*.in"):
            text = tpl.read_text()
            for k, v in subs.items():
                text = text.replace(k, v)
            (self.dir / tpl.name[:-3]).write_text(text)
        cmd = ["janus", "-F", str(self.dir), "-L", str(self.dir / "janus.log"), "-N", "-o"]
        if self.cpus:
            cmd = ["taskset", "-c", ",".join(map(str, sorted(self.cpus)))] + cmd
        cmd = sched_prefix() + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited: {(self.dir / 'janus.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/janus/info", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling a port that has no event to wait on
        raise RuntimeError("janus did not come up")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def load_args(self, room: str) -> list[str]:
        return ["--target", "janus", "--url", f"http://127.0.0.1:{self.http_port}/janus",
                "--janus-video-port", str(self.video_port), "--janus-audio-port", str(self.audio_port),
                "--ice-address", self.address]

    def log_tail(self) -> str:
        try:
            return (self.dir / "janus.log").read_text()[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
