"""Recordings over HTTP: start/stop (REST), the media file, its markers, the replay page.

POST   /v1/rooms/{room}/recording                      start recording the room (admin, host of the room)
DELETE /v1/rooms/{room}/recording                      stop (admin, host of the room)
GET    /v1/rooms/{room}/recording                      whether the room is recorded now (admin, host)
GET    /v1/rooms/{room}/recordings                     the room's recordings
GET    /v1/rooms/{room}/recordings/{id|latest}/media   the WebM/Matroska file (HTTP Range)
GET    /v1/rooms/{room}/recordings/{id|latest}/markers product markers, duration, media URL
GET    /replay/{room}                                  the replay page (edge/web/templates/replay.html)

Reading recordings needs no token when ``[recording] public = true`` (the
default); otherwise a token of the room (any role), as a bearer token or, for
the <video> element that cannot send headers, ``?token=``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from ..auth import ROLES, Identity
from ..errors import AuthError
from .problem import Problem, json_response
from .sessions import _guard, authenticate, authorize, check_room_name
from .web import COMMON_HEADERS, TEMPLATES_DIR, content_security_policy

if TYPE_CHECKING:
    from ..app import EdgeContext

CONTROL_ROLES = frozenset({"host"})  # and admin (always allowed)
READ_ROLES = frozenset(ROLES)


def _summary(room: str, info: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "state", "started_at", "ended_at", "duration", "media_start", "media_type", "bytes", "error")
    out = {k: info[k] for k in keys if k in info}
    out["markers"] = len(info.get("markers", []))
    if info.get("state") == "ready":
        out["media_url"] = f"/v1/rooms/{room}/recordings/{info['id']}/media"
    return out


def replay_routes(ctx: "EdgeContext") -> list[BaseRoute]:
    recorder = ctx.recorder
    template = (TEMPLATES_DIR / "replay.html").read_text(encoding="utf-8")

    def room_of(request: Request) -> str:
        room = request.path_params["room"]
        check_room_name(room)
        return room

    def reader(request: Request, room: str) -> None:
        if ctx.config.recording.public:
            return
        token = request.query_params.get("token")
        try:
            if token:
                identity: Identity = ctx.authority.verify(token)
            else:
                identity = authenticate(ctx, request)
        except AuthError as exc:
            raise Problem(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
        authorize(identity, room, READ_ROLES)

    def recording(request: Request, room: str) -> dict[str, Any]:
        rid = request.path_params["recording"]
        info = recorder.get(room, rid)
        if info is None:
            detail = "no finished recording of this room" if rid == "latest" else "no such recording"
            raise Problem(404, "not_found", detail)
        return info

    async def control(request: Request) -> Response:
        room = room_of(request)
        authorize(authenticate(ctx, request), room, CONTROL_ROLES)
        if request.method == "GET":
            return json_response(recorder.status(room))
        if not recorder.enabled:
            raise Problem(409, "recording_disabled", "recording is off on this node ([recording] enabled)")
        if request.method == "POST":
            return json_response(recorder.start_room(room))
        return json_response(recorder.stop_room(room))

    async def list_recordings(request: Request) -> Response:
        room = room_of(request)
        reader(request, room)
        return json_response(
            {"room": room, "recordings": [_summary(room, i) for i in reversed(recorder.recordings(room))]}
        )

    async def media(request: Request) -> Response:
        room = room_of(request)
        reader(request, room)
        info = recording(request, room)
        path = recorder.media_path(info)
        if path is None or not path.is_file():
            raise Problem(404, "not_found", f"recording {info['id']} has no media ({info.get('state')})")
        return FileResponse(
            path,
            media_type=info.get("media_type", "video/webm"),
            headers={"Cache-Control": "no-cache", **COMMON_HEADERS},
        )

    async def markers(request: Request) -> Response:
        room = room_of(request)
        reader(request, room)
        info = recording(request, room)
        return json_response(
            {
                "room": room,
                "recording": info["id"],
                "state": info.get("state"),
                "started_at": info.get("started_at"),
                "duration": info.get("duration"),
                "media_type": info.get("media_type"),
                "media_url": f"/v1/rooms/{room}/recordings/{info['id']}/media",
                "markers": sorted(info.get("markers", []), key=lambda m: m.get("offset", 0)),
            },
            headers={"Cache-Control": "no-cache"},
        )

    async def page(request: Request) -> Response:
        room = room_of(request)
        body = template.replace("{{room}}", html.escape(room, quote=True)).replace(
            "{{public}}", "true" if ctx.config.recording.public else "false"
        )
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": content_security_policy(request),
                "Cache-Control": "no-store",
                **COMMON_HEADERS,
            },
        )

    return [
        Route("/v1/rooms/{room}/recording", _guard(control), methods=["GET", "POST", "DELETE"]),
        Route("/v1/rooms/{room}/recordings", _guard(list_recordings), methods=["GET"]),
        Route("/v1/rooms/{room}/recordings/{recording}/media", _guard(media), methods=["GET", "HEAD"]),
        Route("/v1/rooms/{room}/recordings/{recording}/markers", _guard(markers), methods=["GET"]),
        Route("/replay/{room}", _guard(page), methods=["GET"]),
    ]
