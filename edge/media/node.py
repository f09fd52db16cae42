"""MediaNode: the rooms and sessions of one edge node, and their lifecycle.

Creating a session is all-or-nothing: the offer is answered on a fresh
transport first, and only a successful answer registers a room, participant
or session. A periodic task sends RTCP reports and reaps transports whose peer
failed, never connected, or went silent.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from typing import Any, Callable

from ..auth import Identity
from ..config import Config
from ..errors import LimitExceededError
from ..observability.logging import get_logger
from ..observability.metrics import NodeMetrics
from ..transport.udpmux import UdpMux
from ..transport.webrtc import WebRtcTransport
from .consumer import Consumer
from .dataplane import DataPlane, create_dataplane
from .producer import Producer
from .participant import Participant
from .room import Room
from .publisher_session import PublisherSession
from .session import Session
from .viewer_session import ViewerSession

log = get_logger("edge.media")

TICK_SECONDS = 1.0


class MediaNode:
    def __init__(self, config: Config, metrics: NodeMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or NodeMetrics()
        self.dataplane: DataPlane
        self.dataplane, warning = create_dataplane(config.media.dataplane)
        if warning:
            log.warning("dataplane_fallback", requested=config.media.dataplane, reason=warning)
        self.metrics.dataplane.labels(self.dataplane.name).set(1)
        # The node's one WebRTC UDP port (None: a socket per peer connection).
        self.udp_mux: UdpMux | None = (
            UdpMux(
                config.media.ice_addresses,
                config.media.udp_port,
                on_drop=lambda reason: self.metrics.dropped.labels(reason).inc(),
            )
            if config.media.udp_mux
            else None
        )
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, Session] = {}
        # Recently ended sessions, so a late DELETE (whip-whep closes the peer
        # connection before it sends DELETE) is answered 200, not 404.
        self.ended: OrderedDict[str, str] = OrderedDict()
        self._retired = {"packets_in": 0, "bytes_in": 0, "packets_out": 0, "bytes_out": 0}
        self._task: asyncio.Task[None] | None = None
        # Plugin fan-out points, set by the app (the media plane never awaits them).
        self.on_event: Callable[[str, dict[str, Any]], None] = lambda name, kwargs: None
        self.on_datachannel: Callable[[Session, Any], None] = lambda session, channel: None
        self.metrics.attach(self)

    # lifecycle ---------------------------------------------------------------------

    def bind(self) -> None:
        """Bind the node's UDP port now (ConfigError names it if taken); start() does it too."""
        if self.udp_mux is not None:
            self.udp_mux.bind()

    async def start(self) -> None:
        if self.udp_mux is not None:
            await self.udp_mux.start()
            log.info("udp_mux_started", port=self.udp_mux.port, addresses=self.udp_mux.addresses)
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await asyncio.gather(
            *(self.close_session(s.id, "shutdown") for s in list(self.sessions.values())),
            return_exceptions=True,
        )
        if self.udp_mux is not None:  # last: the sessions' DTLS close_notify went out on it
            self.udp_mux.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except Exception:  # the reaper must survive anything one session does
                log.exception("tick_failed")

    async def tick(self) -> None:
        now = time.time()
        mono = time.monotonic()
        media = self.config.media
        for session in list(self.sessions.values()):
            transport = session.transport
            reason = None
            if transport.state in ("failed", "closed"):
                reason = transport.state
            elif not transport.connected.is_set():
                if mono - transport.created_at > media.connect_timeout_seconds:
                    reason = "connect_timeout"
            elif mono - transport.last_rx > media.inactivity_timeout_seconds:
                reason = "inactive"
            if reason:
                await self.close_session(session.id, reason)
            else:
                session.tick(now)

    # sessions ------------------------------------------------------------------------

    def _check_capacity(self, room_name: str, publisher: bool) -> None:
        limits = self.config.limits
        room = self.rooms.get(room_name)
        if room is None and len(self.rooms) >= limits.max_rooms:
            raise LimitExceededError(f"this node already has {limits.max_rooms} rooms")
        if room is None:
            return
        if publisher:
            publishers = sum(1 for s in room.participants.values() if s.role in ("host", "cohost"))
            if publishers >= limits.max_publishers_per_room:
                raise LimitExceededError(
                    f"room {room_name!r} already has {limits.max_publishers_per_room} publishers"
                )
        elif len(room.viewers) >= limits.max_viewers_per_room:
            raise LimitExceededError(
                f"room {room_name!r} already has {limits.max_viewers_per_room} viewers"
            )

    async def create_session(
        self,
        *,
        room_name: str,
        identity: Identity,
        offer_sdp: str,
        publish: bool,
        sources: list[str] | None = None,
    ) -> tuple[Session, str]:
        """Answer an offer and register the session. Raises before registering anything."""
        self._check_capacity(room_name, publish)
        transport = WebRtcTransport(secrets.token_urlsafe(18), udp_mux=self.udp_mux)
        # The native plane unprotects ingress too (NativeDataPlane.srtp_receiver).
        receiver = getattr(self.dataplane, "srtp_receiver", None)
        if receiver is not None:
            transport.srtp_receiver_factory = lambda profile, key: receiver(profile, key, transport)
        try:
            media = self.config.media
            answer = await transport.answer(
                offer_sdp,
                send=not publish,
                audio_red=media.audio_red_distance > 0,
                playout_delay=media.playout_delay_max_ms > 0,
                transport_cc=media.twcc,
                publisher_red=media.publisher_red,
            )
        except BaseException:
            await transport.close()
            raise
        room, participant = self.enter(room_name, identity)
        session: Session
        if publish:
            session = PublisherSession(self, room, participant, transport, sources=sources)
        else:
            session = ViewerSession(self, room, participant, transport)
        participant.sessions[session.id] = session
        self.sessions[session.id] = session
        transport.on_datachannel = lambda channel: self.on_datachannel(session, channel)
        self.metrics.sessions.labels(session.kind).inc()

        async def on_state(state: str) -> None:
            if state == "connected" and not session.closed:
                session.connected_at = time.time()
                self.on_event("session_started", {"session": session})
                session.on_connected()
                log.info("session_connected", session=session.id, kind=session.kind, room=room_name)
            elif state in ("failed", "closed"):
                await self.close_session(session.id, state)

        transport.on_state = on_state
        log.info(
            "session_created",
            session=session.id,
            kind=session.kind,
            room=room_name,
            participant=identity.identity,
            role=identity.role,
        )
        return session, answer

    async def close_session(self, session_id: str, reason: str) -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        self.ended[session_id] = reason
        while len(self.ended) > 10000:
            self.ended.popitem(last=False)
        session.close()
        room = session.room
        self.on_event("session_ended", {"session": session, "reason": reason})
        self.leave(room, session.participant, session_id)
        if reason not in ("delete", "shutdown"):
            self.metrics.transports_reaped.labels(reason).inc()
        log.info("session_closed", session=session_id, kind=session.kind, room=room.name, reason=reason)
        try:
            await session.transport.close()
        except Exception:
            log.exception("transport_close_failed", session=session_id)
        return True

    # membership -------------------------------------------------------------------------

    def enter(self, room_name: str, identity: Identity) -> tuple[Room, Participant]:
        """The room (created if new) and the participant for a new session or connection."""
        room = self.rooms.get(room_name)
        if room is None:
            room = self.rooms[room_name] = Room(room_name)
            self.on_event("room_created", {"room": room})
        known = identity.identity in room.participants
        participant = room.participant(identity.identity, identity.role, identity.region)
        if not known:
            self.on_event("participant_joined", {"room": room, "participant": participant})
        return room, participant

    def leave(self, room: Room, participant: Participant, key: str) -> None:
        """A session or message connection ended; the last one takes the participant out."""
        participant.sessions.pop(key, None)
        participant.connections.pop(key, None)
        if participant.sessions or participant.connections:
            return
        if room.remove_participant(participant):
            self.on_event("participant_left", {"room": room, "participant": participant})
        if room.empty and self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self.on_event("room_closed", {"room": room})

    # bookkeeping for metrics -------------------------------------------------------

    def quality_changed(self, viewer: Any, quality: dict[str, Any], previous: dict[str, Any]) -> None:
        self.metrics.quality_changes.labels(str(quality.get("level"))).inc()
        self.on_event("quality_changed", {"session": viewer, "quality": quality, "previous": previous})

    def plugins_producer_added(self, producer: Producer) -> None:
        self.on_event("producer_added", {"producer": producer})

    def plugins_producer_removed(self, producer: Producer) -> None:
        self.on_event("producer_removed", {"producer": producer})

    def retire_producer(self, producer: Producer) -> None:
        packets, octets = producer.packets_in()
        self._retired["packets_in"] += packets
        self._retired["bytes_in"] += octets

    def retire_consumer(self, consumer: Consumer) -> None:
        self._retired["packets_out"] += consumer.packets
        self._retired["bytes_out"] += consumer.bytes
        # Counted once: a retired consumer's counters are zeroed.
        consumer.packets = consumer.bytes = 0

    def packet_totals(self) -> dict[str, int]:
        totals = dict(self._retired)
        for room in self.rooms.values():
            for producer in room.producers.values():
                packets, octets = producer.packets_in()
                totals["packets_in"] += packets
                totals["bytes_in"] += octets
                for consumer in producer.consumers:
                    totals["packets_out"] += consumer.packets
                    totals["bytes_out"] += consumer.bytes
        return totals
