"""Helpers for the loyalty tests: an in-process node with the loyalty plugin, and
``Shop``, a tiny test plugin standing in for commerce and its consumers.

``Shop`` adds admin-only routes under ``/v1/plugins/shop/`` that do what
another plugin would: ``edge.emit`` a commerce event, and call the ``loyalty``
service (``redeem``, ``reverse_redemption``, ``tier``, ``balance``). Each route
waits until the loyalty writer has finished what was queued (``settle``), so a
test reads the result without sleeping.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edge.app import create_app
from edge.plugins import hookimpl
from edge.plugins.api import Edge
from edge_loyalty.plugin import LoyaltyPlugin
from tests.unit.hook_probe import AUTHORITY, node_config

T0 = 1_741_996_800.0  # 2025-03-15T00:00:00Z


def token(identity: str, role: str = "viewer", room: str = "*") -> str:
    return AUTHORITY.issue(room=room, identity=identity, role=role)


def bearer(identity: str, role: str = "viewer", room: str = "*") -> dict[str, str]:
    return {"Authorization": "Bearer " + token(identity, role, room)}


ADMIN = bearer("ops-anna", "admin")


class Shop:
    """The test's stand-in for commerce (emits events) and for a plugin using the service."""

    @hookimpl
    def edge_http_routes(self, edge: Edge) -> list[Route]:
        def loyalty() -> Any:
            svc = edge.service("loyalty")
            assert svc is not None, "the loyalty service is not provided"
            return svc

        async def body(request: Request) -> dict[str, Any]:
            edge.authenticate(request, ["admin"])
            return orjson.loads(await request.body())  # type: ignore[no-any-return]

        async def emit(request: Request) -> Response:
            data = await body(request)
            edge.emit(data["name"], data["data"], source=data.get("source", "commerce"))
            await loyalty().settle()
            return JSONResponse({"ok": True})

        async def redeem(request: Request) -> Response:
            data = await body(request)
            ok = await loyalty().redeem(data["identity"], data["points"], data["order_id"])
            return JSONResponse({"ok": ok})

        async def reverse(request: Request) -> Response:
            data = await body(request)
            return JSONResponse({"ok": await loyalty().reverse_redemption(data["order_id"])})

        async def member(request: Request) -> Response:
            edge.authenticate(request, ["admin"])
            identity = request.path_params["identity"]
            await loyalty().settle()
            tier = loyalty().tier(identity)
            points, growth = loyalty().balance(identity)
            return JSONResponse(
                {
                    "tier": tier.name, "level": tier.level, "privileges": sorted(tier.privileges),
                    "points": points, "growth": growth,
                    "priority_shipping": loyalty().has_privilege(identity, "priority_shipping"),
                }
            )

        return [
            Route("/emit", emit, methods=["POST"]),
            Route("/redeem", redeem, methods=["POST"]),
            Route("/reverse", reverse, methods=["POST"]),
            Route("/member/{identity}", member, methods=["GET"]),
        ]


def make_node(data_dir: Path, config: dict[str, Any] | None = None, *extra: tuple[str, object]) -> tuple[Any, LoyaltyPlugin]:
    """An in-process node with a fresh loyalty plugin (+ ``Shop`` and ``extra`` plugins)."""
    plugin = LoyaltyPlugin()
    cfg = node_config(data_dir, {"loyalty": config or {}})
    app = create_app(cfg, load_entrypoints=False, plugins=[*extra, ("shop", Shop()), ("loyalty", plugin)])
    return app, plugin


def wait_until(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy (then return it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        time.sleep(interval)
