"""What a room hears about its sales: countdown, start, stock, sold out, end.

A pulse runs ``stock_update_hz`` times a second (edge_tick is once a second,
too coarse for a stock display):

* ``sale.countdown`` {sale_id, sku, starts_in}: when the sale is created, on each
  whole minute before the start, and once a second in the last 10 seconds;
* ``sale.started`` {sale_id, sku, title, remaining, ends_at, per_user_limit} at the start;
* ``stock.updated`` {sale_id, sku, remaining}: at most one per pulse per sale, only
  when the number changed (however many orders came in between);
* ``sold_out`` {sale_id, sku, remaining: 0}: at once when an attempt leaves nothing
  (not waiting for the pulse), else at the pulse that sees zero (another node sold it);
* ``sale.ended`` {sale_id, sku, remaining} when the window closes.

With the Redis backend the pulse reads the stock from Redis, so every node
shows what every other node sold.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Callable

from .inventory import SOLD_OUT, Outcome, Sale
from .replies import ms, price
from .service import FlashSales

COUNTDOWN_SECONDS = 10
Broadcast = Callable[[str, str, dict[str, Any]], Any]


class Announcer:
    def __init__(self, service: FlashSales, broadcast: Broadcast, *, hz: float = 10.0, log: Any = None) -> None:
        self.service = service
        self.broadcast = broadcast
        self.period = 1.0 / hz
        self._log = log
        self._shown: dict[str, int] = {}  # sale_id -> remaining last broadcast
        self._sold_out: set[str] = set()  # sales whose current zero was announced
        self._counted: dict[str, int] = {}  # sale_id -> last starts_in announced
        self._started: set[str] = set()
        self._ended: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        now = self.service.clock()
        # A restarted node does not re-announce what already happened.
        for sale in self.service.sales():
            if sale.starts_at <= now:
                self._started.add(sale.sale_id)
            if sale.ends_at <= now:
                self._ended.add(sale.sale_id)
        self.service.on_outcome(self.outcome)
        self.service.on_sale_created(self.created)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def last_remaining(self, sale_id: str) -> int | None:
        return self._shown.get(sale_id)

    # events ------------------------------------------------------------------------

    def created(self, sale: Sale) -> None:
        now = self.service.clock()
        if sale.starts_at > now:
            starts_in = math.ceil(sale.starts_at - now)
            self._counted[sale.sale_id] = starts_in
            self._countdown(sale, starts_in)

    def outcome(self, sale: Sale | None, outcome: Outcome) -> None:
        """After each attempt: sold out is announced at once."""
        if sale is None:
            return
        hit_zero = (outcome.accepted and outcome.remaining == 0) or outcome.reason == SOLD_OUT
        if hit_zero and sale.sale_id not in self._sold_out and outcome.remaining == 0:
            self._announce_sold_out(sale)

    # the pulse ------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += self.period
            try:
                await self.pulse(self.service.clock())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away for a moment: try again next pulse
                if self._log is not None:
                    self._log.warning("flashsale_pulse_failed", error=repr(exc))
            delay = next_at - loop.time()
            if delay < 0:  # fell behind: skip the missed pulses rather than burst to catch up
                next_at = loop.time() + self.period
                delay = self.period
            await asyncio.sleep(delay)

    async def pulse(self, now: float) -> None:
        live: list[Sale] = []
        for sale in self.service.watched(now, horizon=2.0):
            sid = sale.sale_id
            if now < sale.starts_at:
                starts_in = math.ceil(sale.starts_at - now)
                if starts_in != self._counted.get(sid) and (
                    starts_in <= COUNTDOWN_SECONDS or starts_in % 60 == 0
                ):
                    self._counted[sid] = starts_in
                    self._countdown(sale, starts_in)
                continue
            if now < sale.ends_at:
                live.append(sale)
            elif sid not in self._ended:
                live.append(sale)  # one last stock reading for sale.ended
        if not live:
            return
        remaining = await self.service.remaining(s.sale_id for s in live)
        for sale in live:
            sid = sale.sale_id
            left = remaining.get(sid)
            if left is None:
                continue
            if sid not in self._started:
                self._started.add(sid)
                self._shown[sid] = left
                self.broadcast(sale.room, "sale.started", {
                    "sale_id": sid, "sku": sale.sku, "title": sale.title, "remaining": left,
                    "ends_at": ms(sale.ends_at), "per_user_limit": sale.per_user_limit, **price(sale),
                })
            elif left != self._shown.get(sid):
                self._shown[sid] = left
                self.broadcast(sale.room, "stock.updated", {"sale_id": sid, "sku": sale.sku, "remaining": left})
            if left > 0:
                self._sold_out.discard(sid)
            elif sid not in self._sold_out:
                self._announce_sold_out(sale)
            if now >= sale.ends_at and sid not in self._ended:
                self._ended.add(sid)
                self.broadcast(sale.room, "sale.ended", {"sale_id": sid, "sku": sale.sku, "remaining": left})

    def _countdown(self, sale: Sale, starts_in: int) -> None:
        self.broadcast(sale.room, "sale.countdown", {
            "sale_id": sale.sale_id, "sku": sale.sku, "starts_in": starts_in, "starts_at": ms(sale.starts_at),
        })

    def _announce_sold_out(self, sale: Sale) -> None:
        self._sold_out.add(sale.sale_id)
        self.broadcast(sale.room, "sold_out", {"sale_id": sale.sale_id, "sku": sale.sku, "remaining": 0})
