"""Room: the participants, producers and viewers of one live show."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .participant import Participant

if TYPE_CHECKING:
    from .producer import Producer
    from .viewer_session import ViewerSession


class Room:
    def __init__(self, name: str) -> None:
        self.name = name
        self.created_at = time.time()
        self.participants: dict[str, Participant] = {}
        self.producers: dict[str, "Producer"] = {}
        self.viewers: dict[str, "ViewerSession"] = {}
        # Participants per role, kept up to date so presence costs O(1) per join.
        self.role_counts: dict[str, int] = {}

    @property
    def empty(self) -> bool:
        return not self.participants

    def participant(self, identity: str, role: str, region: str = "") -> Participant:
        p = self.participants.get(identity)
        if p is None:
            p = self.participants[identity] = Participant(identity, role, region)
            self.role_counts[role] = self.role_counts.get(role, 0) + 1
        elif role != p.role and role in ("host", "cohost") and p.role == "viewer":
            # a viewer promoted to co-host (连麦) keeps its identity
            self.role_counts["viewer"] -= 1
            self.role_counts[role] = self.role_counts.get(role, 0) + 1
            p.role = role
        return p

    def remove_participant(self, participant: Participant) -> bool:
        if self.participants.get(participant.identity) is not participant:
            return False
        del self.participants[participant.identity]
        self.role_counts[participant.role] -= 1
        return True

    def ordered_producers(self) -> list["Producer"]:
        return sorted(self.producers.values(), key=lambda p: p.rank)

    def add_producer(self, producer: "Producer") -> None:
        self.producers[producer.id] = producer
        for viewer in list(self.viewers.values()):
            viewer.fill_slots(self.ordered_producers())

    def remove_producer(self, producer: "Producer") -> None:
        if self.producers.pop(producer.id, None) is None:
            return
        affected = [c.slot.viewer for c in producer.consumers]
        for consumer in list(producer.consumers):
            consumer.slot.viewer.detach(consumer)
        producer.close()
        remaining = self.ordered_producers()
        for viewer in affected:
            if not viewer.closed:
                viewer.fill_slots(remaining)

    def add_viewer(self, viewer: "ViewerSession") -> None:
        self.viewers[viewer.id] = viewer
        viewer.fill_slots(self.ordered_producers())

    def remove_viewer(self, viewer: "ViewerSession") -> None:
        self.viewers.pop(viewer.id, None)

    def describe(self, detail: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            "name": self.name,
            "created_at": self.created_at,
            "participants": len(self.participants),
            "producers": len(self.producers),
            "viewers": len(self.viewers),
            "consumers": sum(len(p.consumers) for p in self.producers.values()),
        }
        if detail:
            out["participants"] = [p.describe() for p in self.participants.values()]
            out["producers"] = [p.describe() for p in self.ordered_producers()]
            out["consumers"] = [
                c.describe() for p in self.ordered_producers() for c in p.consumers
            ]
            out["viewers"] = [
                {
                    "session": v.id,
                    "participant": v.participant.identity,
                    "quality": v.qoe.describe(),
                }
                for v in self.viewers.values()
            ]
        return out
