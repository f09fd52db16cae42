"""The hot path to Redis: one connection, automatic pipelining, hiredis parsing.

Every ``call`` is packed (``hiredis.pack_command``) into a buffer that is
written once per event-loop step, so the commands of a burst of buyers share one
write, one read by Redis, one AOF fsync (``appendfsync always`` fsyncs once per
Redis event-loop cycle) and one reply read here. Replies are matched to callers
in order (Redis answers a connection's commands in order). This costs a fraction
of redis-py's per-command overhead; redis-py is still used for everything that
is not per attempt (recovery, reconciliation, reads).

A connection that breaks fails the calls in flight with ``ConnectionError``; the
next call connects again. A call whose connection broke may or may not have run
in Redis: the scripts sent here are idempotent (an attempt carries its key, a
move of an order happens once), so the caller may simply retry.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any

import hiredis
from redis.connection import parse_url
from redis.exceptions import NoScriptError, ResponseError


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.buffer: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            waiter = self.waiters.popleft()
            if waiter.done():
                continue
            if isinstance(reply, Exception):
                text = str(reply)
                waiter.set_exception(NoScriptError(text) if text.startswith("NOSCRIPT") else ResponseError(text))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"redis connection lost: {exc!r}")
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved: a caller that gave up must not warn

    def send(self, packed: bytes, loop: asyncio.AbstractEventLoop) -> "asyncio.Future[Any]":
        future: asyncio.Future[Any] = loop.create_future()
        self.waiters.append(future)
        self.buffer.append(packed)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.buffer and self.transport is not None and not self.closed:
            data = b"".join(self.buffer)
            self.buffer.clear()
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Pipeliner:
    """``await call(*args)``: one Redis command, pipelined with whatever else is going out."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self._params = parse_url(url)
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self.commands = 0

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        params = self._params
        if "path" in params:
            connecting = loop.create_unix_connection(_Protocol, params["path"])
        else:
            context = ssl.create_default_context() if self.url.startswith("rediss://") else None
            connecting = loop.create_connection(_Protocol, params.get("host", "127.0.0.1"),
                                                params.get("port", 6379), ssl=context)
        _, protocol = await asyncio.wait_for(connecting, self.connect_timeout)
        setup: list[tuple[Any, ...]] = []
        if params.get("password"):
            user = params.get("username")
            setup.append(("AUTH", user, params["password"]) if user else ("AUTH", params["password"]))
        if params.get("db"):
            setup.append(("SELECT", params["db"]))
        for command in setup:
            await protocol.send(hiredis.pack_command(command), loop)
        return protocol

    async def _ready(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            protocol = await asyncio.shield(self._connecting)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectionError(f"cannot connect to redis: {exc!r}") from exc
        self._protocol = protocol
        return protocol

    async def call(self, *args: Any) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._ready()
        self.commands += 1
        # A caller that gives up cancels only its own slot: the reply is read and dropped.
        return await protocol.send(hiredis.pack_command(args), asyncio.get_running_loop())

    async def close(self) -> None:
        if self._protocol is not None:
            self._protocol.flush()
            self._protocol.close()
            self._protocol = None
