"""PublisherSession: a WHIP publisher's m-lines as Producers, its RTP into the data plane.

It routes RTP by SSRC (then MID, rid and repaired-rid for simulcast layers),
unwraps RTX, keeps receive statistics, NACKs upstream with retries, asks for
keyframes (throttled), and answers with receiver reports and REMB. Audio
producers with RED viewers also get their RED copies built here (red.py), and a
publisher's own RED is unwrapped here first (red_receive.py).
"""

from __future__ import annotations

import time
from typing import Any

from ..observability.logging import get_logger
from ..transport.simulcast_sdp import EXT_REPAIRED_RID, EXT_RID
from ..transport.webrtc import EXT_MID
from . import rtcp
from .codecs import is_keyframe, vp8_temporal_layer
from .producer import Producer
from .nack import NackTracker
from .red import RedSource
from .simulcast import Layer
from .rtp import RtpHeader, unwrap_rtx
from .session import Session, _source_names

log = get_logger("edge.media")


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
        if producer.ssrc is None and (
            header.payload_type in producer.codecs or header.payload_type == producer.red_payload_type
        ):
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
                self._layer_packet(layer, data, parsed[4], parsed[5], parsed[13], now, parsed[0])
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
        if header.payload_type == producer.red_payload_type and producer.red_receiver is not None:
            # The publisher's RED: the plain packets it stands for, lost ones rebuilt.
            receiver = producer.red_receiver
            recovered = receiver.recovered
            try:
                plain = receiver.unwrap(data, header)
            except ValueError:
                self._dropped("malformed_red")
                return
            if receiver.recovered > recovered:
                self.node.metrics.red_recovered.inc(receiver.recovered - recovered)
            for packet in plain:
                self._single_stream_packet(producer, packet, RtpHeader.parse(packet))
            return
        self._single_stream_packet(producer, data, header)

    def _single_stream_packet(self, producer: Producer, data: bytes, header: RtpHeader) -> None:
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
        self, layer: Layer, data: bytes, seq: int, timestamp: int, keyframe: bool, now: float, offset: int = 12
    ) -> None:
        """The same for a simulcast layer; a keyframe moves the consumers waiting for it."""
        producer: Producer = layer.producer  # type: ignore[assignment]
        layer.last_packet = now
        if producer.vp8:
            tid = vp8_temporal_layer(data[offset : offset + 8])
            if tid is not None:
                if tid >= layer.temporal_layers:
                    layer.temporal_layers = tid + 1
                layer.tid_bytes[tid] += len(data)
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
        self._layer_packet(layer, data, header.sequence_number, header.timestamp, keyframe, now, header.payload_offset)
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
            # The temporal cap for the new layer, in force from its first packet.
            if self.node.config.media.temporal_layers:
                consumer.forwarder.tid_target = consumer.temporal.on_switch(layer)
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
        packets = self._parse_rtcp(data)
        if packets is None:
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
