"""Room inspection for operators: GET /v1/rooms and /v1/rooms/{room} (admin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .problem import Problem, json_response
from .sessions import _guard, authenticate, authorize

if TYPE_CHECKING:
    from ..app import EdgeContext

ADMIN = frozenset({"admin"})


def room_routes(ctx: "EdgeContext") -> list[Route]:
    async def list_rooms(request: Request) -> Response:
        authorize(authenticate(ctx, request), None, ADMIN)
        return json_response({"rooms": [r.describe() for r in ctx.node.rooms.values()]})

    async def get_room(request: Request) -> Response:
        authorize(authenticate(ctx, request), None, ADMIN)
        room = ctx.node.rooms.get(request.path_params["room"])
        if room is None:
            raise Problem(404, "not_found", "no such room")
        out = room.describe(detail=True)
        out["sessions"] = [
            s.describe() for s in ctx.node.sessions.values() if s.room is room
        ]
        return json_response(out)

    return [
        Route("/v1/rooms", _guard(list_rooms), methods=["GET"]),
        Route("/v1/rooms/{room}", _guard(get_room), methods=["GET"]),
    ]
