"""Consumer: one viewer's copy of one producer, and the slot it plays in.

A viewer's WHEP offer carries m-lines (slots). Each slot has a fixed outgoing
SSRC, payload-type map and extension layout, a Forwarder and a
RetransmitBuffer; the producer feeding it can change (the host leaves, a
co-host's camera takes the slot) without renegotiation, and the Forwarder keeps
the stream continuous across the change.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import TYPE_CHECKING

from ..transport.webrtc import (
    EXT_ABS_SEND_TIME,
    EXT_AUDIO_LEVEL,
    EXT_MID,
    EXT_PLAYOUT_DELAY,
    EXT_TRANSPORT_CC,
    MediaSection,
    WebRtcTransport,
)
from .forwarder import Forwarder
from .retransmit import RetransmitBuffer
from .simulcast import Layer, LayerSelector
from .temporal import TemporalPolicy
from .rtp import serialize_extensions

if TYPE_CHECKING:
    from .producer import Producer
    from .red import RedSource
    from .twcc import TwccHistory
    from .viewer_session import ViewerSession

_ids = itertools.count(1)

# Packets a consumer may have retransmitted per second (a 2.5 Mbit/s stream is
# ~250 packets/s: this allows every packet twice over, no more).
NACK_BUDGET_PER_SECOND = 500
# With an estimate of the viewer's link, repairs may take this share of it:
# retransmitting a lost keyframe burst at line rate into a link that just
# became congested is what turns a loss into a multi-second freeze.
NACK_SHARE_OF_ESTIMATE = 0.4
NACK_BUDGET_FLOOR = 20


def nack_budget(estimate: int | None) -> int:
    """Retransmissions a consumer may have per second, for a viewer whose link is
    estimated at ``estimate`` bit/s (None: not known yet)."""
    if estimate is None:
        return NACK_BUDGET_PER_SECOND
    packets = int(estimate * NACK_SHARE_OF_ESTIMATE / (8 * 1200))
    return max(NACK_BUDGET_FLOOR, min(NACK_BUDGET_PER_SECOND, packets))


class ConsumerSlot:
    def __init__(self, viewer: "ViewerSession", section: MediaSection, buffer_packets: int) -> None:
        self.viewer = viewer
        self.section = section
        self.kind = section.kind
        self.ssrc = section.local_ssrc
        self.forwarder = Forwarder(
            video=section.kind == "video", clock_rate=section.codecs[0].clock_rate
        )
        self.retransmit = RetransmitBuffer(buffer_packets)
        self.consumer: Consumer | None = None
        ext = section.extensions
        self.mid_id = ext.get(EXT_MID)
        self.ast_id = ext.get(EXT_ABS_SEND_TIME)
        self.level_id = ext.get(EXT_AUDIO_LEVEL)
        self.pd_id = ext.get(EXT_PLAYOUT_DELAY)
        self.twcc_id = ext.get(EXT_TRANSPORT_CC)
        # The viewer's transport-wide history every packet is stamped from
        # (edge/media/twcc.py), once the viewer negotiated transport-cc.
        self.twcc: "TwccHistory | None" = None
        # The playout-delay value every packet carries (edge/media/playout.py); None = none.
        self.playout_delay: bytes | None = None
        # RTX (edge/media/rtx.py): the SSRC, the RTX payload type of each of this
        # slot's payload types, and the RTX stream's next sequence number. With
        # RTX the retransmit buffer keeps clear packets (an RTX packet is built
        # from one), else protected ones.
        rtx_pt = {c.payload_type: c.rtx_payload_type for c in section.codecs if c.rtx_payload_type is not None}
        self.rtx_ssrc = section.local_rtx_ssrc if section.kind == "video" and rtx_pt else None
        self.rtx_pt = rtx_pt if self.rtx_ssrc is not None else {}
        self.rtx_seq = random.getrandbits(16)
        # The RED payload type this viewer negotiated for audio (edge/media/red.py).
        red = next((c for c in section.codecs if c.name == "red"), None)
        self.red_pt = red.payload_type if red is not None else None
        # Consumers with equal keys can share one extension block per packet
        # (with TWCC, a template whose sequence is patched per packet).
        self.ext_key: tuple[object, ...] = (self.mid_id, section.mid, self.ast_id, self.level_id, None, None)

    def set_playout_delay(self, value: bytes) -> None:
        """Carry this playout-delay value on every packet from now on (both planes)."""
        if not self.pd_id:
            return
        self.playout_delay = value
        self.ext_key = (*self.ext_key[:4], value, self.ext_key[5])
        native = getattr(self.forwarder, "set_playout_delay", None)
        if native is not None:
            native(self.pd_id, value)

    def set_twcc(self, history: "TwccHistory") -> None:
        """Stamp every packet with a transport-wide sequence from ``history`` (both planes)."""
        if not self.twcc_id:
            return
        self.twcc = history
        self.ext_key = (*self.ext_key[:5], self.twcc_id)
        native = getattr(self.forwarder, "set_twcc", None)
        if native is not None:
            native(self.twcc_id, history)

    def payload_type_map(self, producer: "Producer") -> dict[int, int]:
        """Producer PT -> this slot's PT, for every codec both sides negotiated."""
        mapping: dict[int, int] = {}
        for pt, codec in producer.codecs.items():
            for mine in self.section.codecs:
                if mine.name != codec.name or mine.clock_rate != codec.clock_rate:
                    continue
                if codec.name == "h264" and str(mine.parameters.get("packetization-mode", "0")) != str(
                    codec.parameters.get("packetization-mode", "0")
                ):
                    continue
                mapping[pt] = mine.payload_type
                break
        return mapping

    def accepts(self, producer: "Producer") -> bool:
        return producer.kind == self.kind and producer.codec.payload_type in self.payload_type_map(producer)

    def extension_block(self, abs_send_time: bytes | None, audio_level: bytes | None) -> bytes:
        """The block every packet of this slot carries. With TWCC, its sequence is
        the first element, zero here: ``stamp_twcc`` patches it per packet."""
        elements: dict[int, bytes] = {}
        if self.twcc is not None and self.twcc_id:
            elements[self.twcc_id] = b"\0\0"
        if self.mid_id:
            elements[self.mid_id] = self.section.mid.encode()
        if self.ast_id and abs_send_time is not None:
            elements[self.ast_id] = abs_send_time
        if self.level_id and audio_level is not None:
            elements[self.level_id] = audio_level
        if self.pd_id and self.playout_delay is not None:
            elements[self.pd_id] = self.playout_delay
        return serialize_extensions(elements)


def stamp_twcc(block: bytes, sequence: int) -> bytes:
    """``block`` (from ``extension_block``, TWCC first) carrying ``sequence``."""
    at = 5 if block[0] == 0xBE else 6  # after the 4-byte header and a 1- or 2-byte element header
    return block[:at] + (sequence & 0xFFFF).to_bytes(2, "big") + block[at + 2 :]


class Consumer:
    __slots__ = (
        "id",
        "producer",
        "slot",
        "transport",
        "ssrc",
        "pt_map",
        "forwarder",
        "retransmit",
        "packets",
        "bytes",
        "nack_requests",
        "nacked_packets",
        "retransmitted",
        "pli_requests",
        "remb_bitrate",
        "fraction_lost",
        "jitter",
        "rtt",
        "last_sr",
        "last_sr_time",
        "nack_budget",
        "layer",
        "target",
        "selector",
        "temporal",
        "layer_switches",
        "bitrate",
        "bytes_at_tick",
        "packets_at_tick",
        "nacks_at_tick",
        "nack_ratio",
        "attached_at",
        "quality",
        "red",
        "closed",
    )

    def __init__(self, producer: "Producer", slot: ConsumerSlot, transport: WebRtcTransport) -> None:
        self.id = f"c{next(_ids)}"
        self.producer = producer
        self.slot = slot
        self.transport = transport
        self.ssrc = slot.ssrc
        self.pt_map = slot.payload_type_map(producer)
        self.forwarder = slot.forwarder
        self.retransmit = slot.retransmit
        self.packets = 0
        self.bytes = 0
        self.nack_requests = 0  # sequence numbers in the viewer's NACKs (repeats too)
        self.nacked_packets = 0  # distinct sent packets it NACKed: its loss
        self.retransmitted = 0
        self.pli_requests = 0
        self.remb_bitrate: int | None = None
        self.fraction_lost = 0.0
        self.jitter = 0
        self.rtt: float | None = None
        self.last_sr = 0
        self.last_sr_time = 0.0
        # Retransmissions this consumer may still ask for in the current second:
        # NACKs cost the node a send each, so a viewer cannot turn them into a flood.
        self.nack_budget = NACK_BUDGET_PER_SECOND
        # Simulcast: the layer forwarded now, the one waited for (switch at its
        # next keyframe), and the policy choosing between them.
        self.layer: Layer | None = None
        self.target: Layer | None = None
        self.selector: LayerSelector | None = LayerSelector() if producer.simulcast else None
        # The VP8 temporal-layer cap, the first step down (edge/media/temporal.py).
        self.temporal = TemporalPolicy()
        self.layer_switches = 0
        self.bitrate = 0  # bit/s sent to the viewer, measured each tick
        self.bytes_at_tick = 0
        self.packets_at_tick = 0
        self.nacks_at_tick = 0
        # Distinct packets NACKed per packet sent, over the last tick: the
        # viewer's loss seen a second before its receiver report says it.
        self.nack_ratio = 0.0
        self.attached_at = time.time()
        self.quality: dict[str, object] = {}
        self.red: "RedSource | None" = None  # audio sent as RED, from this source (edge/media/red.py)
        self.closed = False

    @property
    def loss(self) -> float:
        return max(self.fraction_lost, self.nack_ratio)

    def request_keyframe(self) -> None:
        """A keyframe of what this consumer is (or is about to be) forwarded from."""
        source = self.target or self.layer
        if source is not None:
            source.keyframes.request()
        else:
            self.producer.keyframes.request()

    def retarget(self, layer: "Layer") -> bool:
        """Switch to ``layer`` at its next keyframe; False if already there or on the way."""
        if layer is self.target:
            return False
        if self.target is not None and self in self.target.pending:
            self.target.pending.remove(self)
        if layer is self.layer:
            self.target = None
            return False
        self.target = layer
        layer.pending.append(self)
        layer.keyframes.request()
        return True

    def leave_layers(self) -> None:
        for layer in (self.layer, self.target):
            if layer is None:
                continue
            if self in layer.consumers:
                layer.consumers.remove(self)
            if self in layer.pending:
                layer.pending.remove(self)
        self.layer = self.target = None

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "producer": self.producer.id,
            "viewer": self.slot.viewer.participant.identity,
            "session": self.slot.viewer.id,
            "mid": self.slot.section.mid,
            "ssrc": self.ssrc,
            "kind": self.producer.kind,
            "waiting_for_keyframe": self.forwarder.waiting_for_keyframe,
            "packets": self.packets,
            "bytes": self.bytes,
            "nack_requests": self.nack_requests,
            "nacked_packets": self.nacked_packets,
            "retransmitted": self.retransmitted,
            "pli_requests": self.pli_requests,
            "remb_bitrate": self.remb_bitrate,
            "fraction_lost": round(self.fraction_lost, 4),
            "jitter": self.jitter,
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 1),
            "bitrate": self.bitrate,
            "layer": None if self.layer is None else self.layer.rid,
            "target_layer": None if self.target is None else self.target.rid,
            "temporal_cap": self.forwarder.tid_target,
            "temporal_layer": self.forwarder.tid,
            "layer_switches": self.layer_switches,
            "quality": self.quality,
        }
