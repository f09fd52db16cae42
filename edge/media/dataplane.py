"""The media data plane: per-packet fan-out, behind one small interface.

``PythonDataPlane`` is the reference implementation. A native plane (native/)
implements the same two calls and must produce byte-identical packets; the
control plane never loops over packets itself.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from .consumer import stamp_twcc
from .rtp import RtpHeader, abs_send_time, build_packet
from .rtx import restamp_twcc, rtx_packet, twcc_offset
from .twcc import TwccHistory
from .vp8 import parse_ids

if TYPE_CHECKING:
    from .consumer import Consumer, ConsumerSlot
    from .producer import Producer


class DataPlane(Protocol):
    name: str

    def forward(
        self, producer: "Producer", data: bytes, header: RtpHeader, keyframe: bool, now: float
    ) -> int:
        """Send one ingress packet to every consumer of ``producer``; return packets sent."""

    def retransmit(self, consumer: "Consumer", sequence_numbers: list[int], now: float | None = None) -> int:
        """Re-send NACKed packets from the consumer's RetransmitBuffer (as RTX when the
        slot negotiated it); return how many."""

    def twcc_history(self) -> TwccHistory:
        """A new transport-wide send history for one viewer (stamped by this plane)."""


class PythonDataPlane:
    name = "python"

    def twcc_history(self) -> TwccHistory:
        return TwccHistory()

    def forward(
        self, producer: "Producer", data: bytes, header: RtpHeader, keyframe: bool, now: float
    ) -> int:
        end = len(data) - header.padding_length
        payload = data[header.payload_offset : end]
        if not payload:  # padding-only probe packets carry nothing for a viewer
            return 0
        ast = abs_send_time(now) if producer.video else None
        level = (
            header.extensions.get(producer.audio_level_id) if producer.audio_level_id else None
        )
        ids = parse_ids(payload) if getattr(producer, "vp8", False) else None
        blocks: dict[tuple[object, ...], bytes] = {}
        marker = header.marker
        pt_in = header.payload_type
        seq_in = header.sequence_number
        ts_in = header.timestamp
        sent = 0
        for consumer in producer.consumers:
            # A payload type the consumer does not take (another codec, or the
            # plain copy of audio it gets as RED) leaves its Forwarder untouched.
            pt = consumer.pt_map.get(pt_in)
            if pt is None:
                continue
            mapped = consumer.forwarder.map(seq_in, ts_in, keyframe, now, ids, marker)
            if mapped is None:
                continue
            slot = consumer.slot
            block = blocks.get(slot.ext_key)
            if block is None:
                block = blocks[slot.ext_key] = slot.extension_block(ast, level)
            body = payload if ids is None else consumer.forwarder.vp8(payload, ids)
            twcc = slot.twcc
            if twcc is not None:
                # Transport-wide sequence, allocated and recorded at send (edge/media/twcc.py).
                block = stamp_twcc(block, twcc.send(now, 12 + len(block) + len(body)))
            packet = build_packet(
                marker=marker,
                payload_type=pt,
                sequence_number=mapped[0],
                timestamp=mapped[1],
                ssrc=consumer.ssrc,
                extension_block=block,
                payload=body,
            )
            transport = consumer.transport
            protected = transport.protect_rtp(packet)
            # With RTX the repair is built from the clear packet (edge/media/rtx.py).
            consumer.retransmit.put(mapped[0], packet if slot.rtx_ssrc is not None else protected)
            transport.send_protected(protected)
            consumer.packets += 1
            consumer.bytes += len(packet)
            sent += 1
        return sent

    def retransmit(self, consumer: "Consumer", sequence_numbers: list[int], now: float | None = None) -> int:
        served = 0
        buffer = consumer.retransmit
        transport = consumer.transport
        send = transport.send_protected
        forwarder = consumer.forwarder
        slot = consumer.slot
        rtx_ssrc = slot.rtx_ssrc
        for seq in sequence_numbers:
            if forwarder.stale(seq):
                continue
            packet = buffer.get(seq)
            if packet is None:
                continue
            if rtx_ssrc is not None:
                packet = rtx_repair(slot, packet, time.time() if now is None else now)
                if packet is None:
                    continue
                packet = transport.protect_rtp(packet)
            send(packet)
            served += 1
        return served


def rtx_repair(slot: "ConsumerSlot", clear: bytes, now: float) -> bytes | None:
    """The RTX repair of a clear packet of this slot (its TWCC sequence renewed)."""
    rtx_pt = slot.rtx_pt.get(clear[1] & 0x7F)
    if rtx_pt is None:
        return None  # a payload type without RTX is not repaired on an RTX slot
    try:
        packet = rtx_packet(clear, rtx_pt, slot.rtx_seq, slot.rtx_ssrc)  # type: ignore[arg-type]
    except ValueError:
        return None
    slot.rtx_seq = (slot.rtx_seq + 1) & 0xFFFF
    if slot.twcc is not None and slot.twcc_id:
        at = twcc_offset(packet, slot.twcc_id)
        if at is not None:
            packet = restamp_twcc(packet, at, slot.twcc.send(now, len(packet)))
    return packet


def create_dataplane(name: str) -> tuple[DataPlane, str | None]:
    """The configured plane, and a warning when it had to fall back to Python."""
    if name == "native":
        try:
            from .native_plane import NativeDataPlane
        except ImportError as exc:
            return PythonDataPlane(), f"{exc}; running the Python plane"
        return NativeDataPlane(), None
    return PythonDataPlane(), None
