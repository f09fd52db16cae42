"""Wiring only: build a node (HTTP app, media node, auth, metrics) from config."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from .api.admin import admin_routes
from .api.plugins import plugin_routes
from .api.replay import replay_routes
from .api.ws import ws_routes
from .api.rooms import room_routes
from .api.sessions import session_routes
from .api.web import web_routes
from .auth import Identity, TokenAuthority, describe_secret, load_or_create_secret
from .config import Config
from .media.node import MediaNode
from .messaging.connections import DataChannelConnection
from .messaging.ratelimit import RateLimiter
from .messaging.envelope import Envelope, now_ms
from .messaging.router import MessageRouter
from .messaging.wsframes import KeepAsgiSend
from .plugins.api import Edge, ParticipantInfo, ProducerInfo, RoomInfo, SessionInfo
from .plugins.manager import PluginHost
from .observability.logging import get_logger
from .observability.metrics import NodeMetrics
from .recording import PLUGIN_NAME as RECORDING_PLUGIN
from .recording import Recorder, RecordingPlugin, RecordingsService
from .transport.webrtc import install_codec_tripwire, install_ice_addresses, install_opus_fec

log = get_logger("edge.app")

DATA_CHANNEL_LABEL = "edge"
SHUTDOWN_BUDGET_SECONDS = 5.0


@dataclass
class EdgeContext:
    config: Config
    authority: TokenAuthority
    metrics: NodeMetrics
    node: MediaNode
    session_limiter: RateLimiter
    plugins: PluginHost
    edge: Edge
    router: MessageRouter
    recorder: Recorder


def _plugin_events(ctx: "EdgeContext") -> Callable[[str, dict[str, Any]], None]:
    """Media-plane events -> plugin hooks, as info records (fire-and-forget)."""

    def emit(name: str, kwargs: dict[str, Any]) -> None:
        room = kwargs.get("room")
        if name in ("room_created", "room_closed"):
            ctx.plugins.call(f"edge_{name}", edge=ctx.edge, room=RoomInfo(room.name, room.created_at))
        elif name in ("participant_joined", "participant_left"):
            p = kwargs["participant"]
            ctx.plugins.call(
                f"edge_{name}", edge=ctx.edge, room=room.name,
                participant=ParticipantInfo(p.identity, p.role, p.region),
            )
        elif name in ("session_started", "session_ended"):
            s = kwargs["session"]
            p = s.participant
            ctx.plugins.call(
                f"edge_{name}", edge=ctx.edge, room=s.room.name,
                participant=ParticipantInfo(p.identity, p.role, p.region),
                session=SessionInfo(
                    id=s.id, kind=s.kind, room=s.room.name, participant=p.identity,
                    started_at=s.created_at, connected_at=s.connected_at,
                    ended_at=time.time() if name == "session_ended" else None,
                    reason=kwargs.get("reason", ""),
                ),
            )
        elif name == "quality_changed":
            s = kwargs["session"]
            p = s.participant
            ctx.plugins.call(
                "edge_quality_changed", edge=ctx.edge, room=s.room.name,
                participant=ParticipantInfo(p.identity, p.role, p.region),
                session=SessionInfo(
                    id=s.id, kind=s.kind, room=s.room.name, participant=p.identity,
                    started_at=s.created_at, connected_at=s.connected_at, ended_at=None, reason="",
                ),
                quality=dict(kwargs["quality"]), previous=dict(kwargs["previous"]),
            )
        elif name in ("producer_added", "producer_removed"):
            p = kwargs["producer"]
            # Viewers learn of tracks coming and going on their message connections too.
            ctx.router.broadcast(
                Envelope(
                    type=name.replace("_", "."),
                    room=p.room_name,
                    data={"id": p.id, "kind": p.kind, "source": p.source, "participant": p.participant.identity},
                    ts=now_ms(),
                )
            )
            ctx.plugins.call(
                f"edge_{name}", edge=ctx.edge, room=p.room_name,
                producer=ProducerInfo(p.id, p.room_name, p.kind, p.source, p.participant.identity),
            )

    return emit


def build_context(
    config: Config,
    *,
    codec_tripwire: bool = False,
    load_entrypoints: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
) -> EdgeContext:
    secret = load_or_create_secret(config.auth.secret, config.data_path)
    metrics = NodeMetrics()
    metrics.info.labels(config.node.name, config.node.region).set(1)
    install_ice_addresses(config.media.ice_addresses)
    install_opus_fec()
    if codec_tripwire:
        install_codec_tripwire(lambda what: metrics.codec_instances.labels(what).inc())
    node = MediaNode(config, metrics)
    log.info(
        "node_configured",
        node=config.node.name,
        region=config.node.region,
        dataplane=node.dataplane.name,
        ice_addresses=config.media.ice_addresses,
        udp=f"mux port {config.media.udp_port}" if config.media.udp_mux else "socket per peer",
        key_fingerprint=describe_secret(secret),
    )
    authority = TokenAuthority(secret, config.auth.issuer)
    host = PluginHost(config, metrics.registry, load_entrypoints=load_entrypoints, plugins=plugins)
    edge = Edge(config=config, node=node, authority=authority, registry=metrics.registry)
    router = MessageRouter(node, host, edge, metrics.registry)
    edge.router = router
    edge.plugins = host
    # Recording (docs/recording.md): a tap on publishers' packets, the `recordings`
    # service for other plugins and, when recording is on, a built-in plugin (same
    # hooks as any plugin) that turns commerce.product_pinned events into markers.
    recorder = Recorder(config, node, metrics.registry)
    if config.recording.enabled:
        host.register(RecordingPlugin(recorder), RECORDING_PLUGIN)
    edge.provide("recordings", RecordingsService(recorder, config.http.public_url))
    ctx = EdgeContext(
        config=config,
        authority=authority,
        metrics=metrics,
        node=node,
        session_limiter=RateLimiter(config.limits.sessions_per_minute, 60.0),
        plugins=host,
        edge=edge,
        router=router,
        recorder=recorder,
    )
    plugin_events = _plugin_events(ctx)

    def on_event(name: str, kwargs: dict[str, Any]) -> None:
        recorder.on_node_event(name, kwargs)
        plugin_events(name, kwargs)

    node.on_event = on_event

    def on_datachannel(session: Any, channel: Any) -> None:
        if channel.label != DATA_CHANNEL_LABEL:
            return
        identity = Identity(
            session.participant.identity, session.participant.role, session.room.name,
            session.participant.region,
        )
        DataChannelConnection(channel, session.room.name, identity).start(router)

    node.on_datachannel = on_datachannel
    host.configure(edge)
    router.load_types()
    return ctx


def create_app(
    config: Config,
    *,
    codec_tripwire: bool = False,
    load_entrypoints: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
) -> Starlette:
    ctx = build_context(
        config, codec_tripwire=codec_tripwire, load_entrypoints=load_entrypoints, plugins=plugins
    )

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1.0)
            await ctx.plugins.acall("edge_tick", edge=ctx.edge, now=time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ctx.node.start()
        await ctx.recorder.start()
        # Plugins open databases and connections at start-up: the shutdown budget, not
        # the per-message one.
        await ctx.plugins.acall("edge_startup", edge=ctx.edge, budget_s=SHUTDOWN_BUDGET_SECONDS)
        tick = asyncio.ensure_future(ticker())
        log.info("node_started", http=f"{config.http.host}:{config.http.port}", plugins=ctx.plugins.names())
        try:
            yield
        finally:
            tick.cancel()
            ctx.router.close_all()
            await ctx.node.stop()
            # Plugins flush on shutdown: a longer budget than per-message hooks.
            await ctx.plugins.acall("edge_shutdown", edge=ctx.edge, budget_s=SHUTDOWN_BUDGET_SECONDS)
            await ctx.plugins.drain()
            # Last, as it may take longest: the recordings the closed sessions ended are
            # remuxed meanwhile; wait for them (bounded; the next start finishes the rest).
            await ctx.recorder.close()
            log.info("node_stopped")

    routes = [
        *plugin_routes(ctx),
        *ws_routes(ctx),
        *session_routes(ctx, "whip"),
        *session_routes(ctx, "whep"),
        *room_routes(ctx),
        *admin_routes(ctx),
        *web_routes(ctx),
        *replay_routes(ctx),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            # First: Starlette's error middleware passes WebSocket sends through
            # untouched, so this sees the server's own send (wsframes.py).
            Middleware(KeepAsgiSend),
            Middleware(
                CORSMiddleware,
                allow_origins=config.http.cors_origins,
                allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type", "If-Match"],
                expose_headers=["Location", "ETag", "Link", "Accept-Patch", "Accept-Post"],
                max_age=600,
            )
        ],
    )
    app.state.ctx = ctx
    return app
