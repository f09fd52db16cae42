"""Session: a WHIP publisher or a WHEP viewer bound to one WebRtcTransport.

The base class of PublisherSession (publisher_session.py: the publisher's
m-lines as Producers, its RTP into the data plane, receiver reports, REMB,
NACKs and throttled PLIs upstream) and ViewerSession (viewer_session.py: the
viewer's consumer slots, its RTCP, layer choice and loss recovery towards it).
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from ..observability.logging import get_logger
from ..transport.webrtc import MediaSection, WebRtcTransport
from . import rtcp

log = get_logger("edge.media")

if TYPE_CHECKING:
    from .node import MediaNode
    from .participant import Participant
    from .room import Room


class Session:
    kind = "session"

    def __init__(
        self, node: "MediaNode", room: "Room", participant: "Participant", transport: WebRtcTransport
    ) -> None:
        self.id = transport.id
        self.node = node
        self.room = room
        self.participant = participant
        self.transport = transport
        self.created_at = time.time()
        self.connected_at: float | None = None
        self.closed = False
        # SSRC the node uses as sender of its own RTCP on this transport.
        self.rtcp_ssrc = random.getrandbits(32) or 1
        transport.on_rtp = self.on_rtp
        transport.on_rtcp = self.on_rtcp
        transport.on_drop = self._dropped

    def _dropped(self, reason: str) -> None:
        self.node.metrics.dropped.labels(reason).inc()

    def _parse_rtcp(self, data: bytes) -> list[Any] | None:
        """The packets of an RTCP compound; None (counted as malformed) if it is not one."""
        try:
            return rtcp.parse_rtcp(data)
        except ValueError:
            self._dropped("malformed_rtcp")
            return None

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:
        self._dropped("unexpected_rtp")

    def on_rtcp(self, data: bytes) -> None:
        pass

    def on_connected(self) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "room": self.room.name,
            "participant": self.participant.identity,
            "role": self.participant.role,
            "state": self.transport.state,
            "created_at": self.created_at,
        }


def _source_names(sections: list[MediaSection], requested: list[str]) -> list[str]:
    """camera/microphone for the first video/audio m-line, then screen, screen-audio."""
    names: list[str] = []
    seen = {"audio": 0, "video": 0}
    for i, section in enumerate(sections):
        if i < len(requested) and requested[i]:
            names.append(requested[i])
            continue
        n = seen[section.kind]
        seen[section.kind] += 1
        if section.kind == "video":
            names.append("camera" if n == 0 else f"screen{'' if n == 1 else n}")
        else:
            names.append("microphone" if n == 0 else f"screen-audio{'' if n == 1 else n}")
    return names
