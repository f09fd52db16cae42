"""WebSocket message endpoint: /v1/rooms/{room}/ws (token in ?token= or Authorization)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from ..errors import AuthError
from ..messaging.connections import WebSocketConnection
from ..messaging.envelope import error_envelope
from .sessions import ROOM_NAME

if TYPE_CHECKING:
    from ..app import EdgeContext


def ws_routes(ctx: "EdgeContext") -> list[WebSocketRoute]:
    async def endpoint(websocket: WebSocket) -> None:
        room = websocket.path_params["room"]
        token = websocket.query_params.get("token") or ""
        header = websocket.headers.get("authorization")
        await websocket.accept()

        async def refuse(code: int, reason_code: str, reason: str) -> None:
            # Accept first, then explain and close: browsers cannot read an
            # HTTP refusal of a WebSocket handshake.
            await websocket.send_text(error_envelope(room, reason_code, reason).encode().decode())
            await websocket.close(code, reason_code)

        client = websocket.client.host if websocket.client else "?"
        decision = ctx.session_limiter.check(("ws", client))
        if not decision.allowed:
            await refuse(4429, "rate_limited", "too many connections from this address")
            return
        if not ROOM_NAME.match(room):
            await refuse(4400, "invalid_room", "bad room name")
            return
        try:
            identity = (
                ctx.authority.verify(token) if token else ctx.authority.from_authorization(header)
            )
        except AuthError as exc:
            await refuse(4401, "unauthorized", str(exc))
            return
        if not identity.may_enter(room):
            await refuse(4403, "forbidden", f"token is for room {identity.room!r}")
            return
        if ctx.router.rooms.get(room) is not None and len(ctx.router.rooms[room]) >= ctx.config.limits.max_viewers_per_room:
            await refuse(4503, "capacity", "room is full")
            return
        await WebSocketConnection(websocket, room, identity).serve(ctx.router)

    return [WebSocketRoute("/v1/rooms/{room}/ws", endpoint)]
