"""Producer: one incoming track (kind, codec, SSRC) of a publishing participant."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Callable

from ..transport.webrtc import EXT_AUDIO_LEVEL, CodecInfo, MediaSection
from .keyframe import KeyframeRequester
from .nack import NackTracker
from .simulcast import Layer
from .stats import ReceiveStats

from .red_receive import RedReceiver

if TYPE_CHECKING:
    from .consumer import Consumer
    from .red import RedSource
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
        send_layer_pli: Callable[[Layer], None] | None = None,
    ) -> None:
        self.id = producer_id
        self.participant = participant
        self.room_name = room_name
        self.kind = section.kind
        self.video = section.kind == "video"
        self.mid = section.mid
        self.source = source  # "camera" | "microphone" | "screen" | ...
        self.ssrc = ssrc  # None until learnt from the first packet (no a=ssrc)
        # RED from the publisher is unwrapped at ingress (edge/media/red_receive.py):
        # the producer's codecs are what it carries.
        codecs = [c for c in section.codecs if c.name != "red"] or section.codecs
        self.codecs = {c.payload_type: c for c in codecs}
        self.rtx_payload_types = {
            c.rtx_payload_type: c.payload_type for c in codecs if c.rtx_payload_type
        }
        self.codec: CodecInfo = codecs[0]
        red = next((c for c in section.codecs if c.name == "red" and c is not codecs[0]), None)
        self.red_payload_type = red.payload_type if red is not None else None
        self.red_receiver = RedReceiver(set(self.codecs)) if red is not None else None
        self.audio_level_id = section.extensions.get(EXT_AUDIO_LEVEL)
        self.nack_enabled = "nack" in self.codec.feedback
        self.consumers: list["Consumer"] = []
        # Audio: the RED copies of this stream for viewers that negotiated RED,
        # by (their Opus PT, redundancy distance) (edge/media/red.py); their
        # consumers are also in ``consumers``.
        self.red: dict[tuple[int, int], "RedSource"] = {}
        # Consumers attached but not started yet: their join time is stamped
        # at the keyframe they start on.
        self.joining: list["Consumer"] = []
        self.stats = ReceiveStats(self.codec.clock_rate)
        self.nacks = NackTracker()
        self.keyframes = KeyframeRequester(lambda: send_pli(self), keyframe_interval)
        self.keyframes_seen = 0
        # Simulcast: one Layer per rid, lowest quality first; each is a
        # forwarding source of its own and ``consumers`` lists them all.
        self.layers: list[Layer] = [
            Layer(
                rid=rid,
                index=i,
                clock_rate=self.codec.clock_rate,
                send_pli=send_layer_pli or (lambda layer: None),
                keyframe_interval=keyframe_interval,
            )
            for i, rid in enumerate(section.rids)
        ]
        for layer in self.layers:
            layer.producer = self
        self.layer_by_rid = {layer.rid: layer for layer in self.layers}
        self.created_at = time.time()
        self._rate = 0
        self._measured: tuple[float, int] | None = None
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

    def bitrate(self, now: float) -> int:
        """Ingress bit/s (RTP bytes), measured over at least 0.5 s; 0 until then."""
        packets, octets = self.packets_in()
        if self._measured is None:
            self._measured = (now, octets)
        elif now - self._measured[0] >= 0.5:
            self._rate = int((octets - self._measured[1]) * 8 / (now - self._measured[0]))
            self._measured = (now, octets)
        return self._rate

    @property
    def vp8(self) -> bool:
        """Packets need VP8 PictureID/TL0PICIDX continuity per consumer (edge/media/vp8.py)."""
        return self.video and self.codec.name == "vp8"

    @property
    def simulcast(self) -> bool:
        return bool(self.layers)

    def packets_in(self) -> tuple[int, int]:
        """(packets, bytes) received, over all layers."""
        if self.layers:
            return (
                sum(layer.stats.packets for layer in self.layers),
                sum(layer.stats.bytes for layer in self.layers),
            )
        return self.stats.packets, self.stats.bytes

    def describe(self) -> dict[str, object]:
        s = self.stats
        packets, octets = self.packets_in()
        now = time.time()
        return {
            "id": self.id,
            "participant": self.participant.identity,
            "kind": self.kind,
            "source": self.source,
            "mid": self.mid,
            "ssrc": self.ssrc,
            "codec": self.codec.name,
            "consumers": len(self.consumers),
            "packets": packets,
            "bytes": octets,
            "packets_lost": s.lost + sum(layer.stats.lost for layer in self.layers),
            "jitter": int(s.jitter),
            "keyframes": self.keyframes_seen,
            "keyframe_requests": self.keyframes.requests,
            "pli_sent": self.keyframes.sent + sum(layer.keyframes.sent for layer in self.layers),
            "simulcast": [layer.describe(now) for layer in self.layers],
            # The publisher's RED (red_receive.py): None when it did not negotiate it.
            "red": None
            if self.red_receiver is None
            else {"packets": self.red_receiver.packets, "recovered": self.red_receiver.recovered},
        }

    def close(self) -> None:
        self.closed = True
        self.keyframes.close()
        for layer in self.layers:
            layer.close()
