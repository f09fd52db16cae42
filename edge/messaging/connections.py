"""Message connections: a WebSocket, or the ``edge`` data channel of a WebRTC session.

Both queue outbound text frames without blocking the sender; a connection
whose queue is full drops what it cannot take (it is too slow to keep up) and
a dead one is closed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..auth import Identity
from .router import new_connection_id
from .wsframes import raw_transport, text_frame

if TYPE_CHECKING:
    from .router import MessageRouter

OUTBOUND_QUEUE = 1024
# Bytes a connection may have waiting in its transport before it counts as too
# slow and loses messages (its own, nobody else's).
MAX_WRITE_BUFFER = 1 << 20
DATACHANNEL_MAX_BUFFERED = 1 << 20


class WebSocketConnection:
    kind = "websocket"

    def __init__(self, websocket: WebSocket, room: str, identity: Identity) -> None:
        self.id = new_connection_id(self.kind)
        self.websocket = websocket
        self.params = {k: v for k, v in websocket.query_params.items() if k != "token"}
        self.room = room
        self.identity = identity
        self.closed = False
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(OUTBOUND_QUEUE)
        self._close: tuple[int, str] = (1000, "")
        # Set once accepted under uvicorn: frames are then written directly
        # (see wsframes.py), in order, without the queue and writer task.
        self.transport: asyncio.Transport | None = None

    def send_text(self, text: str) -> bool:
        if self.transport is not None:
            return self.send_frame(text_frame(text.encode()))
        if self.closed:
            return False
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            return False
        return True

    def send_frame(self, frame: bytes) -> bool:
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            return False
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            return False
        transport.write(frame)
        return True

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._close = (code, reason)
        if self.transport is not None:  # no writer task on the fast path
            asyncio.ensure_future(self._close_now(code, reason))
            return
        try:
            self._queue.put_nowait(None)
        except asyncio.QueueFull:  # make room for the close: the backlog is moot now
            self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def _close_now(self, code: int, reason: str) -> None:
        try:
            await self.websocket.close(code, reason)
        except (RuntimeError, ConnectionError):
            pass

    async def writer(self) -> None:
        try:
            while True:
                text = await self._queue.get()
                if text is None:
                    code, reason = self._close
                    await self.websocket.close(code, reason)
                    return
                await self.websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            self.closed = True

    async def serve(self, router: "MessageRouter") -> None:
        """Read until the client goes; messages are handled one at a time, in order."""
        self.transport = raw_transport(self.websocket.scope)
        writer = asyncio.ensure_future(self.writer())
        router.attach(self)
        try:
            while not self.closed:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is not None:
                    await router.receive(self, message["text"])
                elif message.get("bytes") is not None:
                    await router.receive(self, message["bytes"], binary=True)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.closed = True
            router.detach(self)
            if not writer.done():
                writer.cancel()


class DataChannelConnection:
    kind = "datachannel"

    def __init__(self, channel: Any, room: str, identity: Identity) -> None:
        self.id = new_connection_id(self.kind)
        self.channel = channel
        self.room = room
        self.identity = identity
        self.closed = False
        self._inbox: asyncio.Queue[tuple[str | bytes, bool]] = asyncio.Queue(256)

    def send_text(self, text: str) -> bool:
        if self.closed or self.channel.readyState != "open":
            return False
        if self.channel.bufferedAmount > DATACHANNEL_MAX_BUFFERED:
            return False
        self.channel.send(text)
        return True

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.channel.close()

    def start(self, router: "MessageRouter") -> None:
        @self.channel.on("message")
        def on_message(message: str | bytes) -> None:
            try:
                self._inbox.put_nowait((message, isinstance(message, bytes)))
            except asyncio.QueueFull:
                router.dropped.labels("inbound_queue_full").inc()

        @self.channel.on("close")
        def on_close() -> None:
            self.closed = True
            pump_task.cancel()  # its finally detaches the connection, full inbox or not

        async def pump() -> None:
            router.attach(self)
            try:
                while not self.closed:
                    message, binary = await self._inbox.get()
                    await router.receive(self, message, binary=binary)
            finally:
                self.closed = True
                router.detach(self)

        pump_task = asyncio.ensure_future(pump())
