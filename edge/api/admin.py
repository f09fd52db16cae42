"""Operations endpoints: /healthz (open) and /metrics (admin or service token)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .problem import json_response
from .sessions import _guard, authenticate, authorize

if TYPE_CHECKING:
    from ..app import EdgeContext

SCRAPERS = frozenset({"admin", "service"})


def admin_routes(ctx: "EdgeContext") -> list[Route]:
    async def healthz(request: Request) -> Response:
        return json_response(
            {
                "status": "ok",
                "node": ctx.config.node.name,
                "region": ctx.config.node.region,
                "dataplane": ctx.node.dataplane.name,
                "rooms": len(ctx.node.rooms),
                "sessions": len(ctx.node.sessions),
            }
        )

    async def metrics(request: Request) -> Response:
        authorize(authenticate(ctx, request), None, SCRAPERS)
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def runtime(request: Request) -> Response:
        """Threads of the node process (proves no decoder/encoder thread ever runs),
        the WebRTC UDP set-up and each session's nominated ICE pair."""
        authorize(authenticate(ctx, request), None, frozenset({"admin"}))
        mux = ctx.node.udp_mux
        transports = []
        for session in list(ctx.node.sessions.values()):
            transport = session.transport
            remote = transport.remote_address
            transports.append(
                {
                    "session": session.id,
                    "kind": session.kind,
                    "local_port": transport.local_port if transport.connected.is_set() else None,
                    "remote": f"{remote[0]}:{remote[1]}" if remote else None,
                }
            )
        return json_response(
            {
                "threads": sorted(t.name for t in threading.enumerate()),
                "udp": mux.describe() if mux is not None else {"mode": "per_peer"},
                "transports": transports,
            }
        )

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", _guard(metrics), methods=["GET"]),
        Route("/v1/admin/runtime", _guard(runtime), methods=["GET"]),
    ]
