"""KeyframeRequester: aggregate and throttle keyframe requests to one producer.

Every consumer join, layer switch and viewer PLI/FIR wants a keyframe. A
thousand viewers joining in a second must not become a thousand PLIs to the
publisher's encoder: at most one PLI goes out per ``min_interval``; requests
arriving inside the interval are folded into one PLI sent when it ends.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable


class KeyframeRequester:
    __slots__ = ("_send", "_min_interval", "_last_sent", "_pending", "requests", "sent")

    def __init__(self, send: Callable[[], None], min_interval: float) -> None:
        self._send = send
        self._min_interval = min_interval
        self._last_sent = -1e9
        self._pending: asyncio.TimerHandle | None = None
        self.requests = 0
        self.sent = 0

    def request(self) -> bool:
        """Ask for a keyframe. Returns True if a PLI went out now."""
        self.requests += 1
        now = time.monotonic()
        wait = self._last_sent + self._min_interval - now
        if wait <= 0:
            self._fire()
            return True
        if self._pending is None:
            self._pending = asyncio.get_running_loop().call_later(wait, self._fire)
        return False

    def _fire(self) -> None:
        self._pending = None
        self._last_sent = time.monotonic()
        self.sent += 1
        self._send()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
