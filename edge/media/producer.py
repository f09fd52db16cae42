"""Producer: one incoming track (kind, codec, SSRC) of a publishing participant."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Callable

from ..transport.webrtc import EXT_AUDIO_LEVEL, CodecInfo, MediaSection
from .keyframe import KeyframeRequester
from .stats import ReceiveStats

if TYPE_CHECKING:
    from .consumer import Consumer
    from .participant import Participant

_order = itertools.count()


class Producer:
    def __init__(
        self,
        *,
        producer_id: str,
        participant: "Participant",
        room_name: str,
        section: MediaSection,
        ssrc: int | None,
        source: str,
        send_pli: Callable[["Producer"], None],
        keyframe_interval: float,
    ) -> None:
        self.id = producer_id
        self.participant = participant
        self.room_name = room_name
        self.kind = section.kind
        self.video = section.kind == "video"
        self.mid = section.mid
        self.source = source  # "camera" | "microphone" | "screen" | ...
        self.ssrc = ssrc  # None until learnt from the first packet (no a=ssrc)
        self.codecs = {c.payload_type: c for c in section.codecs}
        self.rtx_payload_types = {
            c.rtx_payload_type: c.payload_type for c in section.codecs if c.rtx_payload_type
        }
        self.codec: CodecInfo = section.codecs[0]
        self.audio_level_id = section.extensions.get(EXT_AUDIO_LEVEL)
        self.nack_enabled = "nack" in self.codec.feedback
        self.consumers: list["Consumer"] = []
        self.stats = ReceiveStats(self.codec.clock_rate)
        self.keyframes = KeyframeRequester(lambda: send_pli(self), keyframe_interval)
        self.keyframes_seen = 0
        self.created_at = time.time()
        self.order = next(_order)
        self.closed = False

    @property
    def rank(self) -> tuple[int, int]:
        """Slot priority for viewers: the host before co-hosts, older tracks first."""
        role_rank = {"host": 0, "cohost": 1}.get(self.participant.role, 2)
        return (role_rank, self.order)

    def set_codec(self, payload_type: int) -> bool:
        codec = self.codecs.get(payload_type)
        if codec is None:
            return False
        self.codec = codec
        self.stats.clock_rate = codec.clock_rate
        return True

    def describe(self) -> dict[str, object]:
        s = self.stats
        return {
            "id": self.id,
            "participant": self.participant.identity,
            "kind": self.kind,
            "source": self.source,
            "mid": self.mid,
            "ssrc": self.ssrc,
            "codec": self.codec.name,
            "consumers": len(self.consumers),
            "packets": s.packets,
            "bytes": s.bytes,
            "packets_lost": s.lost,
            "jitter": int(s.jitter),
            "keyframes": self.keyframes_seen,
            "keyframe_requests": self.keyframes.requests,
            "pli_sent": self.keyframes.sent,
        }

    def close(self) -> None:
        self.closed = True
        self.keyframes.close()
