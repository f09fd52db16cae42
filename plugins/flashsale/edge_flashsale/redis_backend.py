"""The Redis backend: one atomic Lua script per attempt, an order log reconciled into SQLite.

The gate lives in Redis: ``lua/reserve.lua`` checks idempotency, window, limits
and stock, decrements, records the order and its hold, and appends the order to
a log stream, all in one script (Redis runs a script to completion before any
other command). Attempts arriving together are pipelined on one connection
(pipeline.py: one write, one AOF fsync for all of them with ``appendfsync always``).

Durability, in two layers:

1. Redis is run with ``appendonly yes`` and ``appendfsync always``: Redis fsyncs
   the AOF before it replies, so an order the node acknowledged survives a Redis
   crash or restart.
2. The order log stream (``<prefix>:log``) is reconciled into the SQLite ledger
   (the same schema as the embedded backend) every ``reconcile_interval`` seconds,
   on start and on shutdown; entries are trimmed from the stream only once they
   are committed there. On start, after draining the log, each sale's counters in
   Redis are compared with the ledger; a sale Redis lost or only partly has (a
   Redis without AOF, a flushed or replaced Redis) is rebuilt from the ledger.

Keys (one Redis, not Cluster): ``<p>:epoch``, ``<p>:log``, ``<p>:idem:<n>:<user>:<key>``
and per sale ``<p>:sale:<id>`` (hash), ``:held`` (hash), ``:orders`` (hash), ``:holds`` (zset).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import ledger
from .groupcommit import GroupCommitter
from .inventory import (
    KEY_REUSED,
    RESERVED,
    UNKNOWN_SKU,
    Counters,
    InventoryError,
    Order,
    Outcome,
    ReserveRequest,
    Sale,
    UnknownOrder,
)
from .pipeline import Pipeliner

CURSOR = "redis_log_cursor"
EPOCH = "redis_epoch"


def _script(name: str) -> str:
    return resources.files("edge_flashsale").joinpath("lua", name).read_text()


class RedisInventory:
    name = "redis"

    def __init__(
        self,
        url: str,
        ledger_path: str | Path,
        *,
        prefix: str = "fs",
        idempotency_ttl: float = 86400.0,
        reconcile_interval: float = 1.0,
        log: Any = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.idempotency_ttl = int(idempotency_ttl)
        self.reconcile_interval = reconcile_interval
        self._log = log
        self._ledger = GroupCommitter(ledger_path)
        self._redis: aioredis.Redis | None = None
        self._pipe: Pipeliner | None = None
        self._sources = {name: _script(f"{name}.lua") for name in ("reserve", "settle", "expire")}
        self._sha: dict[str, str] = {}
        self._script_lock = asyncio.Lock()
        self._script_generation = 0
        self._sales: dict[str, Sale] = {}
        self._cursor = "0-0"
        self._drain_lock = asyncio.Lock()
        self._reconciler: asyncio.Task[None] | None = None
        self.restored: list[str] = []  # sales rebuilt from the ledger at the last open

    # keys ---------------------------------------------------------------------------

    def _sale_keys(self, sale_id: str) -> tuple[str, str, str, str]:
        base = f"{self.prefix}:sale:{sale_id}"
        return base, base + ":held", base + ":orders", base + ":holds"

    def _idem_key(self, user: str, key: str) -> str:
        return f"{self.prefix}:idem:{len(user)}:{user}:{key}"

    @property
    def _log_key(self) -> str:
        return f"{self.prefix}:log"

    # lifecycle --------------------------------------------------------------------

    async def open(self, now: float) -> list[Sale]:
        await self._ledger.start()
        sales = await self._ledger.read(ledger.load_sales)
        self._sales = {s.sale_id: s for s in sales}
        # Blocking pool: a burst waits for a connection instead of failing.
        # Reads and recovery are idempotent: a connection Redis dropped (a restart) is retried.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, decode_responses=True, max_connections=32, timeout=10,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError],
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._pipe = Pipeliner(self.url)
        try:
            await self._redis.ping()
            await self._load_scripts()
            await self._recover()
        except RedisError as exc:
            raise InventoryError(f"redis at {self.url}: {exc}") from exc
        self._reconciler = asyncio.ensure_future(self._reconcile_loop())
        return sales

    async def close(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            try:
                await self._reconciler
            except asyncio.CancelledError:
                pass
            self._reconciler = None
        try:
            if self._redis is not None:
                await self._drain()
        except (RedisError, OSError) as exc:
            self._warn("redis_final_reconcile_failed", error=repr(exc))
        if self._pipe is not None:
            await self._pipe.close()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        await self._ledger.close()

    async def _load_scripts(self, seen: int | None = None) -> None:
        """(Re)load the scripts; callers that saw generation ``seen`` fail share one reload."""
        assert self._pipe is not None
        async with self._script_lock:
            if seen is not None and seen != self._script_generation:
                return  # someone reloaded them meanwhile
            for name, source in self._sources.items():
                self._sha[name] = await self._pipe.call("SCRIPT", "LOAD", source)
            self._script_generation += 1

    def _warn(self, event: str, **kw: Any) -> None:
        if self._log is not None:
            self._log.warning(event, **kw)

    # recovery and reconciliation ----------------------------------------------------------

    async def _recover(self) -> None:
        """Drain the log into the ledger, then make Redis agree with the ledger."""
        r = self._redis
        assert r is not None
        self._cursor = await self._ledger.read(lambda c: ledger.get_meta(c, CURSOR)) or "0-0"
        ours = await self._ledger.read(lambda c: ledger.get_meta(c, EPOCH))
        theirs = await r.get(f"{self.prefix}:epoch")
        if theirs is None:
            # A Redis that has none of our state (new, flushed, or lost without AOF):
            # the old log is gone with it, its entries are already in the ledger.
            epoch = secrets.token_hex(8)
            self._cursor = "0-0"
            await self._save_meta({CURSOR: self._cursor, EPOCH: epoch})
            await r.set(f"{self.prefix}:epoch", epoch)
            if ours is not None:
                self._warn("redis_state_missing", url=self.url, action="rebuilding from the ledger")
        elif theirs != ours:
            # This ledger has not seen this Redis before: take in its whole log.
            self._cursor = "0-0"
            await self._save_meta({CURSOR: self._cursor, EPOCH: theirs})
            if ours is not None:
                self._warn("redis_epoch_changed", url=self.url)
        await self._drain()
        self.restored = []
        counters = await self._ledger.read(lambda c: ledger.counters(c, dict(self._sales)))
        for sale in self._sales.values():
            want = counters[sale.sale_id]
            have = await self._redis_counters(sale)
            if have is None or (have.remaining, have.reserved, have.sold, have.orders) != (
                want.remaining, want.reserved, want.sold, want.orders
            ):
                await self._restore(sale)
                self.restored.append(sale.sale_id)
                self._warn("redis_sale_restored", sale_id=sale.sale_id, redis=str(have), ledger=str(want))

    async def _save_meta(self, values: dict[str, str]) -> None:
        def write(conn: sqlite3.Connection) -> None:
            for k, v in values.items():
                ledger.set_meta(conn, k, v)

        await asyncio.shield(self._ledger.submit(write))

    async def _restore(self, sale: Sale) -> None:
        """Rebuild one sale's Redis state from the ledger (the ledger is a superset here)."""
        assert self._redis is not None
        sales = dict(self._sales)
        orders = await self._ledger.read(lambda c: ledger.load_orders(c, sales, sale.sale_id))
        meta, held_key, orders_key, holds_key = self._sale_keys(sale.sale_id)
        held: dict[str, int] = {}
        counts = {"reserved": 0, "sold": 0, "expired": 0, "cancelled": 0}
        for o in orders:
            if o.status in (RESERVED, "paid"):
                held[o.user] = held.get(o.user, 0) + o.quantity
            if o.status == RESERVED:
                counts["reserved"] += o.quantity
            elif o.status == "paid":
                counts["sold"] += o.quantity
            else:
                counts[o.status] += 1
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(meta, held_key, orders_key, holds_key)
        pipe.hset(meta, mapping={
            **self._static_fields(sale),
            "remaining": sale.stock - counts["reserved"] - counts["sold"],
            "sold": counts["sold"], "expired": counts["expired"], "cancelled": counts["cancelled"],
        })
        if held:
            pipe.hset(held_key, mapping=held)
        if orders:
            pipe.hset(orders_key, mapping={o.order_id: _order_record(o) for o in orders})
        due = {o.order_id: _ms(o.expires_at) for o in orders if o.status == RESERVED}
        if due:
            pipe.zadd(holds_key, due)
        await pipe.execute()

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reconcile_interval)
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: try again next round
                self._warn("redis_reconcile_failed", error=repr(exc))

    async def _drain(self) -> int:
        """Copy the order log into the ledger (committed), then trim what was copied."""
        r = self._redis
        assert r is not None
        total = 0
        async with self._drain_lock:
            while True:
                low = "-" if self._cursor == "0-0" else "(" + self._cursor
                entries = await r.xrange(self._log_key, min=low, max="+", count=5000)
                if not entries:
                    return total
                last = entries[-1][0]
                rows = [fields for _, fields in entries]
                await asyncio.shield(self._ledger.submit(lambda c: _apply_log(c, rows, last)))
                self._cursor = last
                await r.xtrim(self._log_key, minid=last, approximate=False)
                total += len(entries)

    async def sync(self) -> None:
        await self._drain()

    # writes -------------------------------------------------------------------------

    @staticmethod
    def _static_fields(sale: Sale) -> dict[str, Any]:
        return {
            "room": sale.room, "sku": sale.sku, "stock": sale.stock, "limit": sale.per_user_limit,
            "starts": _ms(sale.starts_at), "ends": _ms(sale.ends_at), "hold": _ms(sale.hold_seconds),
        }

    async def create_sale(self, sale: Sale) -> None:
        assert self._redis is not None
        row = ledger.sale_row(sale)
        await asyncio.shield(self._ledger.submit(lambda c: c.execute(ledger.INSERT_SALE, row)))
        self._sales[sale.sale_id] = sale
        meta = self._sale_keys(sale.sale_id)[0]
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(meta, mapping=self._static_fields(sale))
        for field, value in (("remaining", sale.stock), ("sold", 0), ("expired", 0), ("cancelled", 0)):
            pipe.hsetnx(meta, field, value)
        try:
            await pipe.execute()
        except RedisError as exc:  # the next start restores it from the ledger
            raise InventoryError(f"redis: {exc}") from exc

    async def _eval(self, script: str, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        """EVALSHA on the pipelined connection. Retried once when the script cache was
        lost (NOSCRIPT: it did not run) or the connection broke (it may have run: every
        script here is idempotent, so running it again gives the same answer)."""
        assert self._pipe is not None
        last: Exception | None = None
        for _ in range(3):
            generation = self._script_generation
            try:
                return await self._pipe.call("EVALSHA", self._sha[script], len(keys), *keys, *args)
            except NoScriptError as exc:  # Redis restarted and lost its script cache
                last = exc
                try:
                    await self._load_scripts(generation)
                except (RedisError, OSError) as reload_error:
                    raise InventoryError(f"redis: {reload_error!r}") from reload_error
            except (RedisError, OSError) as exc:  # OSError includes ConnectionError
                if last is not None and not isinstance(last, NoScriptError):
                    raise InventoryError(f"redis: {exc!r}") from exc
                last = exc
        raise InventoryError(f"redis: {last!r}")

    async def reserve(self, sale: Sale, request: ReserveRequest, order_id: str, now: float) -> Outcome:
        meta, held, orders, holds = self._sale_keys(sale.sale_id)
        body = request.body
        result = await self._eval(
            "reserve",
            (meta, held, orders, holds, self._idem_key(request.user, request.key), self._log_key),
            (request.user, request.quantity, request.key, body, order_id, _ms(now),
             self.idempotency_ttl, sale.sale_id),
        )
        kind = result[0]
        if kind == "ok":
            return Outcome(True, None, result[1], int(result[2]) / 1000.0, int(result[3]), sale.sale_id,
                           sale.sku, request.quantity)
        if kind == "no":
            remaining = int(result[2])
            if result[1] == UNKNOWN_SKU:
                return Outcome.reject(UNKNOWN_SKU, sku=request.sku, quantity=request.quantity)
            return Outcome.reject(result[1], remaining=remaining, sale=sale, quantity=request.quantity)
        record: str = result[1]
        if record.startswith("A|"):
            _, oid, expires, left, sale_id, qty, first_body = record.split("|", 6)
            if first_body != body:
                return Outcome.reject(KEY_REUSED, sale=sale, quantity=request.quantity)
            first = self._sales.get(sale_id, sale)
            return Outcome(True, None, oid, int(expires) / 1000.0, int(left), first.sale_id, first.sku, int(qty))
        _, reason, left, sale_id, qty, first_body = record.split("|", 5)
        if first_body != body:
            return Outcome.reject(KEY_REUSED, sale=sale, quantity=request.quantity)
        first = self._sales.get(sale_id, sale)
        return Outcome.reject(reason, remaining=int(left), sale=first, quantity=int(qty))

    def _sale_of(self, order_id: str) -> Sale:
        sale = self._sales.get(order_id.split(".", 1)[0])
        if sale is None:
            raise UnknownOrder(order_id)
        return sale

    async def transition(self, order_id: str, action: str, now: float) -> str:
        sale = self._sale_of(order_id)
        meta, held, orders, holds = self._sale_keys(sale.sale_id)
        state = await self._eval(
            "settle", (meta, held, orders, holds, self._log_key), (order_id, action, _ms(now), sale.sale_id)
        )
        if state == "unknown":
            raise UnknownOrder(order_id)
        return str(state)

    async def expire_due(self, sales: Iterable[Sale], now: float) -> list[Order]:
        out: list[Order] = []
        calls = []
        for sale in sales:
            meta, held, orders, holds = self._sale_keys(sale.sale_id)
            calls.append((sale, self._eval(
                "expire", (meta, held, orders, holds, self._log_key), (_ms(now), sale.sale_id, 1000)
            )))
        for sale, call in calls:
            flat = await call
            for i in range(0, len(flat), 2):
                out.append(_order_from_record(sale, flat[i], flat[i + 1]))
        return out

    async def prune(self, before: float) -> None:
        return None  # idempotency records expire by themselves (EX)

    # reads --------------------------------------------------------------------------

    async def _redis_counters(self, sale: Sale) -> Counters | None:
        """Reserved is what is neither sold nor left; orders is the size of the orders hash."""
        assert self._redis is not None
        meta, _, orders_key, _ = self._sale_keys(sale.sale_id)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hmget(meta, "remaining", "sold", "expired", "cancelled")
        pipe.hlen(orders_key)
        values, orders = await pipe.execute()
        if values[0] is None:
            return None
        remaining, sold, expired, cancelled = (int(v or 0) for v in values)
        return Counters(sale.stock, sold, sale.stock - sold - remaining, remaining, int(orders), expired, cancelled)

    async def remaining(self, sale_ids: list[str]) -> dict[str, int]:
        assert self._redis is not None
        if not sale_ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for sid in sale_ids:
            pipe.hget(self._sale_keys(sid)[0], "remaining")
        try:
            values = await pipe.execute()
        except RedisError as exc:
            raise InventoryError(f"redis: {exc!r}") from exc
        return {sid: int(v) for sid, v in zip(sale_ids, values) if v is not None}

    async def counters(self, sale: Sale) -> Counters:
        try:
            found = await self._redis_counters(sale)
        except RedisError as exc:
            raise InventoryError(f"redis: {exc!r}") from exc
        return found or Counters(sale.stock, 0, 0, sale.stock, 0)

    async def orders(self, sale: Sale) -> list[Order]:
        """The sale's orders as Redis has them (the ledger has them too, after ``sync``)."""
        assert self._redis is not None
        try:
            raw = await self._redis.hgetall(self._sale_keys(sale.sale_id)[2])
        except RedisError as exc:
            raise InventoryError(f"redis: {exc!r}") from exc
        found = [_order_from_record(sale, oid, rec) for oid, rec in raw.items()]
        return sorted(found, key=lambda o: (o.created_at, o.order_id))

    async def order(self, order_id: str) -> Order | None:
        assert self._redis is not None
        try:
            sale = self._sale_of(order_id)
        except UnknownOrder:
            return None
        try:
            raw = await self._redis.hget(self._sale_keys(sale.sale_id)[2], order_id)
        except RedisError as exc:
            raise InventoryError(f"redis: {exc!r}") from exc
        return None if raw is None else _order_from_record(sale, order_id, raw)


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _order_record(o: Order) -> str:
    """status|quantity|expires (ms)|created (ms)|key|user (as lua/reserve.lua writes it)."""
    return f"{o.status}|{o.quantity}|{_ms(o.expires_at)}|{_ms(o.created_at)}|{o.key}|{o.user}"


def _order_from_record(sale: Sale, order_id: str, raw: str) -> Order:
    status, quantity, expires, created, key, user = raw.split("|", 5)
    return Order(order_id, sale.sale_id, sale.room, sale.sku, user, int(quantity), status,
                 int(created) / 1000.0, int(expires) / 1000.0, key)


def _apply_log(conn: sqlite3.Connection, rows: list[dict[str, str]], last: str) -> None:
    """Apply order-log entries to the ledger, idempotently, and move the cursor (one transaction)."""
    inserts, moves = [], []
    for f in rows:
        op = f["op"]
        if op == "reserve":
            created, expires = int(f["c"]) / 1000.0, int(f["e"]) / 1000.0
            inserts.append((f["o"], f["s"], f["u"], int(f["q"]), RESERVED, f["k"], created, expires, created))
        else:
            moves.append((op, int(f["at"]) / 1000.0, f["o"]))
    # Entries are in log order: every move's order was inserted before it.
    conn.executemany(ledger.INSERT_ORDER, inserts)
    conn.executemany(ledger.UPDATE_STATUS, moves)
    ledger.set_meta(conn, CURSOR, last)
