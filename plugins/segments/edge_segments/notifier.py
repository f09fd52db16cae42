"""The ``notifier`` service: how segment actions, coupons and draw wins reach a viewer.

``await edge.service("notifier").notify(room, identity, kind, data)`` hands one
notification to every channel named in ``[plugins.segments] notifiers``, in
order (default ``["inroom"]``):

- ``inroom`` (built in): an envelope ``{"type": kind, "data": data}`` to the
  viewer's message connections in ``room`` only (``edge.send_to``). When the
  viewer has none open, it waits in an outbox (``pending_hours``) and goes out
  on their next connection to the room.
- any other name: the service another plugin provided under that name
  (``edge.provide("sms", adapter)``) with ``notify(room, identity, kind, data)``
  (async or plain); ``False`` from it means "not delivered", anything else
  (or nothing) means delivered. A missing service, an exception or a call that
  runs over ``notify_timeout_ms`` is logged and counted, and the next channel
  still gets its turn.

Whatever the channels, every notification is also published as the domain
event ``segments.notification`` ``{room, identity, kind, data, at, delivered}``
for plugins that prefer listening to being listed.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from edge.plugins.api import Edge

    from .store import Store

KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
INROOM = "inroom"


class Notifier:
    def __init__(
        self,
        edge: "Edge",
        channels: tuple[str, ...],
        *,
        timeout: float,
        pending_seconds: float,
        store: Callable[[], "Store | None"],
        clock: Callable[[], float],
        count: Callable[[str, str], None],
    ) -> None:
        self.edge = edge
        self.channels = channels
        self.timeout = timeout
        self.pending_seconds = pending_seconds
        self._store = store
        self._clock = clock
        self._count = count
        self._log = edge.logger("segments")

    async def notify(self, room: str, identity: str, kind: str, data: dict[str, Any]) -> bool:
        """Deliver through every configured channel; True if at least one delivered."""
        if not isinstance(kind, str) or len(kind) > 64 or not KIND.fullmatch(kind):
            raise ValueError(f"kind must be a dotted lower-case name, got {kind!r}")
        if not isinstance(data, dict):
            raise ValueError("data must be a dict")
        data = dict(data)
        delivered: dict[str, bool] = {}
        for name in self.channels:
            if name == INROOM:
                delivered[name] = self.inroom(room, identity, kind, data)
                continue
            delivered[name] = await self._adapter(name, room, identity, kind, data)
        self.edge.emit(
            "segments.notification",
            {"room": room, "identity": identity, "kind": kind, "data": data, "at": self._clock(),
             "delivered": delivered},
            source="segments",
        )
        return any(delivered.values())

    def inroom(self, room: str, identity: str, kind: str, data: dict[str, Any]) -> bool:
        """The built-in channel: the viewer's connections in the room, else the outbox."""
        sent = self.edge.send_to(room, identity, kind, data)
        if sent:
            self._count(INROOM, "ok")
            return True
        store = self._store()
        if store is not None and self.pending_seconds > 0:
            now = self._clock()
            store.push_pending(room, identity, kind, data, now, now + self.pending_seconds)
            self._count(INROOM, "pending")
        else:
            self._count(INROOM, "undelivered")
        return False

    def deliver_pending(self, room: str, identity: str, connection: str) -> int:
        """Send the outbox of ``identity`` in ``room`` to a connection that just opened."""
        store = self._store()
        if store is None:
            return 0
        sent = 0
        for kind, data in store.take_pending(room, identity, self._clock()):
            sent += self.edge.send_to(room, identity, kind, data, connection=connection)
        return sent

    async def _adapter(self, name: str, room: str, identity: str, kind: str, data: dict[str, Any]) -> bool:
        service = self.edge.service(name)
        if service is None or service is self or not callable(getattr(service, "notify", None)):
            self._count(name, "missing")
            self._log.warning("notifier_missing", channel=name)
            return False
        try:
            result = service.notify(room, identity, kind, dict(data))
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.timeout)
        except asyncio.TimeoutError:
            self._count(name, "timeout")
            self._log.warning("notifier_timeout", channel=name, kind=kind, timeout_s=self.timeout)
            return False
        except Exception as exc:  # an adapter's failure never stops the others
            self._count(name, "failed")
            self._log.error("notifier_failed", channel=name, kind=kind, error=repr(exc))
            return False
        ok = result is not False
        self._count(name, "ok" if ok else "undelivered")
        return ok
