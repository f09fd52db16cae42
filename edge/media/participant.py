"""Participant: one identity (from a JWT) in one room, with its sessions."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import Session


class Participant:
    def __init__(self, identity: str, role: str, region: str = "") -> None:
        self.identity = identity
        self.role = role
        self.region = region
        self.joined_at = time.time()
        self.sessions: dict[str, "Session"] = {}
        # Message connections (WebSocket, data channel) by id.
        self.connections: dict[str, object] = {}

    def describe(self) -> dict[str, object]:
        return {
            "identity": self.identity,
            "role": self.role,
            "region": self.region,
            "joined_at": self.joined_at,
            "sessions": sorted(self.sessions),
            "connections": len(self.connections),
        }
