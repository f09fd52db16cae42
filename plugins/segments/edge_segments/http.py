"""REST routes, mounted by edge under ``/v1/plugins/segments/``.

| route | who | what |
|---|---|---|
| ``GET /rooms/{room}/metrics`` | host, cohost, admin | business metrics (metrics.py) as JSON |
| ``GET /rooms/{room}/metrics.csv`` | host, cohost, admin | the same as ``metric,value`` CSV |
| ``GET /rooms/{room}/segments[?limit=]`` | host, cohost, admin | members of each segment now |
| ``GET /rooms/{room}/referrals[?limit=]`` | host, cohost, admin | referrals, conversions, per-referrer summary |
| ``GET /rooms/{room}/profiles/{identity}`` | host, cohost, admin; the viewer themself | one behaviour profile |
| ``GET /rooms/{room}/coupons[?identity=]`` | host, cohost, admin (all); a viewer (their own) | coupons |
| ``GET /rooms/{room}/draws/{draw_id}`` | any token of the room | a draw: commitment, then seed, participants, winners |

Refusals are ``application/problem+json``: ``invalid_room``, ``invalid_query``,
``not_found``, ``unavailable`` and the node's ``unauthorized`` / ``forbidden``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge.api.problem import Problem, json_response
from edge.messaging.envelope import ALL_ROLES
from edge.plugins.api import Edge

from . import draws, metrics
from .engine import SEGMENTS, micros_to_str

if TYPE_CHECKING:
    from .plugin import SegmentsPlugin
    from .store import Store

ROOM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as the node's own room names
HOSTS = ("host", "cohost")  # admin passes every role check
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000

Handler = Callable[[Request], Awaitable[Response]]


def _room(request: Request) -> str:
    room = request.path_params["room"]
    if not ROOM.fullmatch(room):
        raise Problem(400, "invalid_room", "room names are 1-64 letters, digits, '.', '_' or '-'")
    return room


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise Problem(400, "invalid_query", f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    return int(raw)


def routes(edge: Edge, plugin: "SegmentsPlugin") -> list[Route]:
    def store() -> "Store":
        if plugin.store is None:
            raise Problem(503, "unavailable", "the segments plugin is not started")
        return plugin.store

    async def room_metrics(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, HOSTS, room=room)
        now = plugin.catch_up()
        return json_response(metrics.compute(store(), room, now, plugin.config.active_days))

    async def room_metrics_csv(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, HOSTS, room=room)
        now = plugin.catch_up()
        body = metrics.to_csv(metrics.compute(store(), room, now, plugin.config.active_days))
        return Response(
            body, media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="segments-{room}-metrics.csv"'},
        )

    async def segments(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, HOSTS, room=room)
        limit = _limit(request)
        now = plugin.catch_up()
        db = store()
        out: dict[str, Any] = {}
        for segment in SEGMENTS:
            members = db.members(room, segment, limit)
            out[segment] = {
                "count": db.member_count(room, segment),
                "members": [{"identity": i, "entry": e, "entered_at": at} for i, e, at in members],
            }
        return json_response({"room": room, "at": now, "segments": out})

    async def referrals(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, HOSTS, room=room)
        limit = _limit(request)
        db = store()
        summary = [
            {"referrer": r, "invites": n, "conversions": c, "converted_amount_base": micros_to_str(m)}
            for r, n, c, m in db.referral_summary(room)
        ]
        return json_response({"room": room, "referrals": db.referrals(room, limit), "by_referrer": summary})

    async def profile(request: Request) -> Response:
        room = _room(request)
        identity = request.path_params["identity"]
        caller = edge.authenticate(request, ALL_ROLES, room=room)
        if caller.role not in (*HOSTS, "admin") and caller.identity != identity:
            raise Problem(403, "forbidden", "viewers may read their own profile only")
        plugin.catch_up()
        p = plugin.profile(room, identity)
        if p is None:
            raise Problem(404, "not_found", f"no viewer {identity!r} was ever seen in this room")
        view = p.view(plugin.clock())
        view["actions"] = [
            {"segment": s, "entry": e, "action": a, "at": at} for s, e, a, at in store().actions(room, identity)
        ]
        return json_response(view)

    async def coupons(request: Request) -> Response:
        room = _room(request)
        caller = edge.authenticate(request, ALL_ROLES, room=room)
        identity = request.query_params.get("identity")
        if caller.role not in (*HOSTS, "admin"):
            if identity is not None and identity != caller.identity:
                raise Problem(403, "forbidden", "viewers may list their own coupons only")
            identity = caller.identity
        limit = _limit(request)
        return json_response({"room": room, "coupons": [c.view() for c in store().coupons(room, identity, limit)]})

    async def draw(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, ALL_ROLES, room=room)
        draw_id = request.path_params["draw_id"]
        found = store().draw(room, draw_id) if len(draw_id) <= 64 else None
        if found is None:
            raise Problem(404, "not_found", f"no draw {draw_id!r} in this room")
        done = found["run_at"] is not None
        return json_response({
            "draw_id": found["draw_id"],
            "room": room,
            "title": found["title"],
            "status": "drawn" if done else "committed",
            "commitment": found["commitment"],
            "seed": found["seed"] if done else None,  # revealed only after the draw
            "winners_wanted": found["winners_wanted"],
            "participants": found["participants"],
            "winners": found["winners"],
            "created_at": found["created_at"],
            "run_at": found["run_at"],
            "algorithm": draws.ALGORITHM,
            "verified": draws.verify(found["seed"], found["commitment"], found["participants"], found["winners"])
            if done else None,
        })

    return [
        Route("/rooms/{room}/metrics", room_metrics, methods=["GET"]),
        Route("/rooms/{room}/metrics.csv", room_metrics_csv, methods=["GET"]),
        Route("/rooms/{room}/segments", segments, methods=["GET"]),
        Route("/rooms/{room}/referrals", referrals, methods=["GET"]),
        Route("/rooms/{room}/profiles/{identity}", profile, methods=["GET"]),
        Route("/rooms/{room}/coupons", coupons, methods=["GET"]),
        Route("/rooms/{room}/draws/{draw_id}", draw, methods=["GET"]),
    ]
