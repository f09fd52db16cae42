"""The node's own web pages: an index, the host console and the viewer page.

GET /                 what this node is (name and region from /healthz), a room form
GET /host/{room}      host console: camera/mic preview, Go live (WHIP), screen share, chat moderation
GET /watch/{room}     viewer: WHEP player (camera + screen share slots), chat, likes, product card
/static/...           the pages' ES modules and stylesheet (edge/web/static), no build step

Pages need no token to load: the token is entered in the page (or passed as
``?token=``, which the page moves out of the address bar) and only ever sent to
the WHIP/WHEP and WebSocket endpoints. Every page carries a Content-Security-Policy
that allows the node's own scripts and styles, connections back to the node
(HTTP and WebSocket) and local media streams, and nothing else.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .problem import Problem
from .sessions import check_room_name  # ROOM_NAME, with the WHIP/WHEP problem

if TYPE_CHECKING:
    from ..app import EdgeContext

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

# A Host header is echoed into connect-src only when it looks like host[:port].
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def content_security_policy(request: Request) -> str:
    """Self scripts/styles, HTTP and WebSocket back to this node, local media only.

    ``'self'`` in connect-src covers ws:/wss: to the same host in current browsers;
    the explicit ws://host and wss://host keep older ones (and TLS-terminating
    proxies, where the page is https but the node sees http) working.
    """
    connect = ["'self'"]
    host = request.headers.get("host", "")
    if _HOST.match(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob: https:",  # product images come from shop CDNs
            "media-src 'self' blob: mediastream:",
            "connect-src " + " ".join(connect),
            "font-src 'self'",
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ]
    )


class _StaticFiles(StaticFiles):
    """StaticFiles that makes browsers revalidate (ETag) so a node upgrade shows at once."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("Cache-Control", "no-cache")
        for name, value in COMMON_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _load(name: str) -> str:
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")


def web_routes(ctx: "EdgeContext") -> list[BaseRoute]:
    templates = {name: _load(f"{name}.html") for name in ("index", "host", "watch")}

    def page(request: Request, name: str, room: str = "") -> Response:
        body = templates[name].replace("{{room}}", html.escape(room, quote=True))
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": content_security_policy(request),
                "Cache-Control": "no-store",
                "Permissions-Policy": "camera=(self), microphone=(self), display-capture=(self)",
                **COMMON_HEADERS,
            },
        )

    async def index(request: Request) -> Response:
        return page(request, "index")

    def room_page(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            room = request.path_params["room"]
            try:
                check_room_name(room)
            except Problem as problem:
                return problem.response()
            return page(request, name, room)

        return endpoint

    return [
        Route("/", index, methods=["GET"]),
        Route("/host/{room}", room_page("host"), methods=["GET"]),
        Route("/watch/{room}", room_page("watch"), methods=["GET"]),
        Mount("/static", app=_StaticFiles(directory=STATIC_DIR), name="static"),
    ]
