"""ViewerSession: a WHEP viewer's consumer slots and everything towards that viewer.

It owns the slots (its m-lines) and handles the viewer's RTCP: NACKs are
served from the slot's RetransmitBuffer (or the native ring), PLI/FIR become
keyframe requests, RR/REMB update loss, RTT and the estimate. Once a tick it
measures quality (qoe.py), adjusts the playout delay (playout.py) and the
audio redundancy (red.py) it asks of and sends the viewer, and chooses
simulcast layers (simulcast.py).
"""

from __future__ import annotations

import secrets
import time

from ..observability.logging import get_logger
from . import rtcp
from .consumer import Consumer, ConsumerSlot, nack_budget
from .producer import Producer
from .retransmit import buffer_size
from .playout import LOSS_THRESHOLD, PlayoutDelay
from .qoe import ViewerQoe
from .red import (
    KEEP_MARGIN,
    LOSS_FOR_ONE,
    RAISE_MARGIN,
    RedPolicy,
    RedSource,
    affordable,
    unused_payload_type,
)
from .bwe import SendSideBandwidthEstimator
from .rtp import seq_diff
from .twcc import TwccFeedback, TwccRecorder
from .session import Session

log = get_logger("edge.media")


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
        # Transport-wide congestion control, when the viewer negotiated it: every
        # packet is stamped from one history (both planes), its feedback feeds the
        # node's own estimator, and that estimate replaces the viewer's REMB.
        self.twcc: TwccRecorder | None = None
        self.bwe: SendSideBandwidthEstimator | None = None
        if any(slot.twcc_id for slot in self.slots):
            self.twcc = TwccRecorder(history=self.node.dataplane.twcc_history())
            self.bwe = SendSideBandwidthEstimator()
            for slot in self.slots:
                slot.set_twcc(self.twcc.history)

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
        # What one copy costs: the producer's own ingress rate, the same whichever
        # RED copy (distance) the consumer is on now.
        primary = sum(c.producer.bitrate(now) for c in consumers if c.red is not None)
        estimate = self._red_estimate(consumers)
        if not self.red_policy.update(
            loss, now, affordable(primary, estimate, KEEP_MARGIN), affordable(primary, estimate, RAISE_MARGIN)
        ):
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
            # The temporal cap on the layer forwarded now: the first step down.
            if not self.node.config.media.temporal_layers:
                continue
            forwarder = consumer.forwarder
            cap = consumer.temporal.choose(current, int(forwarder.tid_target), now, budget=budget)
            if cap != forwarder.tid_target:
                log.info(
                    "consumer_temporal_target",
                    consumer=consumer.id,
                    session=self.id,
                    layer=current.rid,
                    temporal_layer=cap,
                    budget=budget,
                )
                self.node.metrics.temporal_switches.labels("up" if cap > forwarder.tid_target else "down").inc()
                forwarder.tid_target = cap

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
            outcome = serve_nacks(data, [s.consumer for s in self.slots if s.consumer is not None], time.time())
            if outcome.malformed:
                self._dropped("malformed_rtcp")
                return
            metrics.nack_received.inc(outcome.received)
            metrics.nack_throttled.inc(outcome.throttled)
            metrics.nack_served.inc(outcome.served)
            metrics.nack_missed.inc(outcome.missed)
            metrics.nack_stale.inc(outcome.stale)
            if outcome.received:
                self._nacked()
            if not outcome.others:
                return
            natively = True
        packets = self._parse_rtcp(data)
        if packets is None:
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
                    fresh = [seq for seq in asked if seq_diff(seq, key) >= 0]
                    metrics.nack_stale.inc(len(asked) - len(fresh))
                    asked = fresh
                if len(asked) > consumer.nack_budget:
                    metrics.nack_throttled.inc(len(asked) - consumer.nack_budget)
                    asked = asked[: consumer.nack_budget]
                consumer.nack_budget -= len(asked)
                served = self.node.dataplane.retransmit(consumer, asked, time.time()) if asked else 0
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
            elif isinstance(packet, rtcp.TransportFeedback):
                self._transport_feedback(packet.feedback)
            elif isinstance(packet, rtcp.Remb):
                known = False
                for ssrc in packet.ssrcs:
                    consumer = self._consumer(ssrc)
                    if consumer is not None:
                        consumer.remb_bitrate = packet.bitrate
                        known = True
                if known and self.qoe.estimate_source != "twcc":
                    self.qoe.estimate_source = "remb"
                    previous = self.qoe.estimate
                    self.qoe.estimate = packet.bitrate
                    # A falling estimate acts at once; rises wait for the tick.
                    if previous is not None and packet.bitrate < previous * 0.85:
                        self._select_layers(time.time())
            elif isinstance(packet, (rtcp.ReceiverReport, rtcp.SenderReport)):
                self._reports(packet.reports)

    def _red_estimate(self, consumers: list[Consumer]) -> int | None:
        """The estimate RED's copies must fit a share of (None: no limit).

        With a REMB, the estimate. With TWCC the node knows whether packets
        queue on the path: if they do, the loss is congestion and extra copies
        would add to it, so they may only use what the video leaves; if they do
        not, the loss is random (what RED is for) and the copies follow the loss
        alone: they are stopped at once should they make a queue.
        """
        estimate = self.qoe.estimate
        if estimate is None or self.bwe is None or self.qoe.estimate_source != "twcc":
            return estimate
        if not self.bwe.congested:
            return None
        return max(0, estimate - sum(c.bitrate for c in consumers if c.producer.video))

    def _transport_feedback(self, feedback: TwccFeedback) -> None:
        """TWCC feedback: the node's estimate of this viewer's link (edge/media/bwe.py)."""
        if self.twcc is None or self.bwe is None:
            self._dropped("unnegotiated_feedback")
            return
        now = time.time()
        results = self.twcc.on_feedback(feedback)
        if not results:
            return
        lost = sum(1 for r in results if r.arrival_time is None)
        reported = self.node.metrics.twcc_reported
        reported.labels("received").inc(len(results) - lost)
        if lost:
            reported.labels("lost").inc(lost)
        estimate = int(self.bwe.on_feedback(results, now))
        previous = self.qoe.estimate
        self.qoe.estimate = estimate
        self.qoe.estimate_source = "twcc"
        # As with REMB: a falling estimate acts at once; rises wait for the tick.
        if previous is not None and estimate < previous * 0.85:
            self._select_layers(now)

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
