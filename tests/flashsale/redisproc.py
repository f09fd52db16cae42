"""A real ``redis-server`` on a free port in a directory of its own, for the flash-sale tests.

Started exactly as the durability story needs it: AOF on, fsync on every write,
no RDB snapshots. ``kill()`` is SIGKILL (no shutdown save); ``start()`` again on
the same directory and port replays the AOF.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ..nodeproc import free_port

REDIS_SERVER = "/usr/bin/redis-server"
MISSING = (
    f"{REDIS_SERVER} is missing. The flash-sale tests need Debian's redis-server: run the README's "
    "test command, `bash .ci/test.sh` (or `bash .ci/setup.sh --test`), which installs it."
)


def redis_binary() -> str | None:
    if Path(REDIS_SERVER).exists():
        return REDIS_SERVER
    return shutil.which("redis-server")


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        binary = redis_binary()
        if binary is None:
            raise FileNotFoundError(MISSING)
        self.binary = binary
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> "RedisServer":
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
                "--logfile", str(self.log_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log()}")
            if self.ping():
                return self
            time.sleep(0.02)  # a port that has no event to wait on
        raise RuntimeError(f"redis-server did not come up: {self.log()}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")  # -LOADING while replaying the AOF
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-3000:]
        except FileNotFoundError:
            return ""
