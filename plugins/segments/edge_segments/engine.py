"""Viewer profiles and the segment rules: pure bookkeeping, no I/O.

A ``Profile`` is one viewer in one room. Every event changes one profile in
O(1) and re-evaluates its three segments in O(1); segments that change with
the mere passing of time (a live viewer crossing the watch threshold, a new
buyer's window closing, a viewer going dormant) are found through a heap of
"next change" times, so ``Engine.advance(now)`` costs O(log n) per due profile
and nothing for the others.

The rules (thresholds come from ``Rules``; ``[plugins.segments]`` sets them):

- **high_value**: watched strictly more than ``high_value_watch_seconds`` (the
  node-measured watch time, including a session still running), at least
  ``high_value_min_clicks`` product clicks, and no (net) paid order.
- **new_buyer**: has a first paid order, and ``now - first_order_at <=
  new_buyer_seconds`` (exactly 7 days after the first order: still a new buyer;
  a second later: not).
- **dormant**: not watching now, and ``now - last_watch >= dormant_seconds``,
  where ``last_watch`` is the end of the viewer's last watch session, or when
  the viewer was first seen if they never watched (exactly 30 days: dormant;
  29 days: not).
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Callable, Iterable

HIGH_VALUE, NEW_BUYER, DORMANT = "high_value", "new_buyer", "dormant"
SEGMENTS = (HIGH_VALUE, NEW_BUYER, DORMANT)
BITS = {HIGH_VALUE: 1, NEW_BUYER: 2, DORMANT: 4}
EPSILON = 0.001  # seconds past a strict threshold at which a due check runs

Key = tuple[str, str]  # (room, identity)


@dataclass(frozen=True, slots=True)
class Rules:
    high_value_watch_seconds: float = 30 * 60.0
    high_value_min_clicks: int = 2
    new_buyer_seconds: float = 7 * 86400.0
    dormant_seconds: float = 30 * 86400.0
    targeted_min_clicks: int = 3


class Profile:
    """One viewer's behaviour in one room (what the store persists)."""

    __slots__ = (
        "room", "identity", "first_seen", "last_seen", "last_watch_at", "watch_seconds",
        "live_count", "live_since", "interactions", "clicks", "orders", "first_order_at",
        "last_order_at", "spend_micros", "skus", "members", "hv_entries", "nb_entries",
        "dm_entries", "due_at",
    )

    def __init__(self, room: str, identity: str, first_seen: float) -> None:
        self.room = room
        self.identity = identity
        self.first_seen = first_seen
        self.last_seen = first_seen
        self.last_watch_at: float | None = None  # end of the last watch (start while watching)
        self.watch_seconds = 0.0  # finished watching, node-measured
        self.live_count = 0  # WHEP sessions running now (not persisted)
        self.live_since = 0.0  # when live_count went from 0 to 1
        self.interactions = 0
        self.clicks = 0
        self.orders = 0  # paid minus refunded
        self.first_order_at: float | None = None
        self.last_order_at: float | None = None
        self.spend_micros = 0  # sum of amount_base, in millionths, refunds deducted
        self.skus: dict[str, list[int]] | None = None  # sku -> [clicks, net orders]
        self.members = 0  # bitmask of BITS: the segments it is in
        self.hv_entries = 0  # how many times it entered each segment
        self.nb_entries = 0
        self.dm_entries = 0
        self.due_at: float | None = None  # when its segments may next change by time alone

    def entries(self, segment: str) -> int:
        return int(getattr(self, _ENTRY_SLOT[segment]))

    def sku(self, sku: str) -> list[int]:
        if self.skus is None:
            self.skus = {}
        counts = self.skus.get(sku)
        if counts is None:
            counts = self.skus[sku] = [0, 0]
        return counts

    def segments(self) -> list[str]:
        return [s for s in SEGMENTS if self.members & BITS[s]]

    def view(self, now: float) -> dict[str, object]:
        """A JSON-friendly snapshot (the HTTP profile view)."""
        hours = watched(self, now) / 3600.0
        return {
            "room": self.room,
            "identity": self.identity,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "last_watch_at": self.last_watch_at,
            "watch_seconds": round(watched(self, now), 3),
            "watching": self.live_count > 0,
            "interactions": self.interactions,
            "interactions_per_watch_hour": round(self.interactions / hours, 3) if hours > 0 else None,
            "clicks": self.clicks,
            "clicks_by_sku": {k: v[0] for k, v in sorted((self.skus or {}).items()) if v[0]},
            "orders": self.orders,
            "first_order_at": self.first_order_at,
            "last_order_at": self.last_order_at,
            "spend_base": micros_to_str(self.spend_micros),
            "segments": self.segments(),
        }


_ENTRY_SLOT = {HIGH_VALUE: "hv_entries", NEW_BUYER: "nb_entries", DORMANT: "dm_entries"}


@dataclass(frozen=True, slots=True)
class Transition:
    room: str
    identity: str
    segment: str
    entered: bool  # False: left
    entry: int  # the entry number (1 for the first time it entered)
    at: float


def micros_to_str(micros: int) -> str:
    """Millionths as a decimal string: at least 2 decimals, more only when needed."""
    amount = Decimal(micros).scaleb(-6)
    cents = amount.quantize(Decimal("0.01"))
    return str(cents if cents == amount else amount.normalize())


def parse_amount(value: object) -> int | None:
    """A decimal string (or number) as millionths; ``None`` when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    if not amount.is_finite() or abs(amount) > Decimal(10) ** 12:
        return None
    return int(amount.scaleb(6).to_integral_value(rounding=ROUND_HALF_EVEN))


# the rules ----------------------------------------------------------------------------


def watched(p: Profile, now: float) -> float:
    """Seconds watched, counting a session still running up to ``now``."""
    if p.live_count:
        return p.watch_seconds + max(0.0, now - p.live_since)
    return p.watch_seconds


def dormant_reference(p: Profile) -> float:
    return p.last_watch_at if p.last_watch_at is not None else p.first_seen


def membership(p: Profile, now: float, rules: Rules) -> int:
    """The segments ``p`` is in at ``now``, as a bitmask of ``BITS``."""
    mask = 0
    if (
        p.orders <= 0
        and p.clicks >= rules.high_value_min_clicks
        and watched(p, now) > rules.high_value_watch_seconds
    ):
        mask |= 1
    if p.first_order_at is not None and now - p.first_order_at <= rules.new_buyer_seconds:
        mask |= 2
    if not p.live_count and now - dormant_reference(p) >= rules.dormant_seconds:
        mask |= 4
    return mask


def next_change(p: Profile, now: float, rules: Rules) -> float | None:
    """The earliest time after ``now`` at which ``membership`` may change without
    any new event (``None``: only an event can change it)."""
    due: float | None = None
    if (
        p.live_count
        and not p.members & 1
        and p.orders <= 0
        and p.clicks >= rules.high_value_min_clicks
    ):
        due = now + max(0.0, rules.high_value_watch_seconds - watched(p, now)) + EPSILON
    if p.members & 2 and p.first_order_at is not None:
        t = p.first_order_at + rules.new_buyer_seconds + EPSILON
        due = t if due is None else min(due, t)
    if not p.live_count and not p.members & 4:
        t = dormant_reference(p) + rules.dormant_seconds
        due = t if due is None else min(due, t)
    return None if due is None else max(due, now + EPSILON)


# the engine ---------------------------------------------------------------------------


class Engine:
    """Profiles in memory, updated per event, with the segment transitions each
    event or the passing of time causes.

    ``loader(room, identity)`` returns a stored profile (or ``None``) for one not
    in memory; the caller persists ``dirty`` profiles and may ``evict`` clean ones.
    """

    def __init__(self, rules: Rules, loader: Callable[[str, str], Profile | None] | None = None) -> None:
        self.rules = rules
        self.loader = loader
        self.profiles: dict[Key, Profile] = {}
        self.hot: dict[tuple[str, str], set[str]] = {}  # (room, sku) -> targeted-coupon candidates
        self.dirty: set[Key] = set()
        self.dirty_skus: set[tuple[str, str, str]] = set()  # (room, identity, sku) changed
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = itertools.count()
        # Segments are evaluated at the latest time seen so far: an event stamped a
        # little in the past (another plugin's clock, a late hook) never re-opens a
        # window that the passing of time already closed.
        self.now = float("-inf")
        # Profiles by last use (the engine's ``now`` when used), least recent first:
        # eviction takes them from the front, in O(evicted).
        self.lru: OrderedDict[Key, float] = OrderedDict()

    # profiles -----------------------------------------------------------------------

    def get(self, room: str, identity: str) -> Profile | None:
        """The profile, from memory or the loader; ``None`` if never seen."""
        p = self.profiles.get((room, identity))
        if p is None and self.loader is not None:
            p = self.loader(room, identity)
            if p is not None:
                self.load(p)
        return p

    def profile(self, room: str, identity: str, at: float) -> tuple[Profile, bool]:
        """The profile, created (first seen at ``at``) when new; ``(profile, created)``."""
        if at > self.now:
            self.now = at
        key = (room, identity)
        p = self.profiles.get(key)
        created = False
        if p is None:
            p = None if self.loader is None else self.loader(room, identity)
            if p is not None:
                self.load(p)
            else:
                p = self.profiles[key] = Profile(room, identity, at)
                self.dirty.add(key)
                created = True
        lru = self.lru
        lru[key] = self.now
        lru.move_to_end(key)
        return p, created

    def load(self, p: Profile) -> None:
        """Take a stored profile into memory (and into the time heap)."""
        key = (p.room, p.identity)
        self.profiles[key] = p
        self.lru[key] = self.now
        self.lru.move_to_end(key)
        for sku in p.skus or ():
            self._index(p, sku)
        if p.due_at is not None:
            heapq.heappush(self._heap, (p.due_at, next(self._seq), key))

    def evict(self, key: Key) -> None:
        """Forget a (clean) profile; its stored ``due_at`` brings it back when due."""
        p = self.profiles.pop(key, None)
        self.lru.pop(key, None)
        if p is None:
            return
        for sku in p.skus or ():
            candidates = self.hot.get((p.room, sku))
            if candidates is not None:
                candidates.discard(p.identity)
                if not candidates:
                    del self.hot[(p.room, sku)]
        self.dirty.discard(key)  # (a changed SKU count always marks its profile dirty too)

    def idle(self, before: float) -> list[Key]:
        """Profiles last used before ``before``, least recent first (eviction candidates)."""
        out = []
        for key, used in self.lru.items():
            if used >= before:
                break
            out.append(key)
        return out

    def targeted(self, room: str, sku: str) -> set[str]:
        """Identities (in memory) with >= targeted_min_clicks clicks on ``sku`` and no order of it."""
        return self.hot.get((room, sku), set())

    def _index(self, p: Profile, sku: str) -> None:
        counts = (p.skus or {}).get(sku)
        key = (p.room, sku)
        if counts is not None and counts[0] >= self.rules.targeted_min_clicks and counts[1] <= 0:
            self.hot.setdefault(key, set()).add(p.identity)
        else:
            candidates = self.hot.get(key)
            if candidates is not None:
                candidates.discard(p.identity)
                if not candidates:
                    del self.hot[key]

    # events ---------------------------------------------------------------------------

    def seen(self, room: str, identity: str, at: float) -> tuple[bool, list[Transition]]:
        """The viewer is here (joined); ``(first time ever in this room, transitions)``."""
        p, created = self.profile(room, identity, at)
        _touch(p, at)
        if not created:  # presence alone changes no segment
            self.dirty.add((room, identity))
            return False, []
        return True, self._settle(p, at)

    def watch_started(self, room: str, identity: str, at: float) -> list[Transition]:
        p, _ = self.profile(room, identity, at)
        _touch(p, at)
        p.live_count += 1
        if p.live_count == 1:
            p.live_since = at
        p.last_watch_at = max(at, p.last_watch_at or at)
        return self._settle(p, at)

    def watch_ended(
        self, room: str, identity: str, connected_at: float, ended_at: float, tracked: bool = True
    ) -> list[Transition]:
        """A watch session ended. ``tracked``: its start went through ``watch_started``
        (else only its own length is added: overlapping untracked sessions count twice)."""
        p, _ = self.profile(room, identity, ended_at)
        _touch(p, ended_at)
        if tracked and p.live_count > 0:
            p.live_count -= 1
            if p.live_count == 0:
                p.watch_seconds += max(0.0, ended_at - p.live_since)
        else:
            p.watch_seconds += max(0.0, ended_at - connected_at)
        if p.live_count == 0:
            p.last_watch_at = max(ended_at, p.last_watch_at or ended_at)
        return self._settle(p, ended_at)

    def interaction(self, room: str, identity: str, at: float) -> list[Transition]:
        p, created = self.profile(room, identity, at)
        _touch(p, at)
        p.interactions += 1
        if not created:  # no rule reads interactions: nothing to evaluate
            self.dirty.add((room, identity))
            return []
        return self._settle(p, at)

    def click(self, room: str, identity: str, sku: str, at: float) -> list[Transition]:
        p, _ = self.profile(room, identity, at)
        _touch(p, at)
        p.clicks += 1
        p.sku(sku)[0] += 1
        self.dirty_skus.add((room, identity, sku))
        self._index(p, sku)
        return self._settle(p, at)

    def order_paid(
        self, room: str, identity: str, sku: str, micros: int, at: float
    ) -> tuple[bool, list[Transition]]:
        """A paid order (deduplicate by order id before); ``(first order ever, transitions)``."""
        p, _ = self.profile(room, identity, at)
        _touch(p, at)
        first = p.first_order_at is None
        p.orders += 1
        if first:
            p.first_order_at = at
        p.last_order_at = max(at, p.last_order_at or at)
        p.spend_micros += micros
        if sku:
            p.sku(sku)[1] += 1
            self.dirty_skus.add((room, identity, sku))
            self._index(p, sku)
        return first, self._settle(p, at)

    def order_refunded(self, room: str, identity: str, sku: str, micros: int, at: float) -> list[Transition]:
        """A paid order was refunded: it no longer counts (the first-order time stays)."""
        p, _ = self.profile(room, identity, at)
        p.orders -= 1
        p.spend_micros -= micros
        if sku:
            p.sku(sku)[1] -= 1
            self.dirty_skus.add((room, identity, sku))
            self._index(p, sku)
        return self._settle(p, at)

    def advance(self, now: float) -> list[Transition]:
        """Transitions that the passing of time caused up to ``now``."""
        out: list[Transition] = []
        heap = self._heap
        now = self.now = max(self.now, now)
        while heap and heap[0][0] <= now:
            due, _, key = heapq.heappop(heap)
            p = self.profiles.get(key)
            if p is None or p.due_at != due:
                continue  # evicted, or rescheduled since
            p.due_at = None
            out.extend(self._settle(p, now))
            self.dirty.add(key)
        return out

    def evaluate(self, room: str, identity: str, now: float) -> list[Transition]:
        """Re-evaluate one profile at ``now`` (e.g. before answering about it)."""
        p = self.get(room, identity)
        return [] if p is None else self._settle(p, now)

    # internals ------------------------------------------------------------------------

    def _settle(self, p: Profile, now: float) -> list[Transition]:
        now = self.now = max(self.now, now)
        key = (p.room, p.identity)
        self.dirty.add(key)
        mask = membership(p, now, self.rules)
        out: list[Transition] = []
        if mask != p.members:
            for segment in SEGMENTS:
                bit = BITS[segment]
                if mask & bit and not p.members & bit:
                    slot = _ENTRY_SLOT[segment]
                    setattr(p, slot, getattr(p, slot) + 1)
                    out.append(Transition(p.room, p.identity, segment, True, getattr(p, slot), now))
                elif p.members & bit and not mask & bit:
                    out.append(Transition(p.room, p.identity, segment, False, p.entries(segment), now))
            p.members = mask
        due = next_change(p, now, self.rules)
        if due != p.due_at:
            p.due_at = due
            if due is not None:
                heapq.heappush(self._heap, (due, next(self._seq), key))
        return out

    def keys(self) -> Iterable[Key]:
        return list(self.profiles)

    def take_dirty(self) -> tuple[list[Profile], list[tuple[str, str, str, int, int]]]:
        """The changed profiles and SKU counts since the last call (for the store)."""
        profiles = [self.profiles[k] for k in self.dirty if k in self.profiles]
        skus = []
        for room, identity, sku in self.dirty_skus:
            p = self.profiles.get((room, identity))
            counts = None if p is None or p.skus is None else p.skus.get(sku)
            if counts is not None:
                skus.append((room, identity, sku, counts[0], counts[1]))
        self.dirty.clear()
        self.dirty_skus.clear()
        return profiles, skus


def _touch(p: Profile, at: float) -> None:
    if at > p.last_seen:
        p.last_seen = at
