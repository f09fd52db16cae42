"""Start and talk to a tests/impair/peer.py process inside a namespace (asyncio)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from .netns import NetNs, repo_root


class PeerProcess:
    """One aiortc peer (``view`` or ``publish``) running inside ``ns``.

    ``await events()`` reads its JSON lines one by one; ``await wait_for(name)``
    skips to a given event. A publisher runs until ``await finish()`` (closes
    its stdin); a viewer ends by itself after ``seconds``.
    """

    def __init__(self, ns: NetNs, role: str, url: str, room: str, token: str, seconds: float = 8.0) -> None:
        self.ns, self.role = ns, role
        self.argv = [
            sys.executable, "-m", "tests.impair.peer", role,
            "--url", url, "--room", room, "--token", token,
            "--address", ns.address, "--seconds", str(seconds),
        ]
        self.proc: asyncio.subprocess.Process | None = None
        self.seen: list[dict[str, Any]] = []

    async def start(self) -> "PeerProcess":
        self.proc = await asyncio.create_subprocess_exec(
            *self.ns.argv(*self.argv),
            cwd=repo_root(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return self

    async def next_event(self, timeout: float = 30.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            err = (await self.proc.stderr.read()).decode()[-3000:] if self.proc.stderr else ""
            raise RuntimeError(f"{self.role} peer in {self.ns.name} ended without output: {err}")
        event: dict[str, Any] = json.loads(line)
        self.seen.append(event)
        if event["event"] == "failed":
            raise RuntimeError(f"{self.role} peer failed: {event}")
        return event

    async def wait_for(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.next_event(max(0.1, deadline - loop.time()))
            if event["event"] == name:
                return event

    async def finish(self, timeout: float = 30.0) -> dict[str, Any]:
        """Ask a publisher to stop (viewers stop by themselves); returns its result."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        result = await self.wait_for("result", timeout)
        await asyncio.wait_for(self.proc.wait(), timeout)
        return result

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
