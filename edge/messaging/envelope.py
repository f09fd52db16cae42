"""Message envelopes: the one JSON shape every client message and reply has.

    {"type": "chat.send", "room": "shop1", "id": "c-17", "ts": 1732240000123, "data": {...}}

Validated where a message enters the node (size cap, shape, string lengths,
known type, role allowed); a bad message gets an ``error`` envelope back with a
reason code, and nothing else happens.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

MAX_ENVELOPE_BYTES = 4096
MAX_ID_LENGTH = 64
MAX_STRING_LENGTH = 1000
MAX_DEPTH = 4
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")

ALL_ROLES = frozenset({"viewer", "host", "cohost", "moderator", "service", "admin"})
STAFF_ROLES = frozenset({"host", "cohost", "moderator", "admin"})


class EnvelopeError(ValueError):
    """A message the node refuses; ``code`` is the reason code sent back."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class Envelope:
    type: str
    room: str
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    ts: int = 0  # milliseconds since the epoch, set by the node on the way in
    sender: dict[str, str] | None = None  # {"identity", "role"}: set by the node, never trusted from clients

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "room": self.room, "ts": self.ts, "data": self.data}
        if self.id is not None:
            out["id"] = self.id
        if self.sender is not None:
            out["from"] = self.sender
        return out

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())


@dataclass(frozen=True, slots=True)
class MessageType:
    """A message type clients may send, declared by a plugin (``edge_message_types``).

    ``fields`` maps a data key to the Python type(s) it must have; keys listed in
    ``required`` must be present. ``rate`` is (messages, seconds) per participant,
    per role: a role missing there uses ``default_rate``. ``broadcast`` says whether
    an accepted message goes to the whole room after the hook chain (a hook may
    change that per message).
    """

    name: str
    roles: frozenset[str] = ALL_ROLES
    fields: Mapping[str, type | tuple[type, ...]] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    rate: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    default_rate: tuple[int, float] = (20, 30.0)
    broadcast: bool = False
    plugin: str = ""

    def rate_for(self, role: str) -> tuple[int, float]:
        return self.rate.get(role, self.default_rate)


def now_ms() -> int:
    return int(time.time() * 1000)


def _check_value(value: Any, depth: int, where: str) -> None:
    if depth > MAX_DEPTH:
        raise EnvelopeError("invalid_envelope", f"{where} is nested too deeply")
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise EnvelopeError("invalid_envelope", f"{where} is longer than {MAX_STRING_LENGTH} characters")
    elif isinstance(value, dict):
        for k, v in value.items():
            if len(k) > MAX_ID_LENGTH:
                raise EnvelopeError("invalid_envelope", f"a key in {where} is too long")
            _check_value(v, depth + 1, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_value(v, depth + 1, f"{where}[{i}]")


def parse_envelope(raw: bytes | str, *, room: str) -> Envelope:
    """Parse and validate the generic shape. Type/role checks happen in the router."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_ENVELOPE_BYTES:
        raise EnvelopeError("too_large", f"a message may be at most {MAX_ENVELOPE_BYTES} bytes, got {size}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("invalid_json", f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise EnvelopeError("invalid_envelope", "a message must be a JSON object")
    unknown = set(obj) - {"type", "room", "id", "ts", "data"}
    if unknown:
        raise EnvelopeError("invalid_envelope", f"unknown envelope fields: {', '.join(sorted(unknown))}")
    kind = obj.get("type")
    if not isinstance(kind, str) or not TYPE_PATTERN.fullmatch(kind) or len(kind) > MAX_ID_LENGTH:
        raise EnvelopeError("invalid_envelope", "'type' must be a dotted lower-case name")
    target = obj.get("room", room)
    if target != room:
        raise EnvelopeError("wrong_room", f"this connection is for room {room!r}")
    msg_id = obj.get("id")
    if msg_id is not None and (not isinstance(msg_id, str) or not 0 < len(msg_id) <= MAX_ID_LENGTH):
        raise EnvelopeError("invalid_envelope", f"'id' must be a string of 1-{MAX_ID_LENGTH} characters")
    data = obj.get("data", {})
    if not isinstance(data, dict):
        raise EnvelopeError("invalid_envelope", "'data' must be an object")
    _check_value(data, 1, "data")
    return Envelope(type=kind, room=room, data=data, id=msg_id, ts=now_ms())


def check_fields(message_type: MessageType, data: Mapping[str, Any]) -> None:
    missing = message_type.required - set(data)
    if missing:
        raise EnvelopeError("invalid_data", f"{message_type.name} needs {', '.join(sorted(missing))}")
    for key, value in data.items():
        expected = message_type.fields.get(key)
        if expected is None:
            if message_type.fields:
                raise EnvelopeError("invalid_data", f"{message_type.name} has no field {key!r}")
            continue
        # bool is an int in Python: don't let true pass as a quantity.
        if isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,)):
            raise EnvelopeError("invalid_data", f"{message_type.name}.{key} has the wrong type")
        if not isinstance(value, expected):
            raise EnvelopeError("invalid_data", f"{message_type.name}.{key} has the wrong type")


def error_envelope(room: str, code: str, reason: str, *, reply_to: str | None = None, **extra: Any) -> Envelope:
    data: dict[str, Any] = {"code": code, "reason": reason, **extra}
    if reply_to is not None:
        data["reply_to"] = reply_to
    return Envelope(type="error", room=room, data=data, ts=now_ms())
