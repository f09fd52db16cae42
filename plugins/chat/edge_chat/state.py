"""Per-room chat state: history ring, mutes, keywords, slow mode, likes, presence.

Plain data and bookkeeping, no I/O: the plugin decides what to send. Times are
wall-clock seconds (``time.time()``) except the throttles, which take a
monotonic clock.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from typing import Any, Iterator

MAX_KEYWORDS = 100
SLOWMODE_MAX_SECONDS = 300
LIKES_INTERVAL = 0.5  # likes.updated at most 2 per second
PRESENCE_INTERVAL = 1.0  # presence at most 1 per second

# Message ids are unique per node process: a boot tag and a counter.
_BOOT = secrets.token_hex(3)
_ids = itertools.count(1)


def new_message_id() -> str:
    return f"{_BOOT}-{next(_ids)}"


class Throttle:
    """At most one emission per ``interval`` (monotonic seconds)."""

    __slots__ = ("interval", "last")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = float("-inf")

    def ready(self, now: float) -> bool:
        return now - self.last >= self.interval

    def fired(self, now: float) -> None:
        self.last = now


class LikeCounter:
    """The room's like total and what was added since the last broadcast."""

    __slots__ = ("total", "pending", "throttle")

    def __init__(self) -> None:
        self.total = 0
        self.pending = 0
        self.throttle = Throttle(LIKES_INTERVAL)

    def add(self, count: int) -> None:
        self.total += count
        self.pending += count

    def take(self, now: float) -> dict[str, int] | None:
        """``likes.updated`` data when there is news and the throttle allows it."""
        if not self.pending or not self.throttle.ready(now):
            return None
        self.throttle.fired(now)
        delta, self.pending = self.pending, 0
        return {"total": self.total, "delta": delta}


class Presence:
    """The last counts sent, so ``presence`` goes out only on change."""

    __slots__ = ("sent", "throttle")

    def __init__(self) -> None:
        self.sent: tuple[int, int] | None = None
        self.throttle = Throttle(PRESENCE_INTERVAL)

    def ready(self, now: float) -> bool:
        """Whether an update may go out now (check before counting: counting is O(room))."""
        return self.throttle.ready(now)

    def take(self, viewers: int, participants: int, now: float) -> dict[str, int] | None:
        if (viewers, participants) == self.sent or not self.throttle.ready(now):
            return None
        self.throttle.fired(now)
        self.sent = (viewers, participants)
        return {"viewers": viewers, "participants": participants}


class RoomState:
    def __init__(self, history_size: int) -> None:
        self.history: deque[dict[str, Any]] = deque(maxlen=history_size)
        self.mutes: dict[str, float] = {}  # identity -> muted until
        self.keywords: set[str] = set()  # casefolded
        self.slowmode = 0  # seconds; 0 = off
        self.last_sent: dict[str, float] = {}  # identity -> last accepted chat.send
        self.likes = LikeCounter()
        self.presence = Presence()

    # chat -----------------------------------------------------------------------

    def post(self, text: str, sender: dict[str, str] | None, ts: int, now: float) -> str:
        """Record an accepted message; returns its node-assigned id."""
        message_id = new_message_id()
        if self.history.maxlen:
            self.history.append({"message_id": message_id, "text": text, "from": sender, "ts": ts})
        if sender is not None:
            self.last_sent[sender["identity"]] = now
        return message_id

    def delete(self, message_id: str) -> bool:
        for entry in self.history:
            if entry["message_id"] == message_id:
                self.history.remove(entry)
                return True
        return False

    def recent(self) -> list[dict[str, Any]]:
        return list(self.history)

    # moderation -----------------------------------------------------------------

    def mute(self, identity: str, until: float) -> None:
        self.mutes[identity] = until

    def unmute(self, identity: str) -> None:
        self.mutes.pop(identity, None)

    def muted_for(self, identity: str, now: float) -> float:
        """Seconds of mute left (0 when not muted)."""
        until = self.mutes.get(identity)
        if until is None:
            return 0.0
        if until <= now:
            del self.mutes[identity]
            return 0.0
        return until - now

    def blocked_keyword(self, text: str) -> str | None:
        folded = text.casefold()
        return next((k for k in self.keywords if k in folded), None)

    def slowmode_wait(self, identity: str, now: float) -> float:
        """Seconds before ``identity`` may send again under slow mode (0 = now)."""
        if not self.slowmode:
            return 0.0
        last = self.last_sent.get(identity)
        return 0.0 if last is None else max(0.0, last + self.slowmode - now)

    def expire(self, now: float) -> None:
        """Housekeeping: forget ended mutes and send times slow mode cannot use."""
        for identity in [i for i, until in self.mutes.items() if until <= now]:
            del self.mutes[identity]
        horizon = now - SLOWMODE_MAX_SECONDS
        for identity in [i for i, t in self.last_sent.items() if t < horizon]:
            del self.last_sent[identity]


class ChatRooms:
    """The state of every room the plugin has seen, created on first use."""

    def __init__(self, history_size: int) -> None:
        self.history_size = history_size
        self._rooms: dict[str, RoomState] = {}

    def get(self, room: str) -> RoomState:
        state = self._rooms.get(room)
        if state is None:
            state = self._rooms[room] = RoomState(self.history_size)
        return state

    def find(self, room: str) -> RoomState | None:
        return self._rooms.get(room)

    def drop(self, room: str) -> None:
        self._rooms.pop(room, None)

    def items(self) -> Iterator[tuple[str, RoomState]]:
        return iter(list(self._rooms.items()))
