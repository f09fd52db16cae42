"""The WHIP/WHEP session resource (RFC 9725 and the WHEP draft), shared by both.

POST /{kind}/{room}            offer (application/sdp) -> 201, Location, answer
OPTIONS /{kind}/{room}         Accept-Post (CORS preflight is the middleware's)
PATCH /{kind}/{room}/{id}      trickle ICE (application/trickle-ice-sdpfrag) -> 204;
                               an ICE restart -> 422 (not supported: re-POST instead)
DELETE /{kind}/{room}/{id}     end the session (200, also when it already ended)
GET /{kind}/{room}/{id}        JSON: the session's slots and the room's producers
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..auth import PUBLISH_ROLES, Identity
from ..errors import AuthError, ForbiddenError, LimitExceededError, NegotiationError
from ..media.session import Session
from .problem import Problem, json_response

if TYPE_CHECKING:
    from ..app import EdgeContext

ROOM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SOURCE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def check_room_name(room: str) -> None:
    if not ROOM_NAME.match(room):
        raise Problem(
            400,
            "invalid_room",
            "room names are 1-64 characters of letters, digits, '_', '.', '-' "
            "and start with a letter or digit",
        )


def authenticate(ctx: "EdgeContext", request: Request) -> Identity:
    try:
        return ctx.authority.from_authorization(request.headers.get("authorization"))
    except AuthError as exc:
        raise Problem(401, "unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


def authorize(identity: Identity, room: str | None, roles: frozenset[str]) -> None:
    try:
        identity.require(room, roles)
    except ForbiddenError as exc:
        raise Problem(403, "forbidden", str(exc)) from None


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise Problem(413, "body_too_large", f"request body is over {limit} bytes")
        except ValueError:
            raise Problem(400, "bad_request", "Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, "body_too_large", f"request body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def require_content_type(request: Request, expected: str) -> None:
    got = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if got != expected:
        raise Problem(
            415,
            "unsupported_media_type",
            f"Content-Type must be {expected}, got {got or 'nothing'}",
            headers={"Accept-Post": expected} if expected == "application/sdp" else {},
        )


Handler = Callable[[Request], Awaitable[Response]]


def _guard(handler: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Problem as problem:
            return problem.response()

    return run


def session_routes(ctx: "EdgeContext", kind: str) -> list[Route]:
    publish = kind == "whip"
    roles = PUBLISH_ROLES if publish else frozenset({"viewer", "host", "cohost", "moderator", "service"})

    async def create(request: Request) -> Response:
        room = request.path_params["room"]
        decision = ctx.session_limiter.check(request.client.host if request.client else "?")
        if not decision.allowed:
            raise Problem(
                429,
                "rate_limited",
                "too many sessions from this address",
                headers={"Retry-After": str(max(1, int(decision.retry_after + 0.999)))},
            )
        identity = authenticate(ctx, request)
        authorize(identity, room, roles)
        check_room_name(room)
        require_content_type(request, "application/sdp")
        body = await read_body(request, ctx.config.http.max_body_bytes)
        try:
            offer = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Problem(400, "malformed_sdp", "the SDP offer is not UTF-8") from None
        sources: list[str] = []
        if publish and request.query_params.get("sources"):
            sources = [s.strip() for s in request.query_params["sources"].split(",")]
            bad = [s for s in sources if s and not SOURCE_NAME.match(s)]
            if bad:
                raise Problem(400, "invalid_source", f"bad source names: {', '.join(bad)}")
        try:
            session, answer = await ctx.node.create_session(
                room_name=room, identity=identity, offer_sdp=offer, publish=publish, sources=sources
            )
        except NegotiationError as exc:
            ctx.node.metrics.session_errors.labels(kind, str(exc.status)).inc()
            code = "no_common_codec" if exc.status == 406 else "malformed_sdp"
            extra = {"supported_codecs": exc.supported} if exc.supported else {}
            raise Problem(exc.status, code, str(exc), **extra) from None
        except LimitExceededError as exc:
            ctx.node.metrics.session_errors.labels(kind, "503").inc()
            raise Problem(503, "capacity", str(exc), headers={"Retry-After": "5"}) from None
        location = f"/{kind}/{room}/{session.id}"
        return Response(
            answer,
            status_code=201,
            media_type="application/sdp",
            headers={
                "Location": location,
                "ETag": f'"{session.id}"',
                "Accept-Patch": "application/trickle-ice-sdpfrag",
            },
        )

    def owned_session(request: Request, identity: Identity) -> Session | None:
        sid = request.path_params["session"]
        session = ctx.node.sessions.get(sid)
        if session is None:
            return None
        if session.room.name != request.path_params["room"] or session.kind != kind:
            raise Problem(404, "not_found", "no such session")
        if identity.role != "admin" and identity.identity != session.participant.identity:
            raise Problem(403, "forbidden", "this session belongs to another participant")
        return session

    async def patch(request: Request) -> Response:
        identity = authenticate(ctx, request)
        session = owned_session(request, identity)
        if session is None:
            raise Problem(404, "not_found", "no such session")
        require_content_type(request, "application/trickle-ice-sdpfrag")
        body = await read_body(request, ctx.config.http.max_body_bytes)
        try:
            applied = await session.transport.add_ice_fragment(body.decode("utf-8", "replace"))
        except NegotiationError as exc:
            raise Problem(400, "malformed_sdpfrag", str(exc)) from None
        if not applied:
            raise Problem(
                422,
                "ice_restart_unsupported",
                "ICE restarts are not supported: DELETE this session and POST a new offer",
            )
        return Response(status_code=204)

    async def delete(request: Request) -> Response:
        identity = authenticate(ctx, request)
        session = owned_session(request, identity)
        if session is None:
            if request.path_params["session"] in ctx.node.ended:
                return Response(status_code=200)
            raise Problem(404, "not_found", "no such session")
        await ctx.node.close_session(session.id, "delete")
        return Response(status_code=200)

    async def describe(request: Request) -> Response:
        identity = authenticate(ctx, request)
        session = owned_session(request, identity)
        if session is None:
            raise Problem(404, "not_found", "no such session")
        return json_response(session.describe())

    async def options(request: Request) -> Response:
        return Response(
            status_code=204,
            headers={"Accept-Post": "application/sdp", "Allow": "OPTIONS, POST"},
        )

    base = f"/{kind}/{{room}}"
    return [
        Route(base, _guard(create), methods=["POST"]),
        Route(base, _guard(options), methods=["OPTIONS"]),
        Route(base + "/{session}", _guard(patch), methods=["PATCH"]),
        Route(base + "/{session}", _guard(delete), methods=["DELETE"]),
        Route(base + "/{session}", _guard(describe), methods=["GET"]),
    ]
