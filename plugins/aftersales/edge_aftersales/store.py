"""Durable state in SQLite: known orders, tickets, their messages, FAQ entries.

One file, ``<data_dir>/plugins/aftersales/aftersales.sqlite3``, in WAL mode with
``synchronous=FULL``: a ticket the buyer was told about is on disk, and tickets
survive a restart or a crash. ``Database`` is synchronous and owns the
connection; ``Store`` runs it on one worker thread, in submission order, so the
node's event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import secrets
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from .faq import Faq

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    buyer TEXT NOT NULL,
    sku TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_buyer ON orders (buyer, created_at);
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    room TEXT NOT NULL,
    buyer TEXT NOT NULL,
    sku TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    priority INTEGER NOT NULL DEFAULT 0,
    tier TEXT,
    opened_in TEXT NOT NULL,
    created_at REAL NOT NULL,
    first_response_at REAL,
    first_response_seconds REAL,
    last_message_at REAL NOT NULL,
    last_author_role TEXT NOT NULL,
    closed_at REAL,
    closed_by TEXT,
    resolution TEXT
);
CREATE INDEX IF NOT EXISTS tickets_queue ON tickets (room, status, priority, created_at);
CREATE INDEX IF NOT EXISTS tickets_order ON tickets (order_id, status);
CREATE INDEX IF NOT EXISTS tickets_buyer ON tickets (buyer, status);
CREATE INDEX IF NOT EXISTS tickets_created ON tickets (created_at);
CREATE TABLE IF NOT EXISTS messages (
    message_id INTEGER PRIMARY KEY,
    ticket_id TEXT NOT NULL REFERENCES tickets (ticket_id),
    author TEXT NOT NULL,
    role TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('buyer', 'agent')),
    text TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_ticket ON messages (ticket_id, message_id);
CREATE TABLE IF NOT EXISTS faqs (
    faq_id INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    keywords TEXT NOT NULL,
    sku TEXT,
    clip_at_seconds REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS faqs_room ON faqs (room, faq_id);
"""


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    room: str
    buyer: str
    sku: str
    state: str
    created_at: float
    updated_at: float

    def view(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "room": self.room,
            "sku": self.sku,
            "state": self.state,
            "at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Ticket:
    ticket_id: str
    order_id: str
    room: str
    buyer: str
    sku: str
    reason: str
    status: str
    priority: bool
    tier: str | None
    opened_in: str
    created_at: float
    first_response_at: float | None
    first_response_seconds: float | None
    last_message_at: float
    last_author_role: str
    closed_at: float | None
    closed_by: str | None
    resolution: str | None

    @property
    def queue(self) -> str:
        return "priority" if self.priority else "normal"

    @property
    def awaiting(self) -> str:
        """Who is to speak next: ``agent`` (the buyer spoke last), ``buyer``, or ``none`` (closed)."""
        if self.status == "closed":
            return "none"
        return "buyer" if self.last_author_role == "agent" else "agent"

    def view(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "order_id": self.order_id,
            "room": self.room,
            "buyer": self.buyer,
            "sku": self.sku,
            "reason": self.reason,
            "status": self.status,
            "queue": self.queue,
            "priority": self.priority,
            "tier": self.tier,
            "awaiting": self.awaiting,
            "created_at": self.created_at,
            "first_response_at": self.first_response_at,
            "first_response_seconds": self.first_response_seconds,
            "last_message_at": self.last_message_at,
            "closed_at": self.closed_at,
            "closed_by": self.closed_by,
            "resolution": self.resolution,
        }


@dataclass(frozen=True, slots=True)
class Message:
    message_id: int
    ticket_id: str
    author: str
    role: str
    kind: str  # "buyer" | "agent"
    text: str
    at: float

    def view(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "message_id": self.message_id,
            "from": {"identity": self.author, "role": self.role},
            "kind": self.kind,
            "text": self.text,
            "at": self.at,
        }


def new_ticket_id() -> str:
    return "tk-" + secrets.token_hex(6)


TICKET_COLUMNS = ", ".join(Ticket.__dataclass_fields__)
QUEUE_ORDER = "priority DESC, created_at ASC, ticket_id ASC"


def _ticket(row: sqlite3.Row | None) -> Ticket | None:
    if row is None:
        return None
    values = dict(row)
    values["priority"] = bool(values["priority"])
    return Ticket(**values)


def _faq(row: sqlite3.Row) -> Faq:
    values = dict(row)
    values["keywords"] = tuple(json.loads(values["keywords"]))
    return Faq(**values)


class Database:
    """The SQLite connection and every query. Used from the store's thread only."""

    def __init__(self, path: Path | str) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def _tx(self) -> "_Transaction":
        return _Transaction(self.db)

    # orders ------------------------------------------------------------------------------

    def record_order(self, order_id: str, room: str, buyer: str, sku: str, state: str, at: float) -> None:
        """Learn an order from a commerce event (the first one fixes room, buyer and SKU)."""
        with self._tx():
            self.db.execute(
                "INSERT INTO orders (order_id, room, buyer, sku, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                (order_id, room, buyer, sku, state, at, at),
            )

    def order(self, order_id: str) -> Order | None:
        row = self.db.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else Order(**dict(row))

    def orders_of(self, buyer: str, limit: int = 50) -> list[Order]:
        rows = self.db.execute(
            "SELECT * FROM orders WHERE buyer = ? ORDER BY created_at DESC, order_id LIMIT ?", (buyer, limit)
        ).fetchall()
        return [Order(**dict(r)) for r in rows]

    # tickets -----------------------------------------------------------------------------

    def ticket(self, ticket_id: str) -> Ticket | None:
        row = self.db.execute(f"SELECT {TICKET_COLUMNS} FROM tickets WHERE ticket_id = ?", (ticket_id,)).fetchone()
        return _ticket(row)

    def open_ticket_for(self, order_id: str) -> Ticket | None:
        row = self.db.execute(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE order_id = ? AND status = 'open'", (order_id,)
        ).fetchone()
        return _ticket(row)

    def open_count_of(self, buyer: str) -> int:
        row = self.db.execute("SELECT COUNT(*) FROM tickets WHERE buyer = ? AND status = 'open'", (buyer,)).fetchone()
        return int(row[0])

    def create_ticket(
        self,
        order: Order,
        reason: str,
        text: str,
        *,
        priority: bool,
        tier: str | None,
        opened_in: str,
        role: str,
        at: float,
    ) -> tuple[Ticket, Message]:
        ticket_id = new_ticket_id()
        with self._tx():
            self.db.execute(
                "INSERT INTO tickets (ticket_id, order_id, room, buyer, sku, reason, status, priority, tier,"
                " opened_in, created_at, last_message_at, last_author_role)"
                " VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, ?)",
                (ticket_id, order.order_id, order.room, order.buyer, order.sku, reason, int(priority), tier,
                 opened_in, at, at, role),
            )
            message = self._add_message(ticket_id, order.buyer, role, "buyer", text, at)
        ticket = self.ticket(ticket_id)
        assert ticket is not None
        return ticket, message

    def _add_message(self, ticket_id: str, author: str, role: str, kind: str, text: str, at: float) -> Message:
        cur = self.db.execute(
            "INSERT INTO messages (ticket_id, author, role, kind, text, at) VALUES (?, ?, ?, ?, ?, ?)",
            (ticket_id, author, role, kind, text, at),
        )
        return Message(int(cur.lastrowid or 0), ticket_id, author, role, kind, text, at)

    def add_message(
        self, ticket_id: str, author: str, role: str, kind: str, text: str, at: float
    ) -> tuple[Ticket, Message, bool] | None:
        """Append to an open ticket; the third value is True for the first agent answer.
        None when the ticket is not open (closed meanwhile)."""
        with self._tx():
            ticket = self.ticket(ticket_id)
            if ticket is None or ticket.status != "open":
                return None
            first = kind == "agent" and ticket.first_response_at is None
            message = self._add_message(ticket_id, author, role, kind, text, at)
            if first:
                self.db.execute(
                    "UPDATE tickets SET first_response_at = ?, first_response_seconds = ? WHERE ticket_id = ?",
                    (at, max(0.0, at - ticket.created_at), ticket_id),
                )
            self.db.execute(
                "UPDATE tickets SET last_message_at = ?, last_author_role = ? WHERE ticket_id = ?",
                (at, "agent" if kind == "agent" else role, ticket_id),
            )
        after = self.ticket(ticket_id)
        assert after is not None
        return after, message, first

    def close_ticket(self, ticket_id: str, by: str, resolution: str, at: float) -> tuple[Ticket, bool] | None:
        """Close an open ticket; the resolution is the first response when none came before."""
        with self._tx():
            ticket = self.ticket(ticket_id)
            if ticket is None or ticket.status != "open":
                return None
            first = ticket.first_response_at is None
            if first:
                self.db.execute(
                    "UPDATE tickets SET first_response_at = ?, first_response_seconds = ? WHERE ticket_id = ?",
                    (at, max(0.0, at - ticket.created_at), ticket_id),
                )
            self.db.execute(
                "UPDATE tickets SET status = 'closed', closed_at = ?, closed_by = ?, resolution = ?,"
                " last_message_at = ?, last_author_role = 'agent' WHERE ticket_id = ?",
                (at, by, resolution, at, ticket_id),
            )
        after = self.ticket(ticket_id)
        assert after is not None
        return after, first

    def messages(self, ticket_id: str, limit: int = 500) -> list[Message]:
        rows = self.db.execute(
            "SELECT message_id, ticket_id, author, role, kind, text, at FROM messages"
            " WHERE ticket_id = ? ORDER BY message_id DESC LIMIT ?",
            (ticket_id, limit),
        ).fetchall()
        return [Message(**dict(r)) for r in reversed(rows)]

    def queue(self, room: str, limit: int = 200) -> list[Ticket]:
        """The room's open tickets: the priority queue first, then oldest first."""
        rows = self.db.execute(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE room = ? AND status = 'open'"
            f" ORDER BY {QUEUE_ORDER} LIMIT ?",
            (room, limit),
        ).fetchall()
        return [t for t in map(_ticket, rows) if t is not None]

    def tickets(self, room: str, status: str, limit: int) -> list[Ticket]:
        if status == "open":
            return self.queue(room, limit)
        where = "room = ?" if status == "all" else "room = ? AND status = 'closed'"
        rows = self.db.execute(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE {where}"
            " ORDER BY status DESC, priority DESC, created_at DESC LIMIT ?",
            (room, limit),
        ).fetchall()
        return [t for t in map(_ticket, rows) if t is not None]

    def tickets_of(self, buyer: str, limit: int = 50) -> list[Ticket]:
        rows = self.db.execute(
            f"SELECT {TICKET_COLUMNS} FROM tickets WHERE buyer = ? ORDER BY created_at DESC LIMIT ?",
            (buyer, limit),
        ).fetchall()
        return [t for t in map(_ticket, rows) if t is not None]

    def recent(self, n: int, room: str | None = None) -> list[tuple[str, float, float | None]]:
        """The last ``n`` tickets by creation: (ticket_id, created_at, first_response_seconds), oldest first."""
        where, args = ("WHERE room = ?", (room, n)) if room is not None else ("", (n,))
        rows = self.db.execute(
            f"SELECT ticket_id, created_at, first_response_seconds FROM tickets {where}"
            " ORDER BY created_at DESC, ticket_id DESC LIMIT ?",
            args,
        ).fetchall()
        return [(r[0], float(r[1]), r[2]) for r in reversed(rows)]

    def counts(self, room: str | None = None) -> dict[str, int]:
        where, args = ("WHERE room = ?", (room,)) if room is not None else ("", ())
        row = self.db.execute(
            "SELECT"
            " COALESCE(SUM(status = 'open'), 0),"
            " COALESCE(SUM(status = 'open' AND priority = 1), 0),"
            " COALESCE(SUM(status = 'open' AND first_response_at IS NULL), 0),"
            " COALESCE(SUM(status = 'closed'), 0)"
            f" FROM tickets {where}",
            args,
        ).fetchone()
        return {"open": row[0], "open_priority": row[1], "awaiting_first_response": row[2], "closed": row[3]}

    # FAQ -----------------------------------------------------------------------------------

    def faqs(self, room: str) -> list[Faq]:
        rows = self.db.execute("SELECT * FROM faqs WHERE room = ? ORDER BY faq_id", (room,)).fetchall()
        return [_faq(r) for r in rows]

    def faq(self, room: str, faq_id: int) -> Faq | None:
        row = self.db.execute("SELECT * FROM faqs WHERE room = ? AND faq_id = ?", (room, faq_id)).fetchone()
        return None if row is None else _faq(row)

    def create_faq(self, room: str, columns: dict[str, Any], limit: int, at: float) -> Faq | None:
        """The new entry, or None when the room has ``limit`` entries already."""
        with self._tx():
            count = self.db.execute("SELECT COUNT(*) FROM faqs WHERE room = ?", (room,)).fetchone()[0]
            if count >= limit:
                return None
            cur = self.db.execute(
                "INSERT INTO faqs (room, question, answer, keywords, sku, clip_at_seconds, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (room, columns["question"], columns["answer"], json.dumps(list(columns["keywords"])),
                 columns["sku"], columns["clip_at_seconds"], at, at),
            )
        faq = self.faq(room, int(cur.lastrowid or 0))
        assert faq is not None
        return faq

    def update_faq(self, room: str, faq_id: int, changes: dict[str, Any], at: float) -> Faq | None:
        if self.faq(room, faq_id) is None:
            return None
        values = {k: (json.dumps(list(v)) if k == "keywords" else v) for k, v in changes.items()}
        values["updated_at"] = at
        assignments = ", ".join(f"{k} = ?" for k in values)
        with self._tx():
            self.db.execute(
                f"UPDATE faqs SET {assignments} WHERE room = ? AND faq_id = ?", (*values.values(), room, faq_id)
            )
        return self.faq(room, faq_id)

    def delete_faq(self, room: str, faq_id: int) -> bool:
        with self._tx():
            cur = self.db.execute("DELETE FROM faqs WHERE room = ? AND faq_id = ?", (room, faq_id))
        return cur.rowcount > 0


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


class Store:
    """``Database`` on one worker thread.

    ``submit`` queues a job and returns at once (jobs run in submission order:
    an order learnt from an event is known to every message handled after it);
    ``await store.run(fn)`` waits for the job. A job whose waiter is cancelled
    (a hook's time budget) still runs to completion."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._db: Database | None = None

    def open(self, path: Path) -> "concurrent.futures.Future[None]":
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-aftersales-db")

        def opening() -> None:
            self._db = Database(path)

        return self._executor.submit(opening)

    @property
    def is_open(self) -> bool:
        return self._executor is not None

    def submit(self, fn: Callable[[Database], T]) -> "concurrent.futures.Future[T]":
        if self._executor is None:
            raise RuntimeError("the after-sales store is not open")

        def job() -> T:
            assert self._db is not None, "the database failed to open"
            return fn(self._db)

        return self._executor.submit(job)

    async def run(self, fn: Callable[[Database], T]) -> T:
        # shield: cancelling the waiter must not cancel a job still in the queue
        return await asyncio.shield(asyncio.wrap_future(self.submit(fn)))

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def closing() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.wrap_future(executor.submit(closing))
        executor.shutdown(wait=True)
