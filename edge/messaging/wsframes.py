"""Broadcast frames encoded once: the WebSocket fast path.

A server-to-client text frame is the same bytes for every recipient (server
frames are not masked), so a room broadcast builds the frame once and writes it
to each connection's transport: no per-viewer JSON encode, frame build or task
switch. This needs the connection's asyncio transport, which uvicorn's
``websockets-sansio`` protocol holds (``asgi_send.__self__.transport``): that
is uvicorn-internal, so it is looked up defensively and any mismatch (another
server, another protocol, a negotiated compression extension) falls back to the
ordinary ASGI send path. ``edge serve`` runs uvicorn with that protocol and with
permessage-deflate off (chat envelopes are small; per-connection compression
would also make every frame different).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

SCOPE_KEY = "edge.asgi_send"


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def raw_transport(scope: dict[str, Any]) -> asyncio.Transport | None:
    send = scope.get(SCOPE_KEY)
    protocol = getattr(send, "__self__", None)
    if protocol is None or type(protocol).__name__ != "WebSocketsSansIOProtocol":
        return None
    conn = getattr(protocol, "conn", None)
    if conn is None or getattr(conn, "extensions", None):
        return None  # a compression extension: frames differ per connection
    transport = getattr(protocol, "transport", None)
    # Duck-typed: uvloop's TCPTransport is not an asyncio.Transport subclass.
    if all(hasattr(transport, name) for name in ("write", "is_closing", "get_write_buffer_size")):
        return transport  # type: ignore[no-any-return]
    return None


class KeepAsgiSend:
    """Outermost ASGI middleware: remembers the server's own ``send`` for WebSockets."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scope[SCOPE_KEY] = send
        await self.app(scope, receive, send)
