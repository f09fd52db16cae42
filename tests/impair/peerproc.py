"""Start and talk to a tests/impair/peer.py process inside a namespace (asyncio)."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from .netns import NetNs, repo_root

_ids = itertools.count()


class PeerProcess:
    """One aiortc peer (``view`` or ``publish``) running inside ``ns``.

    ``await next_event()`` reads its JSON lines one by one; ``await wait_for(name)``
    skips to a given event. A publisher runs until ``await finish()`` (closes
    its stdin); a viewer ends by itself after ``seconds`` (0: at ``finish()``).
    Its stderr goes to ``log_path`` (in the Network's temporary directory).
    """

    def __init__(self, ns: NetNs, role: str, url: str, room: str, token: str, seconds: float = 8.0) -> None:
        self.ns, self.role = ns, role
        self.argv = [
            sys.executable, "-m", "tests.impair.peer", role,
            "--url", url, "--room", room, "--token", token,
            "--address", ns.address, "--seconds", str(seconds),
        ]
        self.log_path = Path(ns.network.tmpdir) / f"{ns.host}-{role}-{next(_ids)}.log"
        self.log = open(self.log_path, "wb")
        self.proc: asyncio.subprocess.Process | None = None
        self.seen: list[dict[str, Any]] = []

    async def start(self) -> "PeerProcess":
        self.proc = await asyncio.create_subprocess_exec(
            *self.ns.argv(*self.argv),
            cwd=repo_root(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # A file, not a pipe: aiortc's warnings on a long lossy run must
            # never fill a pipe nobody reads and stall the peer.
            stderr=self.log,
        )
        return self

    def log_tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    async def next_event(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            await self.proc.wait()
            raise RuntimeError(f"{self.role} peer in {self.ns.name} ended without output: {self.log_tail()}")
        event: dict[str, Any] = json.loads(line)
        self.seen.append(event)
        if event["event"] == "failed":
            raise RuntimeError(f"{self.role} peer failed: {event} {self.log_tail()}")
        return event

    async def wait_for(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.next_event(max(0.1, deadline - loop.time()))
            if event["event"] == name:
                return event

    async def finish(self, timeout: float = 30.0) -> dict[str, Any]:
        """Close the peer's stdin (publisher: stop; viewer: stop watching now); returns its result."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        result = await self.wait_for("result", timeout)
        await asyncio.wait_for(self.proc.wait(), timeout)
        self.log.close()
        return result

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.log.close()
