"""REST routes and the agent console, mounted by edge under ``/v1/plugins/aftersales/``.

| route | who | what |
|---|---|---|
| ``GET /rooms/{room}/tickets[?status=open\\|closed\\|all&limit=]`` | service, host, admin of the room | tickets; ``open`` (default) in queue order: priority first, then oldest first |
| ``GET /tickets/{ticket_id}`` | service, host, admin of its room | one ticket with its conversation |
| ``GET /rooms/{room}/faq`` | any token of the room | the room's FAQ entries |
| ``POST /rooms/{room}/faq`` | host, admin | add an entry ``{question, answer, keywords?, sku?, clip_at_seconds?}`` |
| ``GET /rooms/{room}/faq/{faq_id}`` | any token of the room | one entry |
| ``PATCH /rooms/{room}/faq/{faq_id}`` | host, admin | change some fields |
| ``DELETE /rooms/{room}/faq/{faq_id}`` | host, admin | delete |
| ``POST /rooms/{room}/faq/match`` ``{text, sku?}`` | host, admin | try a question: every entry's score and the match |
| ``GET /rooms/{room}/stats`` | service, host, admin of the room | open/closed counts, the room's first-response median |
| ``GET /stats`` | admin, or a service/host token for every room (``*``) | the node's counts, median and alert |
| ``GET /console/{room}`` | no token (entered in the page) | the agent console page |

Refusals are ``application/problem+json`` (``edge.api.problem.Problem``) with a
code: ``invalid_room``, ``invalid_json``, ``invalid_field`` (+ ``field``),
``invalid_query``, ``not_found``, ``too_many``, ``too_large``, and the node's
``unauthorized`` / ``forbidden``. A refused request changes nothing.
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from edge.api.problem import Problem, json_response
from edge.api.web import COMMON_HEADERS, TEMPLATES_DIR, content_security_policy
from edge.messaging.envelope import ALL_ROLES
from edge.plugins.api import Edge

from .faq import SKU, FaqError, check_entry, score, tokens
from .service import Aftersales

ROOM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as the node's own room names
TICKET = re.compile(r"^tk-[0-9a-f]{12}$")
MAX_BODY = 16 * 1024
READERS = frozenset({"service", "host"})  # admin passes every role check
EDITORS = frozenset({"host"})
CONSOLE = TEMPLATES_DIR / "service.html"

Handler = Callable[[Request], Awaitable[Response]]


def _room(request: Request) -> str:
    room = request.path_params["room"]
    if not ROOM.fullmatch(room):
        raise Problem(400, "invalid_room", "room names are 1-64 letters, digits, '.', '_' or '-'")
    return room


def _faq_id(request: Request) -> int:
    raw = request.path_params["faq_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise Problem(404, "not_found", f"no FAQ entry {raw!r}")
    return int(raw)


async def _body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Problem(413, "too_large", f"the body may be at most {MAX_BODY} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Problem(400, "invalid_json", "the body must be a JSON object") from None


def _limit(request: Request, default: int = 100, high: int = 500) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise Problem(400, "invalid_query", f"limit must be an integer from 1 to {high}")
    return int(raw)


def console_page(request: Request, room: str, path: Path = CONSOLE) -> Response:
    try:
        template = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Problem(404, "not_found", "the agent console page (edge/web/templates/service.html) is not installed") from None
    return HTMLResponse(
        template.replace("{{room}}", html.escape(room, quote=True)),
        headers={
            "Content-Security-Policy": content_security_policy(request),
            "Cache-Control": "no-store",
            **COMMON_HEADERS,
        },
    )


def routes(edge: Edge, get_service: Callable[[], Aftersales]) -> list[Route]:
    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except FaqError as exc:
                raise Problem(400, "invalid_field", exc.message, field=exc.field) from None

        run.__name__ = handler.__name__
        return run

    # tickets ------------------------------------------------------------------------------

    async def list_tickets(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, READERS, room=room)
        status = request.query_params.get("status", "open")
        if status not in ("open", "closed", "all"):
            raise Problem(400, "invalid_query", "status must be open, closed or all")
        limit = _limit(request)
        tickets = await get_service().store.run(lambda db: db.tickets(room, status, limit))
        return json_response({"room": room, "status": status, "tickets": [t.view() for t in tickets]})

    async def get_ticket(request: Request) -> Response:
        who = edge.authenticate(request, READERS)
        ticket_id = request.path_params["ticket_id"]
        svc = get_service()
        ticket = await svc.store.run(lambda db: db.ticket(ticket_id)) if TICKET.fullmatch(ticket_id) else None
        if ticket is None or not who.may_enter(ticket.room):
            raise Problem(404, "not_found", f"no ticket {ticket_id!r}")
        messages = await svc.store.run(lambda db: db.messages(ticket_id))
        return json_response({"ticket": ticket.view(), "messages": [m.view() for m in messages]})

    # FAQ ------------------------------------------------------------------------------------

    async def list_faq(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, ALL_ROLES, room=room)
        entries = await get_service().faqs(room)
        return json_response({"room": room, "faq": [f.view() for f in entries]})

    async def create_faq(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, EDITORS, room=room)
        svc = get_service()
        columns = check_entry(await _body(request), svc.config.max_text)
        limit = svc.config.max_faq_per_room
        faq = await svc.store.run(lambda db: db.create_faq(room, columns, limit, time.time()))
        if faq is None:
            raise Problem(409, "too_many", f"a room may have at most {limit} FAQ entries")
        svc.faq_changed(room)
        return json_response(faq.view(), 201)

    async def get_faq(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, ALL_ROLES, room=room)
        faq_id = _faq_id(request)
        faq = await get_service().store.run(lambda db: db.faq(room, faq_id))
        if faq is None:
            raise Problem(404, "not_found", f"no FAQ entry {faq_id} in room {room!r}")
        return json_response(faq.view())

    async def patch_faq(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, EDITORS, room=room)
        faq_id = _faq_id(request)
        svc = get_service()
        changes = check_entry(await _body(request), svc.config.max_text, partial=True)
        if not changes:
            raise Problem(400, "invalid_field", "nothing to change", field="body")
        faq = await svc.store.run(lambda db: db.update_faq(room, faq_id, changes, time.time()))
        if faq is None:
            raise Problem(404, "not_found", f"no FAQ entry {faq_id} in room {room!r}")
        svc.faq_changed(room)
        return json_response(faq.view())

    async def delete_faq(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, EDITORS, room=room)
        faq_id = _faq_id(request)
        svc = get_service()
        if not await svc.store.run(lambda db: db.delete_faq(room, faq_id)):
            raise Problem(404, "not_found", f"no FAQ entry {faq_id} in room {room!r}")
        svc.faq_changed(room)
        return Response(status_code=204)

    async def match_faq(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, EDITORS, room=room)
        body = await _body(request)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            raise FaqError("text", "must be a non-empty string")
        sku = body.get("sku")
        if sku is not None and (not isinstance(sku, str) or not SKU.fullmatch(sku)):
            raise FaqError("sku", "must be null or a SKU")
        svc = get_service()
        asked = tokens(body["text"])
        threshold = svc.config.faq_threshold
        scores = [{"faq_id": f.faq_id, "score": score(f, asked, sku)} for f in await svc.faqs(room)]
        scores.sort(key=lambda s: -s["score"])
        best = next((s for s in scores if s["score"] >= threshold), None)
        return json_response(
            {"tokens": sorted(asked), "threshold": threshold, "scores": scores, "match": best and best["faq_id"]}
        )

    # stats ------------------------------------------------------------------------------------

    async def room_stats(request: Request) -> Response:
        room = _room(request)
        edge.authenticate(request, READERS, room=room)
        return json_response(await get_service().stats(room))

    async def node_stats(request: Request) -> Response:
        who = edge.authenticate(request, READERS)
        if who.role != "admin" and who.room != "*":
            raise Problem(403, "forbidden", "node-wide stats need an admin token or a token for every room ('*')")
        return json_response(await get_service().stats(None))

    # console ------------------------------------------------------------------------------------

    async def console(request: Request) -> Response:
        return console_page(request, _room(request))

    return [
        Route("/rooms/{room}/tickets", guarded(list_tickets), methods=["GET"]),
        Route("/tickets/{ticket_id}", guarded(get_ticket), methods=["GET"]),
        Route("/rooms/{room}/faq", guarded(list_faq), methods=["GET"]),
        Route("/rooms/{room}/faq", guarded(create_faq), methods=["POST"]),
        Route("/rooms/{room}/faq/match", guarded(match_faq), methods=["POST"]),
        Route("/rooms/{room}/faq/{faq_id}", guarded(get_faq), methods=["GET"]),
        Route("/rooms/{room}/faq/{faq_id}", guarded(patch_faq), methods=["PATCH"]),
        Route("/rooms/{room}/faq/{faq_id}", guarded(delete_faq), methods=["DELETE"]),
        Route("/rooms/{room}/stats", guarded(room_stats), methods=["GET"]),
        Route("/stats", guarded(node_stats), methods=["GET"]),
        Route("/console/{room}", console, methods=["GET"]),
    ]
