"""REST routes, mounted by edge under ``/v1/plugins/loyalty/``.

| route | who | what |
|---|---|---|
| ``GET /me`` | any token (the member is the token's ``sub``) | balances, tier, privileges, next tier, expiring points, profile |
| ``PATCH /me`` ``{birthday?, timezone?}`` | any token | set the birthday (once) and the time zone |
| ``GET /me/history[?limit=&before=]`` | any token | the member's ledger entries, newest first |
| ``GET /tiers`` | any token | the tiers: name, level, growth threshold, privileges |
| ``GET /members/{identity}`` | admin | as ``/me`` for that member, with recent tier changes |
| ``GET /members/{identity}/history[?limit=&before=]`` | admin | the member's ledger entries (with ``actor``) |
| ``PATCH /members/{identity}`` ``{birthday?, timezone?}`` | admin | correct the profile (the birthday too) |
| ``POST /members/{identity}/adjust`` ``{account, amount, reason, idempotency_key?}`` | admin | one ``adjust`` entry with the reason and the admin's identity |
| ``POST /members/{identity}/reverse`` ``{event_id, reason}`` | admin | reverse one of the member's entries |

Refusals are ``application/problem+json`` with a code: ``invalid_json``,
``invalid_field`` (+ ``field``), ``invalid_identity``, ``not_found``,
``not_reversible``, ``insufficient``, ``birthday_locked``, ``unavailable``,
and the node's ``unauthorized`` / ``forbidden``.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge.api.problem import Problem, json_response
from edge.messaging.envelope import ALL_ROLES
from edge.plugins.api import Edge

from .clock import check_zone, parse_birthday
from .service import Loyalty
from .store import LoyaltyError

MAX_BODY = 4096
MAX_IDENTITY = 200
MAX_AMOUNT = 10_000_000
ADMIN = ("admin",)

Handler = Callable[[Request], Awaitable[Response]]


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise Problem(413, "too_large", f"the body may be at most {MAX_BODY} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Problem(400, "invalid_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise Problem(400, "invalid_json", "the body must be a JSON object")
    return body


def _field(message: str, name: str) -> Problem:
    return Problem(400, "invalid_field", message, field=name)


def _identity(request: Request) -> str:
    identity = request.path_params["identity"]
    if not 0 < len(identity) <= MAX_IDENTITY:
        raise Problem(400, "invalid_identity", f"identities are 1-{MAX_IDENTITY} characters")
    return identity


def _page(request: Request) -> tuple[int, int | None]:
    try:
        limit = int(request.query_params.get("limit", "50"))
        before_raw = request.query_params.get("before")
        before = int(before_raw) if before_raw is not None else None
    except ValueError:
        raise _field("limit and before must be integers", "limit") from None
    if not 1 <= limit <= 500:
        raise _field("limit must be from 1 to 500", "limit")
    return limit, before


def profile_fields(body: dict[str, Any]) -> dict[str, str]:
    """The ``birthday`` / ``timezone`` of a profile change, checked (``invalid_field``)."""
    unknown = set(body) - {"birthday", "timezone"}
    if unknown:
        raise _field(f"unknown fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    out: dict[str, str] = {}
    if "birthday" in body:
        try:
            out["birthday"] = parse_birthday(body["birthday"])
        except ValueError as exc:
            raise _field(str(exc), "birthday") from None
    if "timezone" in body:
        if not isinstance(body["timezone"], str) or not check_zone(body["timezone"]):
            raise _field("timezone must be an IANA time zone name such as Asia/Tokyo", "timezone")
        out["timezone"] = body["timezone"]
    if not out:
        raise _field("give birthday and/or timezone", "birthday")
    return out


def _history_view(entries: list[dict[str, Any]], admin: bool) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        e = dict(e)
        e.pop("identity", None)
        if not admin:
            e.pop("actor", None)
        out.append(e)
    return out


def routes(edge: Edge, get: Callable[[], Loyalty]) -> list[Route]:
    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except LoyaltyError as exc:
                raise Problem(exc.status, exc.code, exc.detail) from None

        return run

    def svc() -> Loyalty:
        loyalty = get()
        if not loyalty.started:
            raise Problem(503, "unavailable", "the loyalty plugin is not started")
        return loyalty

    # the member ------------------------------------------------------------------------

    async def me(request: Request) -> Response:
        who = edge.authenticate(request, ALL_ROLES)
        return json_response(await svc().status(who.identity))

    async def patch_me(request: Request) -> Response:
        who = edge.authenticate(request, ALL_ROLES)
        fields = profile_fields(await _body(request))
        await svc().set_profile(who.identity, **fields)
        return json_response(await svc().status(who.identity))

    async def my_history(request: Request) -> Response:
        who = edge.authenticate(request, ALL_ROLES)
        limit, before = _page(request)
        entries = await svc().history(who.identity, limit, before)
        return json_response(
            {"entries": _history_view(entries, False), "next": entries[-1]["seq"] if len(entries) == limit else None}
        )

    async def tiers(request: Request) -> Response:
        edge.authenticate(request, ALL_ROLES)
        loyalty = get()
        return json_response(
            {
                "tiers": [
                    {"name": t.name, "level": i, "growth": t.growth, "privileges": sorted(t.privileges)}
                    for i, t in enumerate(loyalty.config.tiers, start=1)
                ],
                "downgrade": loyalty.config.downgrade,
            }
        )

    # admins ------------------------------------------------------------------------------

    async def member(request: Request) -> Response:
        edge.authenticate(request, ADMIN)
        identity = _identity(request)
        status = await svc().status(identity)
        status["tier_changes"] = await svc().tier_changes(identity)
        return json_response(status)

    async def member_history(request: Request) -> Response:
        edge.authenticate(request, ADMIN)
        identity = _identity(request)
        limit, before = _page(request)
        entries = await svc().history(identity, limit, before)
        return json_response(
            {"entries": _history_view(entries, True), "next": entries[-1]["seq"] if len(entries) == limit else None}
        )

    async def patch_member(request: Request) -> Response:
        edge.authenticate(request, ADMIN)
        identity = _identity(request)
        fields = profile_fields(await _body(request))
        await svc().set_profile(identity, force=True, **fields)
        return json_response(await svc().status(identity))

    async def adjust(request: Request) -> Response:
        admin = edge.authenticate(request, ADMIN)
        identity = _identity(request)
        body = await _body(request)
        unknown = set(body) - {"account", "amount", "reason", "idempotency_key"}
        if unknown:
            raise _field(f"unknown fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
        account = body.get("account")
        if account not in ("points", "growth"):
            raise _field("account must be \"points\" or \"growth\"", "account")
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or abs(amount) > MAX_AMOUNT:
            raise _field(f"amount must be a non-zero integer from -{MAX_AMOUNT} to {MAX_AMOUNT}", "amount")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
            raise _field("reason must be a non-empty string of at most 500 characters", "reason")
        key = body.get("idempotency_key", request.headers.get("idempotency-key"))
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 100):
            raise _field("idempotency_key must be a string of 1-100 characters", "idempotency_key")
        outcome = await svc().adjust(identity, account, amount, reason.strip(), admin.identity, key)
        if outcome.status == "insufficient":
            raise Problem(409, "insufficient", f"the adjustment would make the {account} balance negative", **outcome.info)
        points, growth = svc().balance(identity)
        return json_response(
            {
                "status": outcome.status,
                "event_id": outcome.info.get("event_id"),
                "entries": _history_view(outcome.entries, True),
                "points": points,
                "growth": growth,
            },
            status=201 if outcome.status == "adjusted" else 200,
        )

    async def reverse(request: Request) -> Response:
        admin = edge.authenticate(request, ADMIN)
        identity = _identity(request)
        body = await _body(request)
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 300:
            raise _field("event_id must be the id of one of the member's entries", "event_id")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
            raise _field("reason must be a non-empty string of at most 500 characters", "reason")
        outcome = await svc().reverse(identity, event_id, reason.strip(), admin.identity)
        if outcome.status == "not_found":
            raise Problem(404, "not_found", f"the member has no entry {event_id!r}")
        if outcome.status == "not_reversible":
            raise Problem(409, "not_reversible", "reversal and expiry entries cannot be reversed")
        points, growth = svc().balance(identity)
        return json_response(
            {
                "status": outcome.status,
                "event_id": outcome.info.get("event_id"),
                "entries": _history_view(outcome.entries, True),
                "points": points,
                "growth": growth,
            },
            status=201 if outcome.status == "reversed" else 200,
        )

    return [
        Route("/me", guarded(me), methods=["GET"]),
        Route("/me", guarded(patch_me), methods=["PATCH"]),
        Route("/me/history", guarded(my_history), methods=["GET"]),
        Route("/tiers", guarded(tiers), methods=["GET"]),
        Route("/members/{identity}", guarded(member), methods=["GET"]),
        Route("/members/{identity}", guarded(patch_member), methods=["PATCH"]),
        Route("/members/{identity}/history", guarded(member_history), methods=["GET"]),
        Route("/members/{identity}/adjust", guarded(adjust), methods=["POST"]),
        Route("/members/{identity}/reverse", guarded(reverse), methods=["POST"]),
    ]
