"""Test double of the commerce plugin for the recording tests (``[plugins] load``).

``POST /v1/plugins/pin_plugin/pin`` ``{"room", "sku", "title", "price", "currency"}``
(host or admin) emits ``commerce.product_pinned`` with the fields of docs/events.md
and answers the event's data, so the test knows the ``at`` the node stamped.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from edge.plugins import hookimpl
from edge.plugins.api import Edge

NAME = "pin_plugin"


@hookimpl
def edge_http_routes(edge: Edge) -> list[Route]:
    async def pin(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        room = str(body["room"])
        edge.authenticate(request, ["host"], room)
        data = {
            "room": room,
            "sku": str(body["sku"]),
            "title": str(body.get("title", body["sku"])),
            "price": str(body.get("price", "9.90")),
            "currency": str(body.get("currency", "USD")),
            "countdown": None,
            "at": time.time(),
        }
        edge.emit("commerce.product_pinned", data, source="commerce")
        return JSONResponse(data)

    return [Route("/pin", pin, methods=["POST"])]
