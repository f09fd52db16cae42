"""Token-bucket rate limits, keyed by who is asking (address, identity, role)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(slots=True)
class Decision:
    allowed: bool
    retry_after: float  # seconds until one more would be allowed (0 when allowed)


class RateLimiter:
    """Allow ``limit`` events per ``window`` seconds per key, refilled continuously."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        if limit <= 0 or window <= 0:
            raise ValueError("rate limit and window must be positive")
        self.limit = limit
        self.window = window
        self._rate = limit / window
        self._max_keys = max_keys
        self._buckets: dict[object, tuple[float, float]] = {}

    def check(self, key: object, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.limit), now))
        tokens = min(float(self.limit), tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return Decision(True, 0.0)
        self._store(key, tokens, now)
        return Decision(False, (1.0 - tokens) / self._rate)

    def _store(self, key: object, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max_keys:
            # A bucket idle for a whole window is full again: forgetting it loses nothing.
            idle = [k for k, (_, last) in self._buckets.items() if now - last >= self.window]
            for k in idle:
                del self._buckets[k]
            if len(self._buckets) >= self._max_keys:  # still full: drop the oldest tenth
                for k in list(self._buckets)[: max(1, self._max_keys // 10)]:
                    del self._buckets[k]
        self._buckets[key] = (tokens, now)
