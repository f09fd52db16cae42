"""Plugin HTTP routes (mounted under /v1/plugins/<name>/) and the plugin list."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from .problem import json_response
from .sessions import _guard, authenticate, authorize

if TYPE_CHECKING:
    from ..app import EdgeContext


def _guarded(route: BaseRoute) -> BaseRoute:
    """A plugin's handler may raise Problem (e.g. from edge.authenticate)."""
    if isinstance(route, Route) and inspect.iscoroutinefunction(route.endpoint):
        return Route(
            route.path, _guard(route.endpoint), methods=list(route.methods or []) or None, name=route.name
        )
    return route


def plugin_routes(ctx: "EdgeContext") -> list[BaseRoute]:
    async def list_plugins(request: Request) -> Response:
        authorize(authenticate(ctx, request), None, frozenset({"admin"}))
        return json_response({"plugins": ctx.plugins.describe()})

    routes: list[BaseRoute] = [Route("/v1/plugins", _guard(list_plugins), methods=["GET"])]
    for name, declared in ctx.plugins.collect("edge_http_routes", edge=ctx.edge):
        if not isinstance(declared, list) or not all(isinstance(r, BaseRoute) for r in declared):
            # A plugin returning garbage loses its routes, not the node.
            ctx.plugins.report_bad_result(name, "edge_http_routes", "a list of Starlette routes")
            continue
        routes.append(Mount(f"/v1/plugins/{name}", routes=[_guarded(r) for r in declared]))
    return routes
