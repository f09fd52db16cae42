"""Automatic pipelining: Redis commands issued together share one round trip.

``call`` queues a command and returns its reply. Commands queued during one
event-loop step (a burst of buyers) are sent as one pipeline on the next step;
while up to ``max_inflight`` pipelines are out, new commands wait and go out
together with the next. Each command still runs on its own in Redis (the
pipeline is not a transaction); replies come back to their callers in order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis


class Pipeliner:
    def __init__(self, client: aioredis.Redis, *, max_batch: int = 1000, max_inflight: int = 4) -> None:
        self._client = client
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._inflight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.pipelines = 0
        self.commands = 0

    async def call(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, future))
        if not self._scheduled and self._inflight < self._max_inflight:
            self._scheduled = True
            loop.call_soon(self._start)
        # shield: a caller that gives up must not cancel its neighbours' pipeline
        return await asyncio.shield(future)

    def _start(self) -> None:
        self._scheduled = False
        while self._queue and self._inflight < self._max_inflight:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            self._inflight += 1
            task = asyncio.ensure_future(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            pipe = self._client.pipeline(transaction=False)
            for args, _ in batch:
                pipe.execute_command(*args)
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # connection lost, cancelled: every caller hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(repr(exc)))
                    future.exception()
            if not isinstance(exc, Exception):
                raise
        else:
            self.pipelines += 1
            self.commands += len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                    future.exception()
                else:
                    future.set_result(result)
        finally:
            self._inflight -= 1
            if self._queue and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._start)
