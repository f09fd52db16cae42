"""The loyalty service: ``edge.service("loyalty")`` for other plugins, and the plugin's engine.

Writes go to the ``Store`` on one worker thread, in the order they were
submitted (so ``commerce.order_paid`` is credited before the same order's
``commerce.order_refunded`` is reversed, whatever the hooks' timing). Each
finished write updates an in-memory cache of members (LRU, ``cache_size``),
from which the synchronous ``tier`` and ``balance`` answer; a member not in
the cache is read once from a read connection of its own (WAL: it never waits
for the writer).

Watch time: ``session_started`` remembers a viewer's WHEP session with the
node's ``connected_at``; ``tick`` credits every completed block
(``watch_block_seconds``) while the session lasts, and ``session_ended``
credits the blocks of ``media_seconds`` that are still missing. Block ``k`` of
session ``s`` is the event ``watch:<s>:<k>``, dated at the block's end, so the
tick and the end of the session can never credit it twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, TypeVar

from . import ledger
from .clock import local_day
from .config import LoyaltyConfig
from .store import LoyaltyError, Member, Outcome, Reader, Store
from .tiers import TierInfo, TierPolicy

T = TypeVar("T")

MAX_PENDING_INTERACTIONS = 10_000  # members x rules waiting for the next tick's batch


@dataclass(slots=True)
class LiveSession:
    identity: str
    room: str
    connected_at: float
    credited: int = 0  # blocks submitted so far


class Loyalty:
    """Points, growth, tiers. Methods marked *sync* may be called from any hook."""

    def __init__(self, config: LoyaltyConfig, *, clock: Callable[[], float] = time.time, log: Any = None) -> None:
        self.config = config
        self.policy = TierPolicy(
            config.tiers, config.downgrade, config.downgrade_period, config.downgrade_grace_periods
        )
        self.clock = clock
        self.log = log
        self.store: Store | None = None
        self.reader: Reader | None = None  # the loop thread's (cache misses)
        self.bg_reader: Reader | None = None  # the read worker's (REST reads)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="loyalty-db")
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="loyalty-read")
        self.cache: OrderedDict[str, Member] = OrderedDict()
        self.live: dict[str, LiveSession] = {}
        self.pending: dict[tuple[str, str], int] = {}  # (identity, rule) -> occurrences since the last tick
        self.capped: set[tuple[str, str, str]] = set()  # (identity, rule, day) known to be at the cap
        self.sweeping = False
        self.last_sweep = 0.0
        self.on_outcome: Callable[[Outcome, dict[str, Any]], None] | None = None
        self.on_error: Callable[[str, BaseException], None] | None = None

    # life cycle ------------------------------------------------------------------------------

    async def start(self, path: Path | str) -> None:
        def open_() -> None:
            self.store = Store(path, self.config)
            self.store.reconcile_tiers(self.clock())
            self.reader = Reader(path)
            self.bg_reader = Reader(path)

        await asyncio.wrap_future(self._writer.submit(open_))

    async def stop(self) -> None:
        """Finish every queued write (sessions credited at shutdown included), then close."""
        self._flush_pending(self.clock())

        def close() -> None:
            for part in (self.store, self.reader, self.bg_reader):
                if part is not None:
                    part.close()

        await asyncio.wrap_future(self._writer.submit(lambda: None))
        await asyncio.wrap_future(self._reads.submit(lambda: None))
        await asyncio.wrap_future(self._writer.submit(close))
        self.store = self.reader = self.bg_reader = None
        self._writer.shutdown(wait=False)
        self._reads.shutdown(wait=False)

    @property
    def started(self) -> bool:
        return self.store is not None

    def _need(self) -> Store:
        if self.store is None:
            raise LoyaltyError("unavailable", "the loyalty plugin is not started", 503)
        return self.store

    # the worker ---------------------------------------------------------------------------

    def _write(self, fn: Callable[[Store], T], context: dict[str, Any] | None = None) -> "asyncio.Future[T]":
        """Run ``fn(store)`` on the writer thread; the result updates the cache (on the loop)."""
        store = self._need()
        future = asyncio.wrap_future(self._writer.submit(fn, store))

        def done(f: "asyncio.Future[T]") -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if exc is not None:
                if not isinstance(exc, LoyaltyError) and self.on_error is not None:
                    self.on_error((context or {}).get("what", "write"), exc)
                return
            result = f.result()
            for outcome in result if isinstance(result, list) else [result]:
                if isinstance(outcome, Outcome):
                    self._absorb(outcome)
                    if self.on_outcome is not None:
                        self.on_outcome(outcome, context or {})

        future.add_done_callback(done)
        return future

    def _fire(self, fn: Callable[[Store], Any], context: dict[str, Any]) -> None:
        """A write nobody awaits (hooks): failures are reported through ``on_error``."""
        if self.store is None:
            return
        self._write(fn, context)

    async def _read(self, fn: Callable[[Reader], T]) -> T:
        self._need()
        reader = self.bg_reader
        if reader is None:  # still opening
            raise LoyaltyError("unavailable", "the loyalty plugin is starting", 503)
        return await asyncio.wrap_future(self._reads.submit(fn, reader))

    def _absorb(self, outcome: Outcome) -> None:
        for member in outcome.members:
            known = self.cache.get(member.identity)
            if known is None or member.last_seq >= known.last_seq:
                self._remember(member)

    def _remember(self, member: Member) -> None:
        self.cache[member.identity] = member
        self.cache.move_to_end(member.identity)
        while len(self.cache) > self.config.cache_size:
            self.cache.popitem(last=False)

    def member(self, identity: str) -> Member:
        """*sync* The member as last written (a new member: zero balances, first tier)."""
        member = self.cache.get(identity)
        if member is not None:
            self.cache.move_to_end(identity)
            return member
        if self.reader is None:
            return Member(identity)
        member = self.reader.member(identity)
        if member is None:
            return Member(identity)
        self._remember(member)
        return member

    def tz(self, member: Member) -> str:
        return member.timezone or self.config.default_timezone

    # the service API (docs/events.md) --------------------------------------------------------

    def tier(self, identity: str) -> TierInfo:
        """*sync* The member's tier now: ``TierInfo(name, level, privileges)``."""
        m = self.member(identity)
        level, _ = self.policy.held(m.tier_level, m.below_since, m.growth, self.clock(), self.tz(m))
        return self.policy.info(level)

    def balance(self, identity: str) -> tuple[int, int]:
        """*sync* ``(points, growth)``."""
        m = self.member(identity)
        return m.points, m.growth

    def has_privilege(self, identity: str, privilege: str) -> bool:
        """*sync* Whether the member's tier grants ``privilege``."""
        return privilege in self.tier(identity).privileges

    async def redeem(self, identity: str, points: int, order_id: str) -> bool:
        """Debit ``points`` at checkout for ``order_id``; False when the balance is short or
        the order already redeemed something else. Calling it again for the same order and
        amount is a success that debits nothing."""
        if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
            return False
        if not _valid_key(order_id) or not _valid_key(identity) or self.store is None:
            return False  # before start-up (or after shutdown): no discount rather than an error
        now = self.clock()
        outcome = await self._write(lambda s: s.redeem(identity, points, order_id, now), {"what": "redeem"})
        return outcome.status in ("redeemed", "duplicate")

    async def reverse_redemption(self, order_id: str) -> bool:
        """Give back the points ``order_id`` redeemed (a refund, a cancelled order), once.
        True when the redemption is reversed (now or before), False when there was none."""
        if not _valid_key(order_id):
            return False
        now = self.clock()
        outcome = await self._write(lambda s: s.reverse_redemption(order_id, now), {"what": "reverse_redemption"})
        return outcome.status in ("reversed", "duplicate", "nothing")

    # earning from the node's hooks --------------------------------------------------------

    def session_started(self, session_id: str, identity: str, room: str, connected_at: float) -> None:
        self.live[session_id] = LiveSession(identity, room, connected_at)

    def session_ended(self, session_id: str, identity: str, room: str, connected_at: float | None, media_seconds: float) -> None:
        live = self.live.pop(session_id, None)
        if connected_at is None:
            return
        blocks = int(media_seconds // self.config.watch_block_seconds)
        first = (live.credited if live is not None else 0) + 1
        self._credit_watch(session_id, identity, room, connected_at, first, blocks)

    def _credit_watch(self, session_id: str, identity: str, room: str, connected_at: float, first: int, last: int) -> None:
        if last < first:
            return
        block = self.config.watch_block_seconds
        items = [
            {
                "identity": identity, "rule": "watch", "at": connected_at + k * block,
                "event_id": f"watch:{session_id}:{k}", "ref": session_id,
            }
            for k in range(first, last + 1)
        ]
        self._fire(lambda s: s.earn_many(items), {"what": "watch", "room": room, "identity": identity})

    def interaction(self, identity: str, rule: str = "interaction") -> None:
        """Count a chat message, like or share for the next batch (capped per local day)."""
        if self.store is None:
            return
        key = (identity, rule)
        if key not in self.pending and len(self.pending) >= MAX_PENDING_INTERACTIONS:
            return
        member = self.member(identity)
        if (identity, rule, local_day(self.clock(), self.tz(member))) in self.capped:
            return
        self.pending[key] = self.pending.get(key, 0) + 1

    def _flush_pending(self, now: float) -> None:
        if not self.pending or self.store is None:
            return
        items = []
        for (identity, rule), count in self.pending.items():
            cap = self.config.cap(rule)
            items.extend({"identity": identity, "rule": rule, "at": now} for _ in range(min(count, cap or count)))
        self.pending.clear()
        future = self._write(lambda s: s.earn_many(items), {"what": "interactions"})

        def mark(f: "asyncio.Future[list[Outcome]]") -> None:
            if f.cancelled() or f.exception() is not None:
                return
            for item, outcome in zip(items, f.result()):
                if outcome.status == "capped":
                    self.capped.add((item["identity"], item["rule"], outcome.info["day"]))
            if len(self.capped) > 100_000:
                self.capped.clear()

        future.add_done_callback(mark)

    def order_paid(self, data: dict[str, Any]) -> None:
        buyer, order_id = data.get("buyer"), data.get("order_id")
        if not _valid_key(buyer) or not _valid_key(order_id):
            return
        try:
            base = Decimal(str(data.get("amount_base")))
        except (InvalidOperation, ValueError):
            return
        if not base.is_finite() or base <= 0:
            return
        growth = int((base * self.config.purchase_growth_per_unit).to_integral_value(ROUND_FLOOR))
        points = int((base * self.config.purchase_points_per_unit).to_integral_value(ROUND_FLOOR))
        at = self.clock()
        context = {"what": "purchase", "room": data.get("room"), "identity": buyer}
        self._fire(lambda s: s.purchase(buyer, order_id, points, growth, at), context)

    def order_refunded(self, data: dict[str, Any]) -> None:
        order_id = data.get("order_id")
        if _valid_key(order_id):
            at = self.clock()
            self._fire(lambda s: s.reverse_order(order_id, at), {"what": "refund"})

    def order_voided(self, data: dict[str, Any]) -> None:
        """An order expired or was cancelled: points it redeemed come back."""
        order_id = data.get("order_id")
        if _valid_key(order_id):
            at = self.clock()
            self._fire(lambda s: s.reverse_redemption(order_id, at), {"what": "void"})

    def tick(self, now: float) -> None:
        """Credit completed watch blocks, flush interactions, sweep now and then."""
        if self.store is None:
            return
        block = self.config.watch_block_seconds
        for session_id, live in self.live.items():
            done = int((now - live.connected_at) // block)
            if done > live.credited:
                self._credit_watch(session_id, live.identity, live.room, live.connected_at, live.credited + 1, done)
                live.credited = done
        self._flush_pending(now)
        if not self.sweeping and now - self.last_sweep >= self.config.sweep_seconds:
            self.sweeping = True
            self.last_sweep = now
            future = self._write(lambda s: s.sweep(now), {"what": "sweep"})
            future.add_done_callback(lambda f: setattr(self, "sweeping", False))

    # members' own actions ----------------------------------------------------------------

    async def checkin(self, identity: str) -> Outcome:
        now = self.clock()
        return await self._write(lambda s: s.checkin(identity, now), {"what": "checkin"})

    async def share(self, identity: str) -> Outcome:
        now = self.clock()
        return await self._write(lambda s: s.earn(identity, "share", now), {"what": "share"})

    async def set_profile(
        self, identity: str, *, birthday: str | None = None, timezone: str | None = None, force: bool = False
    ) -> Outcome:
        now = self.clock()
        return await self._write(
            lambda s: s.set_profile(identity, now, birthday=birthday, timezone=timezone, force=force),
            {"what": "profile"},
        )

    async def adjust(
        self, identity: str, account: str, amount: int, reason: str, actor: str, key: str | None = None
    ) -> Outcome:
        now = self.clock()
        return await self._write(
            lambda s: s.adjust(identity, account, amount, reason, actor, now, key), {"what": "adjust"}
        )

    async def reverse(self, identity: str, event_id: str, reason: str, actor: str) -> Outcome:
        now = self.clock()
        return await self._write(
            lambda s: s.reverse(event_id, now, reason=reason, actor=actor, identity=identity), {"what": "reverse"}
        )

    async def sweep(self, now: float | None = None) -> Outcome:
        at = self.clock() if now is None else now
        return await self._write(lambda s: s.sweep(at), {"what": "sweep"})

    async def settle(self) -> None:
        """Wait for every write queued so far (tests, shutdown)."""
        self._need()
        await asyncio.wrap_future(self._writer.submit(lambda: None))
        for _ in range(3):  # let the finished writes' callbacks (cache, replies) run
            await asyncio.sleep(0)

    # views --------------------------------------------------------------------------------

    async def status(self, identity: str) -> dict[str, Any]:
        """The member's balances, tier, privileges, next tier, profile, and the next expiries."""
        now = self.clock()

        def read(reader: Reader) -> tuple[Member | None, list[ledger.Row]]:
            return reader.member(identity), reader.points_rows(identity)

        found, rows = await self._read(read)
        member = found or Member(identity)
        if found is not None and identity not in self.cache:
            self._remember(found)  # never over a cached member: writes refresh those
        level, below = self.policy.held(member.tier_level, member.below_since, member.growth, now, self.tz(member))
        info = self.policy.info(level)
        return {
            "identity": identity,
            "points": member.points,
            "growth": member.growth,
            "tier": {"name": info.name, "level": info.level, "privileges": sorted(info.privileges)},
            "privileges": sorted(info.privileges),
            "next_tier": self.policy.next_tier(level, member.growth),
            "below_threshold_since": below,
            "expiring": ledger.upcoming(rows, now),
            "birthday": member.birthday,
            "timezone": self.tz(member),
            "last_checkin": member.last_checkin,
        }

    async def history(self, identity: str, limit: int, before: int | None) -> list[dict[str, Any]]:
        return await self._read(lambda r: r.history(identity, limit, before))

    async def tier_changes(self, identity: str) -> list[dict[str, Any]]:
        return await self._read(lambda r: r.tier_changes(identity))


def _valid_key(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200
