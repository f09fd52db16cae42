"""Sessions: a WHIP publisher or a WHEP viewer bound to one WebRtcTransport.

A PublisherSession turns the publisher's m-lines into Producers and routes its
RTP (by SSRC, then MID) into the data plane; it answers with receiver reports,
REMB, NACKs and throttled PLIs. A ViewerSession owns consumer slots (its
m-lines) and handles the viewer's RTCP: NACKs are served from the slot's
RetransmitBuffer, PLI/FIR become keyframe requests, RR/REMB update the stats.
"""

from __future__ import annotations

import random
import secrets
import time
from typing import TYPE_CHECKING, Any

from ..observability.logging import get_logger
from ..transport.simulcast_sdp import EXT_REPAIRED_RID, EXT_RID
from ..transport.webrtc import EXT_MID, MediaSection, WebRtcTransport
from . import rtcp
from .codecs import is_keyframe
from .consumer import Consumer, ConsumerSlot, nack_budget
from .producer import Producer
from .nack import NackTracker
from .retransmit import buffer_size
from .playout import LOSS_THRESHOLD, PlayoutDelay
from .qoe import ViewerQoe
from .red import LOSS_FOR_ONE, RedPolicy, RedSource, affordable, unused_payload_type
from .simulcast import Layer
from .rtp import RtpHeader, seq_diff, unwrap_rtx

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


class PublisherSession(Session):
    kind = "whip"

    def __init__(self, *args: object, sources: list[str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.producers: list[Producer] = []
        self._by_ssrc: dict[int, Producer] = {}
        self._by_mid: dict[str, Producer] = {}
        self._rtx: dict[int, Producer] = {}
        self._mid_ext: dict[str, int] = {}
        # Simulcast layers by their SSRC and their RTX SSRC (learnt from rid /
        # repaired-rid), and the ids of those extensions.
        self._simulcast: list[Producer] = []
        self._layers: dict[int, Layer] = {}
        self._layer_rtx: dict[int, Layer] = {}
        self._rid_ext: int | None = None
        self._rrid_ext: int | None = None
        # The native plane's one-call RTP parser for known streams (None: Python parsing).
        make_parser = getattr(self.node.dataplane, "rtp_parser", None)
        self._fast: Any = make_parser(self.transport.sections) if make_parser else None
        names = _source_names(self.transport.sections, sources or [])
        interval = self.node.config.media.keyframe_min_interval_ms / 1000.0
        for section, source in zip(self.transport.sections, names):
            ssrc = section.remote_ssrcs[0] if section.remote_ssrcs else None
            producer = Producer(
                producer_id=f"{self.id[:8]}-{section.mid}",
                participant=self.participant,
                room_name=self.room.name,
                section=section,
                ssrc=ssrc,
                source=source,
                send_pli=self._send_pli,
                keyframe_interval=interval,
                send_layer_pli=self._send_layer_pli,
            )
            self.producers.append(producer)
            self._by_mid[section.mid] = producer
            if producer.simulcast:
                self._simulcast.append(producer)
                self._rid_ext = section.extensions.get(EXT_RID)
                self._rrid_ext = section.extensions.get(EXT_REPAIRED_RID)
            if ssrc is not None:
                self._by_ssrc[ssrc] = producer
            for rtx_ssrc, media_ssrc in section.remote_rtx.items():
                if media_ssrc == ssrc:
                    self._rtx[rtx_ssrc] = producer
            if EXT_MID in section.extensions:
                self._mid_ext[section.mid] = section.extensions[EXT_MID]
        self._mid_ext_id = next(iter(self._mid_ext.values()), None)
        # A recorder's tap (edge.recording.RoomRecording) while the room is recorded:
        # tap.rtp() is an O(1) in-memory append; a writer thread does the file I/O.
        self.tap: Any = None

    def on_connected(self) -> None:
        for producer in self.producers:
            self.room.add_producer(producer)
            self.node.plugins_producer_added(producer)

    # ingress ----------------------------------------------------------------

    def _learn_layer(self, header: RtpHeader) -> Layer | None:
        """A packet from an unknown SSRC carrying a rid or repaired-rid: which layer."""
        ext = header.extensions
        mid = ext.get(self._mid_ext_id) if self._mid_ext_id is not None else None
        if mid is not None:
            producer = self._by_mid.get(mid.decode(errors="replace"))
        elif len(self._simulcast) == 1:
            producer = self._simulcast[0]
        else:
            producer = None
        if producer is None or not producer.simulcast:
            return None
        rid = ext.get(self._rid_ext) if self._rid_ext is not None else None
        if rid is not None:
            layer = producer.layer_by_rid.get(rid.decode(errors="replace"))
            if layer is not None and layer.ssrc is None and header.payload_type in producer.codecs:
                layer.ssrc = header.ssrc
                self._layers[header.ssrc] = layer
                return layer
            return None
        rrid = ext.get(self._rrid_ext) if self._rrid_ext is not None else None
        if rrid is not None and header.payload_type in producer.rtx_payload_types:
            layer = producer.layer_by_rid.get(rrid.decode(errors="replace"))
            if layer is not None and layer.rtx_ssrc is None:
                layer.rtx_ssrc = header.ssrc
                self._layer_rtx[header.ssrc] = layer
        return None

    def _learn(self, header: RtpHeader) -> Producer | None:
        """A packet from an SSRC the SDP did not announce: route it by MID."""
        if self._mid_ext_id is None:
            return None
        mid = header.extensions.get(self._mid_ext_id)
        if mid is None:
            return None
        producer = self._by_mid.get(mid.decode(errors="replace"))
        if producer is None or producer.simulcast:
            return None
        if producer.ssrc is None and header.payload_type in producer.codecs:
            producer.ssrc = header.ssrc
            self._by_ssrc[header.ssrc] = producer
            return producer
        if header.payload_type in producer.rtx_payload_types and header.ssrc not in self._rtx:
            self._rtx[header.ssrc] = producer
        return None

    def on_rtp(self, data: bytes, arrival_ms: int) -> None:
        fast = self._fast
        if fast is not None:
            # The native plane parses header, extensions and keyframe in one C
            # call; a packet of a known stream is handled from that tuple.
            try:
                parsed = fast.parse(data)
            except ValueError:
                self._dropped("malformed_rtp")
                return
            ssrc, payload_type = parsed[6], parsed[3]
            producer = self._by_ssrc.get(ssrc)
            if producer is not None and payload_type == producer.codec.payload_type:
                now = time.time()
                self._producer_packet(producer, data, parsed[4], parsed[5], parsed[13], now)
                if producer.consumers:
                    self.node.dataplane.forward_parsed(producer, data, parsed, now)
                    for red in producer.red.values():
                        if red.consumers:
                            self._forward_red(red, data, parsed[0], parsed[1], parsed[4], parsed[5], now)
                if self.tap is not None:
                    self.tap.rtp(producer, data, now)
                return
            layer = self._layers.get(ssrc)
            if layer is not None and payload_type == layer.producer.codec.payload_type:  # type: ignore[attr-defined]
                now = time.time()
                self._layer_packet(layer, data, parsed[4], parsed[5], parsed[13], now)
                if layer.consumers:
                    self.node.dataplane.forward_parsed(layer, data, parsed, now)
                self._tap_layer(layer, data, now)
                return
            # Anything else (an SSRC to learn, RTX, a codec change): the general path.
        try:
            header = RtpHeader.parse(data)
        except ValueError:
            self._dropped("malformed_rtp")
            return
        producer = self._by_ssrc.get(header.ssrc)
        if producer is None and self._simulcast:
            layer = self._layers.get(header.ssrc)
            if layer is None and header.ssrc not in self._layer_rtx:
                layer = self._learn_layer(header)
            if layer is not None or header.ssrc in self._layer_rtx:
                self._layer_rtp(layer, data, header)
                return
        if producer is None:
            rtx_of = self._rtx.get(header.ssrc)
            if rtx_of is None:
                producer = self._learn(header)
                rtx_of = self._rtx.get(header.ssrc)
            if producer is None and rtx_of is not None:
                unwrapped = self._unwrap_rtx(rtx_of, rtx_of.ssrc, data, header)
                if unwrapped is None:
                    return
                data, header = unwrapped
                producer = rtx_of
            if producer is None:
                self._dropped("unknown_ssrc")
                return
        if header.payload_type != producer.codec.payload_type and not producer.set_codec(
            header.payload_type
        ):
            self._dropped("unknown_payload_type")
            return
        now = time.time()
        keyframe = producer.video and is_keyframe(producer.codec.name, data[header.payload_offset :])
        self._producer_packet(producer, data, header.sequence_number, header.timestamp, keyframe, now)
        if producer.consumers:
            self.node.dataplane.forward(producer, data, header, keyframe, now)
            for red in producer.red.values():
                if red.consumers:
                    self._forward_red(
                        red, data, header.payload_offset, header.padding_length,
                        header.sequence_number, header.timestamp, now,
                    )
        if self.tap is not None:
            self.tap.rtp(producer, data, now)

    def _forward_red(
        self, red: RedSource, data: bytes, offset: int, padding: int, seq: int, ts: int, now: float
    ) -> None:
        """The RED copy of an Opus packet, to the consumers that take RED (edge/media/red.py)."""
        if len(data) - padding <= offset:
            return
        packet = red.wrap(data, offset, padding, seq, ts)
        self.node.dataplane.forward(red, packet, RtpHeader.parse(packet), False, now)

    def _producer_packet(
        self, producer: Producer, data: bytes, seq: int, timestamp: int, keyframe: bool, now: float
    ) -> None:
        """Receive bookkeeping of a single-stream producer's packet: stats, NACKs, keyframes."""
        missing = producer.stats.add(seq, timestamp, len(data), now)
        if producer.nack_enabled:
            self._nack(producer.ssrc, producer.nacks, seq, missing, now)  # type: ignore[arg-type]
        if keyframe:
            producer.keyframes_seen += 1
            if producer.joining:
                for consumer in producer.joining:
                    consumer.slot.viewer.qoe.started(consumer, now)
                producer.joining.clear()

    def _layer_packet(
        self, layer: Layer, data: bytes, seq: int, timestamp: int, keyframe: bool, now: float
    ) -> None:
        """The same for a simulcast layer; a keyframe moves the consumers waiting for it."""
        producer: Producer = layer.producer  # type: ignore[assignment]
        layer.last_packet = now
        missing = layer.stats.add(seq, timestamp, len(data), now)
        if producer.nack_enabled:
            self._nack(layer.ssrc, layer.nacks, seq, missing, now)  # type: ignore[arg-type]
        if keyframe:
            layer.keyframes_seen += 1
            producer.keyframes_seen += 1
            if layer.pending:
                self._switch_to(layer)

    def _tap_layer(self, layer: Layer, data: bytes, now: float) -> None:
        producer: Producer = layer.producer  # type: ignore[assignment]
        if self.tap is not None and layer is producer.layers[-1]:
            # Recordings keep the top layer (one SSRC per recorded track).
            self.tap.rtp(producer, data, now)

    def _unwrap_rtx(
        self, producer: Producer, ssrc: int | None, data: bytes, header: RtpHeader
    ) -> tuple[bytes, RtpHeader] | None:
        """An RTX packet (RFC 4588) as the original packet of ``ssrc``; None if dropped."""
        apt = producer.rtx_payload_types.get(header.payload_type)
        if apt is None or ssrc is None:
            self._dropped("unknown_payload_type")
            return None
        try:
            data = unwrap_rtx(data, header, payload_type=apt, ssrc=ssrc)
            return data, RtpHeader.parse(data)
        except ValueError:
            self._dropped("malformed_rtx")
            return None

    def _layer_rtp(self, layer: Layer | None, data: bytes, header: RtpHeader) -> None:
        """A packet of a simulcast layer (or of its RTX stream, when ``layer`` is None)."""
        if layer is None:
            layer = self._layer_rtx[header.ssrc]
            unwrapped = self._unwrap_rtx(layer.producer, layer.ssrc, data, header)  # type: ignore[arg-type]
            if unwrapped is None:
                return
            data, header = unwrapped
        producer: Producer = layer.producer  # type: ignore[assignment]
        if header.payload_type != producer.codec.payload_type and not producer.set_codec(
            header.payload_type
        ):
            self._dropped("unknown_payload_type")
            return
        now = time.time()
        keyframe = is_keyframe(producer.codec.name, data[header.payload_offset :])
        self._layer_packet(layer, data, header.sequence_number, header.timestamp, keyframe, now)
        if layer.consumers:
            self.node.dataplane.forward(layer, data, header, keyframe, now)
        self._tap_layer(layer, data, now)

    def _switch_to(self, layer: Layer) -> None:
        """Consumers waiting for this layer move to it on this keyframe."""
        clock_rate = layer.producer.codec.clock_rate  # type: ignore[attr-defined]
        metrics = self.node.metrics
        for consumer in layer.pending:
            if consumer.closed:
                continue
            previous = consumer.layer
            if previous is not None and consumer in previous.consumers:
                previous.consumers.remove(consumer)
            consumer.forwarder.switch(layer, clock_rate)
            layer.consumers.append(consumer)
            consumer.layer = layer
            consumer.target = None
            if previous is None:
                consumer.slot.viewer.qoe.started(consumer, time.time())
            else:
                consumer.layer_switches += 1
                metrics.layer_switches.labels("up" if layer.index > previous.index else "down").inc()
        layer.pending.clear()

    def on_rtcp(self, data: bytes) -> None:
        try:
            packets = rtcp.parse_rtcp(data)
        except ValueError:
            self._dropped("malformed_rtcp")
            return
        for packet in packets:
            if isinstance(packet, rtcp.SenderReport):
                producer = self._by_ssrc.get(packet.ssrc)
                if producer is not None:
                    self._sender_report(producer, packet)
                    continue
                layer = self._layers.get(packet.ssrc)
                if layer is not None:
                    self._sender_report(layer, packet)

    def _sender_report(self, producer: Producer | Layer, report: rtcp.SenderReport) -> None:
        """Translate the publisher's SR for each consumer: same NTP time, its own RTP clock.

        Every consumer of the publisher's audio and video keeps the publisher's
        NTP<->RTP mapping (shifted by its timestamp offset), so lip sync holds.
        """
        now = time.time()
        producer.stats.last_sr = rtcp.ntp_middle(report.ntp_timestamp)
        producer.stats.last_sr_time = now
        if self.tap is not None and isinstance(producer, Producer):
            self.tap.sender_report(producer, report.ntp_timestamp, report.rtp_timestamp, now)
        elif self.tap is not None and producer is producer.producer.layers[-1]:  # type: ignore[union-attr]
            self.tap.sender_report(producer.producer, report.ntp_timestamp, report.rtp_timestamp, now)  # type: ignore[union-attr]
        for consumer in producer.consumers:
            if not consumer.forwarder.started or consumer.forwarder.source is not producer:
                continue
            sr = rtcp.SenderReport(
                ssrc=consumer.ssrc,
                ntp_timestamp=report.ntp_timestamp,
                rtp_timestamp=(report.rtp_timestamp + consumer.forwarder.ts_offset) & 0xFFFFFFFF,
                packet_count=consumer.packets & 0xFFFFFFFF,
                octet_count=consumer.bytes & 0xFFFFFFFF,
                reports=[],
            )
            consumer.last_sr = rtcp.ntp_middle(report.ntp_timestamp)
            consumer.last_sr_time = now
            sdes = rtcp.SourceDescription.cname(consumer.ssrc, consumer.slot.viewer.cname)
            consumer.transport.send_rtcp(bytes(sr) + bytes(sdes))

    # feedback upstream ---------------------------------------------------------

    def _send_pli(self, producer: Producer) -> None:
        if producer.ssrc is None or self.closed:
            return
        self.transport.send_rtcp(bytes(rtcp.Pli(sender_ssrc=self.rtcp_ssrc, media_ssrc=producer.ssrc)))
        self.node.metrics.pli_sent.inc()

    def _send_layer_pli(self, layer: Layer) -> None:
        if layer.ssrc is None or self.closed:
            return
        self.transport.send_rtcp(bytes(rtcp.Pli(sender_ssrc=self.rtcp_ssrc, media_ssrc=layer.ssrc)))
        self.node.metrics.pli_sent.inc()

    def _nack(self, ssrc: int, tracker: NackTracker, seq: int, missing: list[int], now: float) -> None:
        """Upstream NACKs for a stream: new gaps at once, retries when due."""
        if tracker.pending:
            tracker.arrived(seq, now)
        ask = tracker.missing(missing, now) if missing else []
        if tracker.pending and now >= tracker.next_due:
            again = tracker.due(now)
            if again:
                self.node.metrics.nack_retries.inc(len(again))
                ask = ask + again
        if ask:
            self._send_nack(ssrc, ask)

    def _send_nack(self, ssrc: int, missing: list[int]) -> None:
        nack = rtcp.Nack(sender_ssrc=self.rtcp_ssrc, media_ssrc=ssrc, lost=missing)
        self.transport.send_rtcp(bytes(nack))
        self.node.metrics.nack_sent.inc(len(missing))

    def tick(self, now: float) -> None:
        """Once a second: receiver reports and the REMB cap for every producer."""
        if not self.transport.connected.is_set() or self.closed:
            return
        for producer in self._simulcast:
            for layer in producer.layers:
                layer.measure(now)
        live: list[Producer | Layer] = [
            p for p in self.producers if p.ssrc is not None and p.stats.base_seq is not None
        ]
        live += [layer for layer in self._layers.values() if layer.stats.base_seq is not None]
        if not live:
            return
        # At most 31 report blocks fit one RR (5-bit count).
        rr = rtcp.ReceiverReport(
            ssrc=self.rtcp_ssrc, reports=[p.stats.report_block(p.ssrc, now) for p in live[:31]]  # type: ignore[arg-type]
        )
        packet = bytes(rr)
        video = [p.ssrc for p in live if p.video]
        if video:
            remb = rtcp.Remb(
                sender_ssrc=self.rtcp_ssrc,
                bitrate=self.node.config.media.max_publish_bitrate,
                ssrcs=video,  # type: ignore[arg-type]
            )
            packet += bytes(remb)
        self.transport.send_rtcp(packet)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for producer in self.producers:
            if producer.id in self.room.producers:
                self.room.remove_producer(producer)
                self.node.retire_producer(producer)
                self.node.plugins_producer_removed(producer)
            producer.close()

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["producers"] = [p.describe() for p in self.producers]
        out["ingress_parser"] = "python" if self._fast is None else "native"
        return out


def _red_copy(producer: Producer, opus_pt: int, distance: int) -> RedSource:
    red = producer.red.get((opus_pt, distance))
    if red is None:
        # One node-internal PT for all of a producer's RED copies: a consumer
        # moving between distances keeps its payload-type map.
        red = producer.red[(opus_pt, distance)] = RedSource(
            producer, unused_payload_type(set(producer.codecs)), opus_pt, distance, producer.audio_level_id
        )
    return red


class ViewerSession(Session):
    kind = "whep"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        size = buffer_size(self.node.config.media.retransmit_buffer_packets)
        self.slots = [ConsumerSlot(self, s, size) for s in self.transport.sections]
        self._by_ssrc = {slot.ssrc: slot for slot in self.slots}
        self.cname = secrets.token_hex(8)
        self.qoe = ViewerQoe(self)
        media = self.node.config.media
        self.playout = PlayoutDelay(media.playout_delay_max_ms, media.playout_delay_start_ms)
        self.red_policy = RedPolicy(media.audio_red_distance)
        self._apply_playout_delay()
        self._burst_checked = 0.0

    def on_connected(self) -> None:
        self.room.add_viewer(self)

    # slot management -------------------------------------------------------------

    def fill_slots(self, producers: list[Producer]) -> None:
        if self.closed or not self.transport.connected.is_set():
            return
        taken = {slot.consumer.producer.id for slot in self.slots if slot.consumer}
        for slot in self.slots:
            if slot.consumer is not None:
                continue
            for producer in producers:
                if producer.id in taken or producer.closed or not slot.accepts(producer):
                    continue
                self._attach(slot, producer)
                taken.add(producer.id)
                break

    def _attach(self, slot: ConsumerSlot, producer: Producer) -> None:
        consumer = Consumer(producer, slot, self.transport)
        slot.consumer = consumer
        producer.consumers.append(consumer)
        red = self._red_source(slot, producer, consumer.pt_map, self.red_policy.distance)
        if red is not None:
            # Sent the RED copy of the stream only (its PT is all this consumer maps).
            consumer.pt_map = {red.payload_type: slot.red_pt}  # type: ignore[dict-item]
            red.consumers.append(consumer)
            consumer.red = red
        if producer.video:
            self.node.metrics.keyframe_requests.labels("join").inc()
        if consumer.selector is not None:
            # Simulcast: start on a layer, forwarded from that layer's next keyframe.
            now = time.time()
            layer = consumer.selector.initial(producer.layers, now, self._video_budget(now))
            if layer is not None:
                consumer.retarget(layer)
            return
        slot.forwarder.switch(producer, producer.codec.clock_rate)
        if producer.video:
            producer.joining.append(consumer)
            producer.keyframes.request()

    def _red_source(
        self, slot: ConsumerSlot, producer: Producer, pt_map: dict[int, int], distance: int
    ) -> RedSource | None:
        """The producer's RED copy for this slot's Opus PT at ``distance``, when the slot
        negotiated RED and the producer sends Opus."""
        if slot.red_pt is None or self.node.config.media.audio_red_distance <= 0:
            return None
        if producer.video or producer.codec.name != "opus":
            return None
        opus_pt = pt_map.get(producer.codec.payload_type)
        return None if opus_pt is None else _red_copy(producer, opus_pt, distance)

    def _adjust_red(self, consumers: list[Consumer], now: float, *, nacked: bool = False) -> None:
        """Move this viewer's RED audio to the redundancy its loss calls for."""
        loss = max((c.loss for c in consumers), default=0.0)
        if nacked:
            loss = max(loss, LOSS_FOR_ONE)
        primary = sum(c.red.bitrate(now) for c in consumers if c.red is not None)
        if not self.red_policy.update(loss, now, affordable(primary, self.qoe.estimate)):
            return
        for consumer in consumers:
            old = consumer.red
            if old is None:
                continue
            new = _red_copy(consumer.producer, old.opus_pt, self.red_policy.distance)
            if new is old:
                continue
            if consumer in old.consumers:
                old.consumers.remove(consumer)
            new.consumers.append(consumer)
            consumer.red = new
        log.info("viewer_audio_red", session=self.id, distance=self.red_policy.distance, loss=round(loss, 3))

    def detach(self, consumer: Consumer) -> None:
        consumer.closed = True
        consumer.leave_layers()
        if consumer.red is not None and consumer in consumer.red.consumers:
            consumer.red.consumers.remove(consumer)
        if consumer in consumer.producer.joining:
            consumer.producer.joining.remove(consumer)
        if consumer in consumer.producer.consumers:
            consumer.producer.consumers.remove(consumer)
        if consumer.slot.consumer is consumer:
            consumer.slot.consumer = None
        self.node.retire_consumer(consumer)

    def tick(self, now: float) -> None:
        consumers = [slot.consumer for slot in self.slots if slot.consumer is not None]
        budget = nack_budget(self.qoe.estimate)
        for consumer in consumers:
            consumer.nack_budget = budget
            # A consumer still waiting for a keyframe asks again (throttled
            # upstream): the first PLI or the keyframe itself may have been lost.
            if consumer.forwarder.waiting_for_keyframe or consumer.target is not None:
                self.node.metrics.keyframe_requests.labels("waiting").inc()
                consumer.request_keyframe()
        self.qoe.measure(consumers, now)
        self._adjust_playout_delay(consumers, now)
        self._adjust_red(consumers, now)
        self._select_layers(now)
        self.qoe.assess(consumers, now)

    def _adjust_playout_delay(self, consumers: list[Consumer], now: float, *, nacked: bool = False) -> None:
        """Ask a viewer that loses video packets to buffer long enough for repairs.
        ``nacked``: called on a NACK, which is loss whatever the last tick measured."""
        video = [c for c in consumers if c.producer.video]
        if not video:
            return
        loss = max(c.loss for c in video)
        if nacked:
            loss = max(loss, LOSS_THRESHOLD)
        rtts = [c.rtt for c in video if c.rtt is not None]
        if not self.playout.update(loss, max(rtts) if rtts else None, now):
            return
        self._apply_playout_delay()
        log.info(
            "viewer_playout_delay",
            session=self.id,
            min_ms=self.playout.min_ms,
            loss=round(loss, 3),
            rtt_ms=None if not rtts else round(max(rtts) * 1000),
        )

    def _apply_playout_delay(self) -> None:
        value = self.playout.extension_value()
        if value is None:
            return
        for slot in self.slots:
            if slot.kind == "video":
                slot.set_playout_delay(value)

    def _nacked(self) -> None:
        """The viewer NACKed: it loses packets now (playout delay), maybe a burst (layers)."""
        consumers = [slot.consumer for slot in self.slots if slot.consumer is not None]
        now = time.time()
        self._adjust_playout_delay(consumers, now, nacked=True)
        self._adjust_red(consumers, now, nacked=True)
        self._check_loss_burst()

    # simulcast layer choice -------------------------------------------------------

    def _video_budget(self, now: float) -> int | None:
        """Bit/s for each simulcast video consumer: the estimate less audio (audio first)
        and less the single-stream video this viewer receives, shared equally."""
        estimate = self.qoe.estimate
        if estimate is None:
            return None
        consumers = [slot.consumer for slot in self.slots if slot.consumer is not None]
        fixed = sum(c.bitrate for c in consumers if c.selector is None)
        simulcast = sum(1 for c in consumers if c.selector is not None) or 1
        return max(0, estimate - fixed) // simulcast

    def _select_layers(self, now: float) -> None:
        budget = self._video_budget(now)
        for slot in self.slots:
            consumer = slot.consumer
            if consumer is None or consumer.selector is None:
                continue
            layers = consumer.producer.layers
            current = consumer.layer
            if current is None:
                # Still joining: follow the publisher if the awaited layer went quiet.
                target = consumer.target
                if target is not None and not target.active(now):
                    better = consumer.selector.initial(layers, now, budget)
                    if better is not None:
                        consumer.retarget(better)
                continue
            # A switch under way counts as done: the policy judges where it sent the consumer.
            heading = consumer.target or current
            wanted = consumer.selector.choose(
                layers, heading, now, budget=budget, loss=consumer.loss
            )
            if wanted is not heading:
                log.info(
                    "consumer_layer_target",
                    consumer=consumer.id,
                    session=self.id,
                    layer=heading.rid,
                    target=wanted.rid,
                    budget=budget,
                    fraction_lost=round(consumer.fraction_lost, 3),
                    nack_ratio=round(consumer.nack_ratio, 3),
                    trial=consumer.selector.in_trial,
                )
                consumer.retarget(wanted)

    # viewer RTCP ---------------------------------------------------------------------

    def _consumer(self, ssrc: int) -> Consumer | None:
        slot = self._by_ssrc.get(ssrc)
        return slot.consumer if slot is not None else None

    def on_rtcp(self, data: bytes) -> None:
        metrics = self.node.metrics
        serve_nacks = getattr(self.node.dataplane, "serve_nacks", None)
        natively = False
        if serve_nacks is not None:
            # The native plane serves NACKs from its rings in one C call; the
            # rest of the compound (if any) is handled here as usual.
            outcome = serve_nacks(data, [s.consumer for s in self.slots if s.consumer is not None])
            if outcome.malformed:
                self._dropped("malformed_rtcp")
                return
            metrics.nack_received.inc(outcome.received)
            metrics.nack_throttled.inc(outcome.throttled)
            metrics.nack_served.inc(outcome.served)
            metrics.nack_missed.inc(outcome.missed)
            if outcome.received:
                self._nacked()
            if not outcome.others:
                return
            natively = True
        try:
            packets = rtcp.parse_rtcp(data)
        except ValueError:
            self._dropped("malformed_rtcp")
            return
        for packet in packets:
            if isinstance(packet, rtcp.Nack):
                if natively:
                    continue
                consumer = self._consumer(packet.media_ssrc)
                if consumer is None:
                    continue
                asked = packet.lost
                metrics.nack_received.inc(len(asked))
                consumer.nack_requests += len(asked)
                first = consumer.retransmit.first_nack
                consumer.nacked_packets += sum(1 for seq in asked if first(seq))
                key = consumer.forwarder.key_seq
                if key is not None:
                    # Packets from before the latest keyframe are not served:
                    # they must not use up the budget of those that are.
                    asked = [seq for seq in asked if seq_diff(seq, key) >= 0]
                if len(asked) > consumer.nack_budget:
                    metrics.nack_throttled.inc(len(asked) - consumer.nack_budget)
                    asked = asked[: consumer.nack_budget]
                consumer.nack_budget -= len(asked)
                served = self.node.dataplane.retransmit(consumer, asked) if asked else 0
                consumer.retransmitted += served
                metrics.nack_served.inc(served)
                if served < len(asked):
                    metrics.nack_missed.inc(len(asked) - served)
                if consumer.producer.video:
                    self._nacked()
            elif isinstance(packet, rtcp.Pli):
                self._keyframe_wanted(packet.media_ssrc, "viewer_pli")
            elif isinstance(packet, rtcp.Fir):
                for ssrc, _ in packet.entries:
                    self._keyframe_wanted(ssrc, "viewer_fir")
            elif isinstance(packet, rtcp.Remb):
                known = False
                for ssrc in packet.ssrcs:
                    consumer = self._consumer(ssrc)
                    if consumer is not None:
                        consumer.remb_bitrate = packet.bitrate
                        known = True
                if known:
                    previous = self.qoe.estimate
                    self.qoe.estimate = packet.bitrate
                    # A falling estimate acts at once; rises wait for the tick.
                    if previous is not None and packet.bitrate < previous * 0.85:
                        self._select_layers(time.time())
            elif isinstance(packet, (rtcp.ReceiverReport, rtcp.SenderReport)):
                self._reports(packet.reports)

    def _check_loss_burst(self) -> None:
        """Heavy NACKing since the last tick (the link just got worse): choose layers now,
        not at the next tick. At most every 300 ms."""
        now = time.time()
        if now - self._burst_checked < 0.3:
            return
        for slot in self.slots:
            consumer = slot.consumer
            if consumer is None or consumer.selector is None:
                continue
            sent = consumer.packets - consumer.packets_at_tick
            asked = consumer.nacked_packets - consumer.nacks_at_tick
            if sent >= 20 and asked > 0.15 * sent:
                self._burst_checked = now
                consumer.nack_ratio = max(consumer.nack_ratio, asked / sent)
                self._select_layers(now)
                return

    def _keyframe_wanted(self, ssrc: int, source: str) -> None:
        consumer = self._consumer(ssrc)
        if consumer is None:
            return
        consumer.pli_requests += 1
        self.node.metrics.keyframe_requests.labels(source).inc()
        consumer.request_keyframe()

    def _reports(self, blocks: list[rtcp.ReportBlock]) -> None:
        now = time.time()
        for block in blocks:
            consumer = self._consumer(block.ssrc)
            if consumer is None:
                continue
            consumer.fraction_lost = block.fraction_lost / 256.0
            consumer.jitter = block.jitter
            if block.lsr and block.lsr == consumer.last_sr:
                consumer.rtt = max(0.0, now - consumer.last_sr_time - block.dlsr / 65536.0)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.room.remove_viewer(self)
        for slot in self.slots:
            if slot.consumer is not None:
                self.detach(slot.consumer)

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["slots"] = [
            {
                "mid": slot.section.mid,
                "kind": slot.kind,
                "ssrc": slot.ssrc,
                "producer": None if slot.consumer is None else slot.consumer.producer.id,
                "participant": None
                if slot.consumer is None
                else slot.consumer.producer.participant.identity,
                "source": None if slot.consumer is None else slot.consumer.producer.source,
            }
            for slot in self.slots
        ]
        out["quality"] = self.qoe.describe()
        taken = {s["producer"] for s in out["slots"]}  # type: ignore[index]
        out["unassigned_producers"] = [
            {"id": p.id, "kind": p.kind, "source": p.source, "participant": p.participant.identity}
            for p in self.room.ordered_producers()
            if p.id not in taken
        ]
        return out
