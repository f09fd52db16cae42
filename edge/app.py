"""Wiring only: build a node (HTTP app, media node, auth, metrics) from config."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from .api.admin import admin_routes
from .api.rooms import room_routes
from .api.sessions import session_routes
from .auth import TokenAuthority, describe_secret, load_or_create_secret
from .config import Config
from .media.node import MediaNode
from .messaging.ratelimit import RateLimiter
from .observability.logging import get_logger
from .observability.metrics import NodeMetrics
from .transport.webrtc import install_codec_tripwire, install_ice_addresses

log = get_logger("edge.app")


@dataclass
class EdgeContext:
    config: Config
    authority: TokenAuthority
    metrics: NodeMetrics
    node: MediaNode
    session_limiter: RateLimiter


def build_context(config: Config, *, codec_tripwire: bool = False) -> EdgeContext:
    secret = load_or_create_secret(config.auth.secret, config.data_path)
    metrics = NodeMetrics()
    metrics.info.labels(config.node.name, config.node.region).set(1)
    install_ice_addresses(config.media.ice_addresses)
    if codec_tripwire:
        install_codec_tripwire(lambda what: metrics.codec_instances.labels(what).inc())
    node = MediaNode(config, metrics)
    log.info(
        "node_configured",
        node=config.node.name,
        region=config.node.region,
        dataplane=node.dataplane.name,
        ice_addresses=config.media.ice_addresses,
        key_fingerprint=describe_secret(secret),
    )
    return EdgeContext(
        config=config,
        authority=TokenAuthority(secret, config.auth.issuer),
        metrics=metrics,
        node=node,
        session_limiter=RateLimiter(config.limits.sessions_per_minute, 60.0),
    )


def create_app(config: Config, *, codec_tripwire: bool = False) -> Starlette:
    ctx = build_context(config, codec_tripwire=codec_tripwire)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ctx.node.start()
        log.info("node_started", http=f"{config.http.host}:{config.http.port}")
        try:
            yield
        finally:
            await ctx.node.stop()
            log.info("node_stopped")

    routes = [
        *session_routes(ctx, "whip"),
        *session_routes(ctx, "whep"),
        *room_routes(ctx),
        *admin_routes(ctx),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
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
