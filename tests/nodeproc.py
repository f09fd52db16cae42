"""Run a real `edge serve` in a subprocess on free ports, for integration tests."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from edge.auth import TokenAuthority

if TYPE_CHECKING:
    from .impair import NetNs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    """A UDP port free on loopback now: each node gets its own WebRTC mux port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    """``edge serve`` on loopback, or inside ``netns`` bound to its address.

    In a namespace (tests/impair) the node's HTTP and ICE addresses are the
    namespace's; the test process reaches it over the test network's bridge.
    """

    def __init__(self, env: dict[str, str] | None = None, netns: "NetNs | None" = None) -> None:
        self.netns = netns
        self.host = netns.address if netns else "127.0.0.1"
        self.port = free_port()  # a fresh namespace has every port free
        # The node's one WebRTC UDP port ([media] udp_port, default 7881): a free
        # one per node, so nodes of parallel tests never collide.
        self.udp_port = free_udp_port()
        self.url = f"http://{self.host}:{self.port}"
        self.secret = secrets.token_urlsafe(32)
        self.data_dir = tempfile.mkdtemp(prefix="edge-test-")
        self.authority = TokenAuthority(self.secret)
        self.log_path = Path(self.data_dir) / "node.log"
        self.env = {
            **os.environ,
            "EDGE_AUTH_SECRET": self.secret,
            "EDGE_NODE_DATA_DIR": self.data_dir,
            "EDGE_HTTP_PORT": str(self.port),
            "EDGE_MEDIA_UDP_PORT": str(self.udp_port),
            "EDGE_LOG_FORMAT": "json",
            "EDGE_LIMITS_SESSIONS_PER_MINUTE": "100000",
            **({"EDGE_HTTP_HOST": self.host, "EDGE_MEDIA_ICE_ADDRESSES": self.host} if netns else {}),
            **(env or {}),
        }
        self.udp_port = int(self.env["EDGE_MEDIA_UDP_PORT"])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> "NodeProcess":
        self._log = open(self.log_path, "wb")
        argv = [sys.executable, "-m", "edge.cli", "serve"]
        self.proc = subprocess.Popen(
            self.netns.argv(*argv) if self.netns else argv,  # `ip netns exec` execs: same pid
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edge serve exited: {self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling a port that has no event to wait on
        raise RuntimeError(f"edge serve did not come up: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except FileNotFoundError:
            return getattr(self, "_final_log", "")

    def token(self, room: str, identity: str, role: str, **kw: Any) -> str:
        return self.authority.issue(room=room, identity=identity, role=role, **kw)

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token("*", "ops", "admin")}

    def metrics(self) -> dict[str, float]:
        """Prometheus samples as {'name{labels}': value}."""
        text = httpx.get(self.url + "/metrics", headers=self.admin_headers(), timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def runtime(self) -> dict[str, Any]:
        return httpx.get(self.url + "/v1/admin/runtime", headers=self.admin_headers(), timeout=5).json()  # type: ignore[no-any-return]

    def room(self, name: str) -> dict[str, Any] | None:
        r = httpx.get(f"{self.url}/v1/rooms/{name}", headers=self.admin_headers(), timeout=5)
        return r.json() if r.status_code == 200 else None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._final_log = self.log()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return self.proc.returncode
