"""Durable loyalty state in SQLite: the append-only ledger and the members it sums to.

One file, ``<data_dir>/plugins/loyalty/loyalty.sqlite3``, in WAL mode with
``synchronous=FULL`` (``durable = false``: ``NORMAL``).

* ``ledger``: one row per account (``points`` or ``growth``) an event touches.
  ``(event_id, account)`` is unique, so appending an event twice changes
  nothing. Triggers refuse every ``UPDATE`` and ``DELETE``: corrections are
  ``reversal`` rows that reference the event they undo.
* ``members``: per member, the balances the ledger sums to (a cache written in
  the same transaction as the rows, checked by ``verify``), the held tier, the
  profile (birthday, time zone) and the last check-in day.
* ``tier_changes``: append-only history of tier moves.

``Store`` is synchronous and owns one connection; every public method is one
transaction. The service runs it on a single worker thread (``service.py``),
so transactions never interleave and the event loop never waits on the disk.
``Reader`` is a second connection for reads that must not queue behind writes.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from . import ledger
from .clock import add_months, birthdays_on, local, local_day, parse_birthday
from .config import LoyaltyConfig
from .tiers import TierPolicy

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    account TEXT NOT NULL CHECK (account IN ('points', 'growth')),
    identity TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('earn', 'redeem', 'adjust', 'expire', 'reversal')),
    rule TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount <> 0),
    at REAL NOT NULL,
    day TEXT NOT NULL,
    expires_at REAL,
    ref TEXT,
    reason TEXT,
    actor TEXT,
    UNIQUE (event_id, account)
);
CREATE INDEX IF NOT EXISTS ledger_member ON ledger (identity, account, seq);
CREATE INDEX IF NOT EXISTS ledger_rule_day ON ledger (identity, rule, day);
CREATE INDEX IF NOT EXISTS ledger_expiry ON ledger (expires_at) WHERE expires_at IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the loyalty ledger is append-only: append a reversal instead'); END;
CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the loyalty ledger is append-only: append a reversal instead'); END;

CREATE TABLE IF NOT EXISTS members (
    identity TEXT PRIMARY KEY,
    points INTEGER NOT NULL DEFAULT 0,
    growth INTEGER NOT NULL DEFAULT 0,
    tier_level INTEGER NOT NULL DEFAULT 1,
    below_since REAL,
    timezone TEXT,
    birthday TEXT,
    last_checkin TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS members_birthday ON members (birthday) WHERE birthday IS NOT NULL;
CREATE INDEX IF NOT EXISTS members_below ON members (below_since) WHERE below_since IS NOT NULL;

CREATE TABLE IF NOT EXISTS tier_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity TEXT NOT NULL,
    from_level INTEGER NOT NULL,
    to_level INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tier_changes_member ON tier_changes (identity, id);
CREATE TRIGGER IF NOT EXISTS tier_changes_no_update BEFORE UPDATE ON tier_changes
BEGIN SELECT RAISE(ABORT, 'tier_changes is append-only'); END;
CREATE TRIGGER IF NOT EXISTS tier_changes_no_delete BEFORE DELETE ON tier_changes
BEGIN SELECT RAISE(ABORT, 'tier_changes is append-only'); END;

CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

COLUMNS = "seq, event_id, account, identity, kind, rule, amount, at, day, expires_at, ref, reason, actor"
MEMBER_COLUMNS = (
    "identity, points, growth, tier_level, below_since, timezone, birthday, last_checkin, last_seq"
)


class LoyaltyError(Exception):
    """A refusal with a short code (``insufficient_points``, ``not_found``, ...)."""

    def __init__(self, code: str, detail: str, status: int = 409) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(slots=True)
class Member:
    identity: str
    points: int = 0
    growth: int = 0
    tier_level: int = 1
    below_since: float | None = None
    timezone: str | None = None
    birthday: str | None = None
    last_checkin: str | None = None
    last_seq: int = 0


@dataclass(slots=True)
class Outcome:
    """What a write did: ``status`` (``credited``, ``duplicate``, ``capped``, ...), the
    ledger rows it appended, and the members it touched (for the service's cache)."""

    status: str
    entries: list[dict[str, Any]] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def entry_view(row: Iterable[Any]) -> dict[str, Any]:
    return dict(zip(COLUMNS.split(", "), row))


def connect(path: Path | str, durable: bool = True, readonly: bool = False) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=5000")
    if not readonly:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return db


class Store:
    """The synchronous store. Every public method is one transaction."""

    def __init__(self, path: Path | str, config: LoyaltyConfig, *, durable: bool | None = None) -> None:
        self.path = str(path)
        self.config = config
        self.policy = TierPolicy(
            config.tiers, config.downgrade, config.downgrade_period, config.downgrade_grace_periods
        )
        self.db = connect(self.path, config.durable if durable is None else durable)
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self.db)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return result

    # members -----------------------------------------------------------------------------

    def tz(self, member: Member) -> str:
        return member.timezone or self.config.default_timezone

    @staticmethod
    def _load(db: sqlite3.Connection, identity: str) -> Member | None:
        row = db.execute(f"SELECT {MEMBER_COLUMNS} FROM members WHERE identity = ?", (identity,)).fetchone()
        return None if row is None else Member(*row)

    def _member(self, db: sqlite3.Connection, identity: str, now: float) -> Member:
        member = self._load(db, identity)
        if member is None:
            db.execute(
                "INSERT INTO members (identity, created_at, updated_at) VALUES (?, ?, ?)", (identity, now, now)
            )
            member = Member(identity)
        return member

    def _save(self, db: sqlite3.Connection, member: Member, now: float, reason: str) -> None:
        """Persist the member's balances and move their tier after a growth change."""
        level, below = self.policy.after_growth(member.tier_level, member.below_since, member.growth, now)
        self._set_tier(db, member, level, below, now, reason)
        db.execute(
            "UPDATE members SET points = ?, growth = ?, tier_level = ?, below_since = ?, last_checkin = ?,"
            " last_seq = ?, updated_at = ? WHERE identity = ?",
            (
                member.points, member.growth, member.tier_level, member.below_since, member.last_checkin,
                member.last_seq, now, member.identity,
            ),
        )

    @staticmethod
    def _set_tier(
        db: sqlite3.Connection, member: Member, level: int, below: float | None, now: float, reason: str
    ) -> bool:
        changed = level != member.tier_level
        if changed:
            db.execute(
                "INSERT INTO tier_changes (identity, from_level, to_level, reason, at) VALUES (?, ?, ?, ?, ?)",
                (member.identity, member.tier_level, level, reason, now),
            )
        member.tier_level, member.below_since = level, below
        return changed

    # the ledger --------------------------------------------------------------------------

    @staticmethod
    def _exists(db: sqlite3.Connection, event_id: str) -> bool:
        return db.execute("SELECT 1 FROM ledger WHERE event_id = ? LIMIT 1", (event_id,)).fetchone() is not None

    def _append(
        self,
        db: sqlite3.Connection,
        member: Member,
        *,
        event_id: str,
        account: str,
        kind: str,
        rule: str,
        amount: int,
        at: float,
        day: str | None = None,
        expires_at: float | None = None,
        ref: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> dict[str, Any]:
        day = day or local_day(at, self.tz(member))
        if account == "points" and kind in ("earn", "adjust") and amount > 0 and expires_at is None:
            months = self.config.points_expiry_months
            expires_at = add_months(at, months) if months else None
        cur = db.execute(
            f"INSERT INTO ledger ({COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event_id, account, member.identity, kind, rule, amount, at, day, expires_at, ref, reason, actor),
        )
        seq = int(cur.lastrowid or 0)
        if account == "points":
            member.points += amount
        else:
            member.growth += amount
        member.last_seq = seq
        return {
            "seq": seq, "event_id": event_id, "account": account, "identity": member.identity, "kind": kind,
            "rule": rule, "amount": amount, "at": at, "day": day, "expires_at": expires_at, "ref": ref,
            "reason": reason, "actor": actor,
        }

    def _credit(
        self,
        db: sqlite3.Connection,
        member: Member,
        *,
        event_id: str,
        kind: str,
        rule: str,
        points: int,
        growth: int,
        at: float,
        day: str | None = None,
        ref: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> list[dict[str, Any]]:
        entries = []
        for account, amount in (("points", points), ("growth", growth)):
            if amount:
                entries.append(
                    self._append(
                        db, member, event_id=event_id, account=account, kind=kind, rule=rule, amount=amount,
                        at=at, day=day, ref=ref, reason=reason, actor=actor,
                    )
                )
        return entries

    @staticmethod
    def _points_rows(db: sqlite3.Connection, identity: str) -> list[ledger.Row]:
        return [
            ledger.Row(*row)
            for row in db.execute(
                "SELECT seq, event_id, kind, amount, expires_at, ref FROM ledger"
                " WHERE identity = ? AND account = 'points' ORDER BY seq",
                (identity,),
            )
        ]

    def _expire(self, db: sqlite3.Connection, member: Member, now: float) -> list[dict[str, Any]]:
        """Append an ``expire`` entry for every lot past its time with points left."""
        if not self.config.points_expiry_months and not self._has_expiring(db, member.identity):
            return []
        entries = []
        for lot, points in ledger.due_expiries(self._points_rows(db, member.identity), now):
            entries.append(
                self._append(
                    db, member, event_id=f"expire:{lot.event_id}:{lot.expire_entries + 1}", account="points",
                    kind="expire", rule="expiry", amount=-points, at=now, ref=lot.event_id,
                )
            )
        return entries

    @staticmethod
    def _has_expiring(db: sqlite3.Connection, identity: str) -> bool:
        row = db.execute(
            "SELECT 1 FROM ledger WHERE identity = ? AND account = 'points' AND expires_at IS NOT NULL LIMIT 1",
            (identity,),
        ).fetchone()
        return row is not None

    def _count(self, db: sqlite3.Connection, identity: str, rule: str, day: str) -> int:
        row = db.execute(
            "SELECT COUNT(DISTINCT event_id) FROM ledger WHERE identity = ? AND rule = ? AND day = ? AND kind = 'earn'",
            (identity, rule, day),
        ).fetchone()
        return int(row[0])

    # earning -----------------------------------------------------------------------------

    def earn(
        self,
        identity: str,
        rule: str,
        at: float,
        *,
        points: int | None = None,
        growth: int | None = None,
        event_id: str | None = None,
        ref: str | None = None,
        cap: int | None = None,
    ) -> Outcome:
        """Credit one occurrence of ``rule`` (one transaction). See ``_earn``."""
        return self._tx(lambda db: self._earn(db, identity, rule, at, points, growth, event_id, ref, cap))

    def earn_many(self, items: list[dict[str, Any]]) -> list[Outcome]:
        """Several ``earn`` calls (keyword dicts) in one transaction: one fsync for a tick's worth."""

        def tx(db: sqlite3.Connection) -> list[Outcome]:
            return [
                self._earn(
                    db, item["identity"], item["rule"], item["at"], item.get("points"), item.get("growth"),
                    item.get("event_id"), item.get("ref"), item.get("cap"),
                )
                for item in items
            ]

        return self._tx(tx)

    def _earn(
        self,
        db: sqlite3.Connection,
        identity: str,
        rule: str,
        at: float,
        points: int | None,
        growth: int | None,
        event_id: str | None,
        ref: str | None,
        cap: int | None,
    ) -> Outcome:
        """Credit one occurrence of ``rule``: its configured (points, growth) unless given.

        ``event_id`` makes it idempotent (a second call is a ``duplicate``);
        without one, occurrences are numbered per member and local day
        (``share:<identity>:<day>:<n>``), so ``cap`` bounds them exactly.
        """
        if points is None or growth is None:
            p, g = self.config.rule(rule)
            points = p if points is None else points
            growth = g if growth is None else growth
        if cap is None:
            cap = self.config.cap(rule)
        if event_id is not None and self._exists(db, event_id):
            return Outcome("duplicate", info={"event_id": event_id})
        member = self._member(db, identity, at)
        day = local_day(at, self.tz(member))
        count = self._count(db, identity, rule, day) if cap or event_id is None else 0
        if cap and count >= cap:
            return Outcome("capped", info={"day": day, "cap": cap})
        if event_id is None:
            event_id = f"{rule}:{identity}:{day}:{count + 1}"
        if not points and not growth:
            return Outcome("nothing", info={"event_id": event_id})
        entries = self._credit(
            db, member, event_id=event_id, kind="earn", rule=rule, points=points, growth=growth, at=at,
            day=day, ref=ref,
        )
        self._save(db, member, at, rule)
        info = {"event_id": event_id, "day": day}
        if cap:
            info["remaining"] = cap - count - 1
        return Outcome("credited", entries, [member], info)

    def checkin(self, identity: str, at: float) -> Outcome:
        """The daily check-in: once per member per local day, days only moving forward
        (changing the time zone westwards does not give a second check-in)."""

        def tx(db: sqlite3.Connection) -> Outcome:
            member = self._member(db, identity, at)
            day = local_day(at, self.tz(member))
            if member.last_checkin is not None and day <= member.last_checkin:
                return Outcome("already", members=[member], info={"day": member.last_checkin})
            points, growth = self.config.rule("checkin")
            member.last_checkin = day
            entries = self._credit(
                db, member, event_id=f"checkin:{identity}:{day}", kind="earn", rule="checkin", points=points,
                growth=growth, at=at, day=day,
            )
            self._save(db, member, at, "checkin")
            return Outcome("credited", entries, [member], {"day": day})

        return self._tx(tx)

    # orders and redemption ---------------------------------------------------------------

    def purchase(self, identity: str, order_id: str, points: int, growth: int, at: float) -> Outcome:
        """``commerce.order_paid``: credit once per order (event ``order:<order_id>``)."""
        return self.earn(
            identity, "purchase", at, points=points, growth=growth, event_id=f"order:{order_id}", ref=order_id, cap=0
        )

    def redeem(self, identity: str, points: int, order_id: str, at: float) -> Outcome:
        """Debit ``points`` for ``order_id`` (event ``redeem:<order_id>``), if the balance holds them.

        Statuses: ``redeemed``; ``duplicate`` (the same redemption again: still a
        success); ``insufficient``; ``conflict`` (the order already redeemed a
        different amount or for someone else, or its redemption was reversed).
        """
        if points <= 0:
            raise LoyaltyError("invalid_amount", "points must be a positive integer", 400)
        event_id = f"redeem:{order_id}"

        def tx(db: sqlite3.Connection) -> Outcome:
            row = db.execute(
                "SELECT identity, amount FROM ledger WHERE event_id = ? AND account = 'points'", (event_id,)
            ).fetchone()
            if row is not None:
                same = row[0] == identity and row[1] == -points and not self._exists(db, f"reversal:{event_id}")
                return Outcome("duplicate" if same else "conflict", info={"event_id": event_id})
            member = self._member(db, identity, at)
            entries = self._expire(db, member, at)
            if member.points < points:
                if entries:
                    self._save(db, member, at, "expiry")
                return Outcome("insufficient", entries, [member], {"points": member.points})
            entries.append(
                self._append(
                    db, member, event_id=event_id, account="points", kind="redeem", rule="redeem",
                    amount=-points, at=at, ref=order_id,
                )
            )
            self._save(db, member, at, "redeem")
            return Outcome("redeemed", entries, [member], {"event_id": event_id})

        return self._tx(tx)

    def reverse(
        self, event_id: str, at: float, *, reason: str | None = None, actor: str | None = None,
        identity: str | None = None,
    ) -> Outcome:
        """Undo an event with ``reversal`` rows (event ``reversal:<event_id>``), once.

        A points lot gives back only what has not expired; a debit (redemption,
        negative adjustment) is restored in full, after which lots past their
        time expire what they still hold (FIFO: the restored points are theirs).
        """
        return self._tx(lambda db: self._reverse(db, event_id, at, reason, actor, identity))

    def _reverse(
        self, db: sqlite3.Connection, event_id: str, at: float, reason: str | None, actor: str | None,
        identity: str | None,
    ) -> Outcome:
        rows = db.execute(
            "SELECT identity, account, kind, rule, amount FROM ledger WHERE event_id = ? ORDER BY seq", (event_id,)
        ).fetchall()
        if not rows or (identity is not None and rows[0][0] != identity):
            return Outcome("not_found", info={"event_id": event_id})
        if rows[0][2] in ("reversal", "expire"):
            return Outcome("not_reversible", info={"event_id": event_id, "kind": rows[0][2]})
        reversal_id = f"reversal:{event_id}"
        if self._exists(db, reversal_id):
            return Outcome("duplicate", info={"event_id": reversal_id})
        member = self._member(db, rows[0][0], at)
        entries: list[dict[str, Any]] = []
        restored_debit = False
        for _, account, kind, rule, amount in rows:
            back = -amount
            if account == "points" and amount > 0 and kind in ("earn", "adjust"):
                back = -ledger.reversible(self._points_rows(db, member.identity), event_id)
            elif account == "points" and amount < 0:
                restored_debit = True
            if back:
                entries.append(
                    self._append(
                        db, member, event_id=reversal_id, account=account, kind="reversal", rule=rule,
                        amount=back, at=at, ref=event_id, reason=reason, actor=actor,
                    )
                )
        if restored_debit:
            entries.extend(self._expire(db, member, at))
        self._save(db, member, at, "reversal")
        return Outcome("reversed" if entries else "nothing", entries, [member], {"event_id": reversal_id})

    def reverse_order(self, order_id: str, at: float) -> Outcome:
        """``commerce.order_refunded``: reverse the purchase credit and the redemption, once each."""

        def tx(db: sqlite3.Connection) -> Outcome:
            out = Outcome("nothing")
            for event_id in (f"order:{order_id}", f"redeem:{order_id}"):
                done = self._reverse(db, event_id, at, "refund", None, None)
                out.entries.extend(done.entries)
                out.members.extend(done.members)
                if done.status == "reversed":
                    out.status = "reversed"
            return out

        return self._tx(tx)

    def reverse_redemption(self, order_id: str, at: float) -> Outcome:
        return self.reverse(f"redeem:{order_id}", at, reason="redemption reversed")

    def adjust(
        self, identity: str, account: str, amount: int, reason: str, actor: str, at: float, key: str | None = None
    ) -> Outcome:
        """An admin's correction: one ``adjust`` row with the reason and the admin's identity.
        ``key`` makes it idempotent (event ``adjust:<key>``); a debit may not overdraw."""
        if account not in ("points", "growth"):
            raise LoyaltyError("invalid_field", "account must be points or growth", 400)
        event_id = f"adjust:{key or uuid.uuid4().hex}"

        def tx(db: sqlite3.Connection) -> Outcome:
            if self._exists(db, event_id):
                return Outcome("duplicate", info={"event_id": event_id})
            member = self._member(db, identity, at)
            entries = self._expire(db, member, at)
            balance = member.points if account == "points" else member.growth
            if balance + amount < 0:
                if entries:
                    self._save(db, member, at, "expiry")
                return Outcome("insufficient", entries, [member], {account: balance})
            entries.append(
                self._append(
                    db, member, event_id=event_id, account=account, kind="adjust", rule="admin", amount=amount,
                    at=at, reason=reason, actor=actor,
                )
            )
            self._save(db, member, at, "admin")
            return Outcome("adjusted", entries, [member], {"event_id": event_id})

        return self._tx(tx)

    # profile -----------------------------------------------------------------------------

    def set_profile(
        self, identity: str, at: float, *, birthday: str | None = None, timezone: str | None = None,
        force: bool = False,
    ) -> Outcome:
        """Set the birthday (``MM-DD``; once, unless ``force``: an admin) and/or time zone."""
        md = parse_birthday(birthday) if birthday is not None else None

        def tx(db: sqlite3.Connection) -> Outcome:
            member = self._member(db, identity, at)
            if md is not None and member.birthday not in (None, md) and not force:
                raise LoyaltyError("birthday_locked", "the birthday is already set; ask support to change it")
            if md is not None:
                member.birthday = md
            if timezone is not None:
                member.timezone = timezone
            db.execute(
                "UPDATE members SET birthday = ?, timezone = ?, updated_at = ? WHERE identity = ?",
                (member.birthday, member.timezone, at, identity),
            )
            return Outcome("updated", members=[member])

        return self._tx(tx)

    # housekeeping ------------------------------------------------------------------------

    def sweep(self, now: float) -> Outcome:
        """Expire due lots, give today's birthday gifts, apply due tier downgrades."""

        def tx(db: sqlite3.Connection) -> Outcome:
            out = Outcome("swept")
            touched: dict[str, Member] = {}
            counts = {"expired": 0, "birthdays": 0, "downgrades": 0}
            # 1. lots whose time came since the last sweep
            row = db.execute("SELECT value FROM meta WHERE key = 'expiry_watermark'").fetchone()
            mark = float(row[0]) if row else float("-inf")
            due = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT identity FROM ledger WHERE account = 'points' AND expires_at IS NOT NULL"
                    " AND expires_at > ? AND expires_at <= ?",
                    (mark, now),
                )
            ]
            for identity in due:
                member = self._member(db, identity, now)
                entries = self._expire(db, member, now)
                if entries:
                    self._save(db, member, now, "expiry")
                    out.entries.extend(entries)
                    touched[identity] = member
                    counts["expired"] += -sum(e["amount"] for e in entries)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('expiry_watermark', ?)", (repr(max(mark, now)),)
            )
            # 2. birthdays, per time zone
            for member, year in self._birthdays(db, now):
                points, growth = self.config.rule("birthday")
                if (points or growth) and not self._exists(db, f"birthday:{member.identity}:{year}"):
                    out.entries.extend(
                        self._credit(
                            db, member, event_id=f"birthday:{member.identity}:{year}", kind="earn", rule="birthday",
                            points=points, growth=growth, at=now,
                        )
                    )
                    self._save(db, member, now, "birthday")
                    touched[member.identity] = member
                    counts["birthdays"] += 1
            # 3. members below their tier's threshold: downgrades that are due
            below = [
                Member(*r)
                for r in db.execute(f"SELECT {MEMBER_COLUMNS} FROM members WHERE below_since IS NOT NULL")
            ]
            for member in below:
                level, since = self.policy.held(
                    member.tier_level, member.below_since, member.growth, now, self.tz(member)
                )
                if (level, since) != (member.tier_level, member.below_since):
                    counts["downgrades"] += int(self._set_tier(db, member, level, since, now, "downgrade"))
                    db.execute(
                        "UPDATE members SET tier_level = ?, below_since = ?, updated_at = ? WHERE identity = ?",
                        (member.tier_level, member.below_since, now, member.identity),
                    )
                    touched[member.identity] = member
            out.members = list(touched.values())
            out.info = counts
            return out

        return self._tx(tx)

    def _birthdays(self, db: sqlite3.Connection, now: float) -> list[tuple[Member, int]]:
        default = self.config.default_timezone
        zones = [
            r[0]
            for r in db.execute(
                "SELECT DISTINCT COALESCE(timezone, ?) FROM members WHERE birthday IS NOT NULL", (default,)
            )
        ]
        out = []
        for tz in zones:
            today: date = local(now, tz).date()
            days = birthdays_on(today)
            marks = ", ".join("?" for _ in days)
            for r in db.execute(
                f"SELECT {MEMBER_COLUMNS} FROM members WHERE birthday IN ({marks}) AND COALESCE(timezone, ?) = ?",
                (*days, default, tz),
            ):
                out.append((Member(*r), today.year))
        return out

    def reconcile_tiers(self, now: float) -> Outcome:
        """Bring every member's held tier in line with the (possibly changed) tier config."""

        def tx(db: sqlite3.Connection) -> Outcome:
            out = Outcome("reconciled")
            for r in db.execute(f"SELECT {MEMBER_COLUMNS} FROM members").fetchall():
                member = Member(*r)
                level, below = self.policy.after_growth(member.tier_level, member.below_since, member.growth, now)
                level = min(level, len(self.policy.tiers))
                if (level, below) != (member.tier_level, member.below_since):
                    self._set_tier(db, member, level, below, now, "config")
                    db.execute(
                        "UPDATE members SET tier_level = ?, below_since = ? WHERE identity = ?",
                        (member.tier_level, member.below_since, member.identity),
                    )
                    out.members.append(member)
            return out

        return self._tx(tx)

    # reads (also on the Reader) ------------------------------------------------------------

    def member(self, identity: str) -> Member | None:
        return self._load(self.db, identity)

    def verify(self, identity: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """((points, growth) cached, (points, growth) summed from the ledger)."""
        return verify(self.db, identity)


class Reader:
    """A read connection of its own (WAL: reads never wait for the writer)."""

    def __init__(self, path: Path | str) -> None:
        self.db = connect(path, readonly=True)

    def close(self) -> None:
        self.db.close()

    def member(self, identity: str) -> Member | None:
        return Store._load(self.db, identity)

    def history(self, identity: str, limit: int = 50, before: int | None = None) -> list[dict[str, Any]]:
        rows = self.db.execute(
            f"SELECT {COLUMNS} FROM ledger WHERE identity = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (identity, before if before is not None else 2**62, limit),
        ).fetchall()
        return [entry_view(r) for r in rows]

    def points_rows(self, identity: str) -> list[ledger.Row]:
        return Store._points_rows(self.db, identity)

    def tier_changes(self, identity: str, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT from_level, to_level, reason, at FROM tier_changes WHERE identity = ? ORDER BY id DESC LIMIT ?",
            (identity, limit),
        ).fetchall()
        return [dict(zip(("from_level", "to_level", "reason", "at"), r)) for r in rows]

    def verify(self, identity: str) -> tuple[tuple[int, int], tuple[int, int]]:
        return verify(self.db, identity)


def verify(db: sqlite3.Connection, identity: str) -> tuple[tuple[int, int], tuple[int, int]]:
    row = db.execute("SELECT points, growth FROM members WHERE identity = ?", (identity,)).fetchone()
    cached = (row[0], row[1]) if row else (0, 0)
    sums = dict(
        db.execute("SELECT account, SUM(amount) FROM ledger WHERE identity = ? GROUP BY account", (identity,)).fetchall()
    )
    return cached, (int(sums.get("points") or 0), int(sums.get("growth") or 0))
