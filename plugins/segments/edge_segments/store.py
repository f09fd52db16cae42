"""SQLite (WAL) persistence under ``edge.data_dir("segments")``.

Two kinds of writes:

- **Batched** (``flush``, about once a second from ``edge_tick``): the event
  log (append-only) and the profiles the engine changed.
- **At once, in the open transaction**: the facts whose uniqueness guards
  something: paid orders (deduplicated by order id), segment entries and their
  actions (each action once per entry), coupons (one per viewer, reason and
  subject), referrals, draws, polls and votes. The statement runs when the
  fact happens (so the uniqueness check sees everything before it), inside
  the transaction that ``flush`` commits.

So everything between two flushes is committed together: a crash loses at
most that last second, all of it or none (never a coupon without its profile
change, or the reverse). Coupon redemption, which another plugin relies on at
checkout, is committed at once. An autocommitted statement costs ~70 µs on
this kind of disk, one in an open transaction ~2 µs.

Every method is synchronous and quick (indexed statements); the plugin calls
them on the node's event loop.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .engine import Profile, Transition

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    sku TEXT NOT NULL DEFAULT '',
    value TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS profiles (
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    last_watch_at REAL,
    watch_seconds REAL NOT NULL,
    interactions INTEGER NOT NULL,
    clicks INTEGER NOT NULL,
    orders INTEGER NOT NULL,
    first_order_at REAL,
    last_order_at REAL,
    spend_micros INTEGER NOT NULL,
    members INTEGER NOT NULL,
    hv_entries INTEGER NOT NULL,
    nb_entries INTEGER NOT NULL,
    dm_entries INTEGER NOT NULL,
    due_at REAL,
    PRIMARY KEY (room, identity)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS profiles_due ON profiles (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS profiles_seen ON profiles (room, last_seen);
CREATE TABLE IF NOT EXISTS skus (
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    sku TEXT NOT NULL,
    clicks INTEGER NOT NULL,
    orders INTEGER NOT NULL,
    PRIMARY KEY (room, identity, sku)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS orders (
    room TEXT NOT NULL,
    order_id TEXT NOT NULL,
    buyer TEXT NOT NULL,
    sku TEXT NOT NULL,
    amount_micros INTEGER NOT NULL,
    paid_at REAL NOT NULL,
    refunded_at REAL,
    PRIMARY KEY (room, order_id)
);
CREATE INDEX IF NOT EXISTS orders_buyer ON orders (room, buyer);
CREATE TABLE IF NOT EXISTS memberships (
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    segment TEXT NOT NULL,
    entry INTEGER NOT NULL,
    entered_at REAL NOT NULL,
    left_at REAL,
    PRIMARY KEY (room, identity, segment, entry)
);
CREATE INDEX IF NOT EXISTS memberships_current ON memberships (room, segment) WHERE left_at IS NULL;
CREATE TABLE IF NOT EXISTS actions (
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    segment TEXT NOT NULL,
    entry INTEGER NOT NULL,
    action TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (room, identity, segment, entry, action)
);
CREATE TABLE IF NOT EXISTS coupons (
    code TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    reason TEXT NOT NULL,
    subject TEXT NOT NULL,
    percent_off INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    redeemed_at REAL,
    order_id TEXT,
    UNIQUE (room, identity, reason, subject)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    identity TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_to ON outbox (room, identity);
CREATE TABLE IF NOT EXISTS referrals (
    room TEXT NOT NULL,
    invitee TEXT NOT NULL,
    referrer TEXT NOT NULL,
    source TEXT NOT NULL,
    at REAL NOT NULL,
    converted_at REAL,
    order_id TEXT,
    amount_micros INTEGER,
    PRIMARY KEY (room, invitee)
);
CREATE TABLE IF NOT EXISTS draws (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    title TEXT NOT NULL,
    winners_wanted INTEGER NOT NULL,
    seed TEXT NOT NULL,
    commitment TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    run_at REAL,
    participants TEXT,
    winners TEXT
);
CREATE TABLE IF NOT EXISTS polls (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    question TEXT NOT NULL,
    options TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    closed_at REAL
);
CREATE TABLE IF NOT EXISTS votes (
    poll_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    option INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (poll_id, identity)
);
"""

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 10  # 50 random bits

PROFILE_COLUMNS = (
    "room, identity, first_seen, last_seen, last_watch_at, watch_seconds, interactions, clicks, "
    "orders, first_order_at, last_order_at, spend_micros, members, hv_entries, nb_entries, "
    "dm_entries, due_at"
)


@dataclass(frozen=True, slots=True)
class Coupon:
    code: str
    room: str
    identity: str
    reason: str
    subject: str
    percent_off: int
    created_at: float
    expires_at: float
    redeemed_at: float | None = None
    order_id: str | None = None

    def view(self) -> dict[str, Any]:
        return {
            "code": self.code, "room": self.room, "identity": self.identity, "reason": self.reason,
            "subject": self.subject, "percent_off": self.percent_off, "created_at": self.created_at,
            "expires_at": self.expires_at, "redeemed_at": self.redeemed_at, "order_id": self.order_id,
        }


def new_code(prefix: str) -> str:
    body = "".join(CODE_ALPHABET[b & 31] for b in secrets.token_bytes(CODE_LENGTH))  # 32 symbols: 5 bits each
    return f"{prefix}-{body}" if prefix else body


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=2000")
        self.db.execute("PRAGMA cache_size=-32768")  # 32 MiB of pages: profiles upserted at random keys
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.commit()
        self.db.close()

    def _tx(self) -> sqlite3.Connection:
        """The connection, inside the transaction that the next ``commit`` ends."""
        if not self.db.in_transaction:
            self.db.execute("BEGIN")
        return self.db

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")

    # profiles and the event log (batched) -------------------------------------------------

    def load_profile(self, room: str, identity: str) -> Profile | None:
        row = self.db.execute(
            f"SELECT {PROFILE_COLUMNS} FROM profiles WHERE room = ? AND identity = ?", (room, identity)
        ).fetchone()
        if row is None:
            return None
        p = Profile(room, identity, row[2])
        (
            _, _, _, p.last_seen, p.last_watch_at, p.watch_seconds, p.interactions, p.clicks,
            p.orders, p.first_order_at, p.last_order_at, p.spend_micros, p.members, p.hv_entries,
            p.nb_entries, p.dm_entries, p.due_at,
        ) = row
        skus = self.db.execute(
            "SELECT sku, clicks, orders FROM skus WHERE room = ? AND identity = ?", (room, identity)
        ).fetchall()
        if skus:
            p.skus = {sku: [clicks, orders] for sku, clicks, orders in skus}
        return p

    def flush(
        self,
        profiles: Iterable[Profile],
        events: Sequence[tuple[Any, ...]],
        skus: Sequence[tuple[str, str, str, int, int]] | None = None,
    ) -> None:
        """Append ``events``, save ``profiles`` and the changed per-SKU counts ``skus``
        (``None``: every SKU count of those profiles), and commit everything written
        since the last flush."""
        rows = []
        sku_rows = list(skus) if skus is not None else []
        for p in profiles:
            rows.append((
                p.room, p.identity, p.first_seen, p.last_seen, p.last_watch_at, p.watch_seconds,
                p.interactions, p.clicks, p.orders, p.first_order_at, p.last_order_at, p.spend_micros,
                p.members, p.hv_entries, p.nb_entries, p.dm_entries, p.due_at,
            ))
            if skus is None:
                for sku, (clicks, orders) in (p.skus or {}).items():
                    sku_rows.append((p.room, p.identity, sku, clicks, orders))
        db = self._tx()
        try:
            if events:
                db.executemany(
                    "INSERT INTO events (at, room, identity, kind, sku, value) VALUES (?, ?, ?, ?, ?, ?)",
                    events,
                )
            if rows:
                db.executemany(
                    f"INSERT OR REPLACE INTO profiles ({PROFILE_COLUMNS}) VALUES ({', '.join('?' * 17)})", rows
                )
            if sku_rows:
                db.executemany("INSERT OR REPLACE INTO skus VALUES (?, ?, ?, ?, ?)", sku_rows)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def due(self, now: float, limit: int) -> list[tuple[str, str]]:
        """Stored profiles whose segments may have changed by ``now`` (oldest first)."""
        return self.db.execute(
            "SELECT room, identity FROM profiles WHERE due_at IS NOT NULL AND due_at <= ? "
            "ORDER BY due_at LIMIT ?",
            (now, limit),
        ).fetchall()

    def prune_events(self, before: float) -> int:
        return self._tx().execute("DELETE FROM events WHERE at < ?", (before,)).rowcount

    def events(self, room: str | None = None) -> list[tuple[Any, ...]]:
        """The event log in order (for audits and rebuilds)."""
        if room is None:
            return self.db.execute("SELECT at, room, identity, kind, sku, value FROM events ORDER BY id").fetchall()
        return self.db.execute(
            "SELECT at, room, identity, kind, sku, value FROM events WHERE room = ? ORDER BY id", (room,)
        ).fetchall()

    # orders (immediate: the order id is the idempotency key) -----------------------------

    def add_order(self, room: str, order_id: str, buyer: str, sku: str, micros: int, at: float) -> bool:
        """Record a paid order; False when this order id was recorded before."""
        return self._tx().execute(
            "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (room, order_id, buyer, sku, micros, at),
        ).rowcount == 1

    def refund_order(self, room: str, order_id: str, at: float) -> tuple[str, str, int] | None:
        """Mark a paid order refunded; its ``(buyer, sku, micros)``, or None (unknown, or refunded before)."""
        row = self._tx().execute(
            "SELECT buyer, sku, amount_micros FROM orders WHERE room = ? AND order_id = ? AND refunded_at IS NULL",
            (room, order_id),
        ).fetchone()
        if row is None:
            return None
        self._tx().execute(
            "UPDATE orders SET refunded_at = ? WHERE room = ? AND order_id = ?", (at, room, order_id)
        )
        return row[0], row[1], row[2]

    # segments (immediate) ----------------------------------------------------------------

    def record_transition(self, t: Transition) -> bool:
        """Record an entry (False if this entry was recorded before) or a departure."""
        if t.entered:
            return self._tx().execute(
                "INSERT OR IGNORE INTO memberships VALUES (?, ?, ?, ?, ?, NULL)",
                (t.room, t.identity, t.segment, t.entry, t.at),
            ).rowcount == 1
        self._tx().execute(
            "UPDATE memberships SET left_at = ? WHERE room = ? AND identity = ? AND segment = ? "
            "AND left_at IS NULL",
            (t.at, t.room, t.identity, t.segment),
        )
        return True

    def claim_action(self, room: str, identity: str, segment: str, entry: int, action: str, at: float) -> bool:
        """True once per (viewer, segment, entry, action): the caller then runs the action."""
        return self._tx().execute(
            "INSERT OR IGNORE INTO actions VALUES (?, ?, ?, ?, ?, ?)",
            (room, identity, segment, entry, action, at),
        ).rowcount == 1

    def actions(self, room: str, identity: str) -> list[tuple[str, int, str, float]]:
        return self.db.execute(
            "SELECT segment, entry, action, at FROM actions WHERE room = ? AND identity = ? ORDER BY at, action",
            (room, identity),
        ).fetchall()

    def members(self, room: str, segment: str, limit: int) -> list[tuple[str, int, float]]:
        return self.db.execute(
            "SELECT identity, entry, entered_at FROM memberships WHERE room = ? AND segment = ? "
            "AND left_at IS NULL ORDER BY entered_at, identity LIMIT ?",
            (room, segment, limit),
        ).fetchall()

    def member_count(self, room: str, segment: str) -> int:
        return int(self.db.execute(
            "SELECT COUNT(*) FROM memberships WHERE room = ? AND segment = ? AND left_at IS NULL",
            (room, segment),
        ).fetchone()[0])

    # coupons (immediate) -----------------------------------------------------------------

    def grant_coupon(
        self, room: str, identity: str, reason: str, subject: str, percent_off: int,
        at: float, expires_at: float, prefix: str,
    ) -> Coupon | None:
        """A new coupon, or None when this (viewer, reason, subject) already has one."""
        for _ in range(8):  # a code collision (50 random bits) is retried with a new code
            code = new_code(prefix)
            try:
                cursor = self._tx().execute(
                    "INSERT INTO coupons VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL) "
                    "ON CONFLICT (room, identity, reason, subject) DO NOTHING",
                    (code, room, identity, reason, subject, percent_off, at, expires_at),
                )
            except sqlite3.IntegrityError:
                continue  # the code exists
            if cursor.rowcount == 0:
                return None
            return Coupon(code, room, identity, reason, subject, percent_off, at, expires_at)
        raise RuntimeError("could not find a free coupon code")

    def coupon(self, code: str) -> Coupon | None:
        row = self.db.execute("SELECT * FROM coupons WHERE code = ?", (code,)).fetchone()
        return None if row is None else Coupon(*row)

    def coupons(self, room: str, identity: str | None = None, limit: int = 1000) -> list[Coupon]:
        if identity is None:
            rows = self.db.execute(
                "SELECT * FROM coupons WHERE room = ? ORDER BY created_at, code LIMIT ?", (room, limit)
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM coupons WHERE room = ? AND identity = ? ORDER BY created_at, code LIMIT ?",
                (room, identity, limit),
            ).fetchall()
        return [Coupon(*row) for row in rows]

    def redeem_coupon(self, code: str, identity: str, order_id: str, at: float) -> bool:
        """Mark a valid coupon of ``identity`` used (once, before it expires); committed at once."""
        used = self._tx().execute(
            "UPDATE coupons SET redeemed_at = ?, order_id = ? WHERE code = ? AND identity = ? "
            "AND redeemed_at IS NULL AND expires_at > ?",
            (at, order_id, code, identity, at),
        ).rowcount == 1
        self.commit()
        return used

    # outbox: in-room notifications for viewers not connected at the time -----------------

    def push_pending(
        self, room: str, identity: str, kind: str, data: dict[str, Any], at: float, expires_at: float
    ) -> None:
        self._tx().execute(
            "INSERT INTO outbox (room, identity, kind, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
            (room, identity, kind, json.dumps(data), at, expires_at),
        )

    def take_pending(self, room: str, identity: str, now: float) -> list[tuple[str, dict[str, Any]]]:
        rows = self._tx().execute(
            "SELECT id, kind, data, expires_at FROM outbox WHERE room = ? AND identity = ? ORDER BY id",
            (room, identity),
        ).fetchall()
        if not rows:
            return []
        self._tx().execute("DELETE FROM outbox WHERE room = ? AND identity = ?", (room, identity))
        return [(kind, json.loads(data)) for _, kind, data, expires in rows if expires > now]

    def prune_pending(self, now: float) -> int:
        return self._tx().execute("DELETE FROM outbox WHERE expires_at <= ?", (now,)).rowcount

    # referrals (immediate) ---------------------------------------------------------------

    def add_referral(self, room: str, invitee: str, referrer: str, source: str, at: float) -> bool:
        """Record who referred ``invitee`` (the first referrer wins); False if already referred."""
        return self._tx().execute(
            "INSERT OR IGNORE INTO referrals VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL)",
            (room, invitee, referrer, source, at),
        ).rowcount == 1

    def referral(self, room: str, invitee: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT invitee, referrer, source, at, converted_at, order_id, amount_micros FROM referrals "
            "WHERE room = ? AND invitee = ?",
            (room, invitee),
        ).fetchone()
        return None if row is None else _referral(row)

    def convert_referral(self, room: str, invitee: str, order_id: str, micros: int, at: float) -> bool:
        return self._tx().execute(
            "UPDATE referrals SET converted_at = ?, order_id = ?, amount_micros = ? "
            "WHERE room = ? AND invitee = ? AND converted_at IS NULL",
            (at, order_id, micros, room, invitee),
        ).rowcount == 1

    def referrals(self, room: str, limit: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT invitee, referrer, source, at, converted_at, order_id, amount_micros FROM referrals "
            "WHERE room = ? ORDER BY at, invitee LIMIT ?",
            (room, limit),
        ).fetchall()
        return [_referral(row) for row in rows]

    def referral_summary(self, room: str) -> list[tuple[str, int, int, int]]:
        """Per referrer: (referrer, invites, conversions, converted amount in millionths)."""
        return self.db.execute(
            "SELECT referrer, COUNT(*), COUNT(converted_at), COALESCE(SUM(amount_micros), 0) FROM referrals "
            "WHERE room = ? GROUP BY referrer ORDER BY referrer",
            (room,),
        ).fetchall()

    # draws (immediate) -------------------------------------------------------------------

    def add_draw(self, draw: dict[str, Any]) -> None:
        self._tx().execute(
            "INSERT INTO draws VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
            (draw["draw_id"], draw["room"], draw["title"], draw["winners_wanted"], draw["seed"],
             draw["commitment"], draw["created_by"], draw["created_at"]),
        )

    def draw(self, room: str, draw_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT id, room, title, winners_wanted, seed, commitment, created_by, created_at, run_at, "
            "participants, winners FROM draws WHERE room = ? AND id = ?",
            (room, draw_id),
        ).fetchone()
        if row is None:
            return None
        keys = ("draw_id", "room", "title", "winners_wanted", "seed", "commitment", "created_by",
                "created_at", "run_at", "participants", "winners")
        out = dict(zip(keys, row))
        out["participants"] = json.loads(out["participants"]) if out["participants"] else None
        out["winners"] = json.loads(out["winners"]) if out["winners"] else None
        return out

    def finish_draw(self, draw_id: str, participants: list[str], winners: list[str], at: float) -> bool:
        return self._tx().execute(
            "UPDATE draws SET run_at = ?, participants = ?, winners = ? WHERE id = ? AND run_at IS NULL",
            (at, json.dumps(participants), json.dumps(winners), draw_id),
        ).rowcount == 1

    # polls (immediate) -------------------------------------------------------------------

    def add_poll(self, poll_id: str, room: str, question: str, options: list[str], by: str, at: float) -> None:
        self._tx().execute(
            "INSERT INTO polls VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (poll_id, room, question, json.dumps(options), by, at),
        )

    def polls(self, room: str | None = None, open_only: bool = True) -> list[dict[str, Any]]:
        sql = "SELECT id, room, question, options, created_by, created_at, closed_at FROM polls"
        where, args = [], []
        if room is not None:
            where.append("room = ?")
            args.append(room)
        if open_only:
            where.append("closed_at IS NULL")
        if where:
            sql += " WHERE " + " AND ".join(where)
        out = []
        for row in self.db.execute(sql + " ORDER BY created_at", args).fetchall():
            keys = ("poll_id", "room", "question", "options", "created_by", "created_at", "closed_at")
            poll = dict(zip(keys, row))
            poll["options"] = json.loads(poll["options"])
            out.append(poll)
        return out

    def poll(self, poll_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT id, room, question, options, created_by, created_at, closed_at FROM polls WHERE id = ?",
            (poll_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("poll_id", "room", "question", "options", "created_by", "created_at", "closed_at")
        poll = dict(zip(keys, row))
        poll["options"] = json.loads(poll["options"])
        return poll

    def vote(self, poll_id: str, identity: str, option: int, at: float) -> bool:
        return self._tx().execute(
            "INSERT OR IGNORE INTO votes VALUES (?, ?, ?, ?)", (poll_id, identity, option, at)
        ).rowcount == 1

    def tally(self, poll_id: str) -> dict[int, int]:
        return dict(self.db.execute(
            "SELECT option, COUNT(*) FROM votes WHERE poll_id = ? GROUP BY option", (poll_id,)
        ).fetchall())

    def close_poll(self, poll_id: str, at: float) -> bool:
        return self._tx().execute(
            "UPDATE polls SET closed_at = ? WHERE id = ? AND closed_at IS NULL", (at, poll_id)
        ).rowcount == 1

    # business metrics --------------------------------------------------------------------

    def order_stats(self, room: str) -> tuple[int, int, int, int]:
        """(buyers, buyers with >= 2 orders, orders, total amount in millionths), refunds excluded."""
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(n >= 2), 0), COALESCE(SUM(n), 0), COALESCE(SUM(spend), 0) "
            "FROM (SELECT COUNT(*) AS n, SUM(amount_micros) AS spend FROM orders "
            "      WHERE room = ? AND refunded_at IS NULL GROUP BY buyer)",
            (room,),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def viewer_stats(self, room: str, active_since: float) -> tuple[int, int]:
        """(known viewers, viewers seen at or after ``active_since``)."""
        row = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(last_seen >= ?), 0) FROM profiles WHERE room = ?",
            (active_since, room),
        ).fetchone()
        return int(row[0]), int(row[1])


def _referral(row: Sequence[Any]) -> dict[str, Any]:
    from .engine import micros_to_str

    invitee, referrer, source, at, converted_at, order_id, micros = row
    return {
        "invitee": invitee, "referrer": referrer, "source": source, "at": at,
        "converted": converted_at is not None, "converted_at": converted_at, "order_id": order_id,
        "amount_base": None if micros is None else micros_to_str(micros),
    }
