"""What each client message does to a room's state, and how it answers.

A handler gets the room's state, the config, the ``MessageContext`` and the
wall-clock time. It rejects (``message.reject``), replies, or transforms the
envelope in place; the router then broadcasts it when ``message.broadcast``.
No I/O here.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from edge.plugins.api import MessageContext

from .config import ChatConfig
from .state import MAX_KEYWORDS, SLOWMODE_MAX_SECONDS, RoomState

MAX_LIKES = 50
MAX_IDENTITY = 64
MAX_KEYWORD = 100
MAX_MUTE_SECONDS = 7 * 86400

Handler = Callable[[RoomState, ChatConfig, MessageContext, float], None]


def _transform(message: MessageContext, type: str, data: dict[str, Any]) -> None:
    message.envelope.type = type
    message.envelope.data = data


def chat_send(room: RoomState, config: ChatConfig, message: MessageContext, now: float) -> None:
    text = message.envelope.data["text"]
    if not 1 <= len(text) <= config.max_text:
        return message.reject("invalid_data", f"chat.send text must be 1-{config.max_text} characters")
    sender = message.sender
    muted = room.muted_for(sender.identity, now)
    if muted:
        return message.reject("muted", f"you are muted for {math.ceil(muted)} more s")
    if room.blocked_keyword(text) is not None:
        return message.reject("blocked_keyword", "the message contains a blocked word")
    if sender.role == "viewer":
        wait = room.slowmode_wait(sender.identity, now)
        if wait:
            return message.reject(
                "slow_mode", f"slow mode: one message per {room.slowmode} s; retry in {wait:.1f} s"
            )
    message_id = room.post(text, message.envelope.sender, message.envelope.ts, now)
    _transform(message, "chat.message", {"message_id": message_id, "text": text})


def like(room: RoomState, config: ChatConfig, message: MessageContext, now: float) -> None:
    count = message.envelope.data.get("count", 1)
    if not 1 <= count <= MAX_LIKES:
        return message.reject("invalid_data", f"like count must be 1-{MAX_LIKES}")
    room.likes.add(count)
    message.broadcast = False  # aggregated into likes.updated


def chat_delete(room: RoomState, config: ChatConfig, message: MessageContext, now: float) -> None:
    message_id = message.envelope.data["message_id"]
    if not room.delete(message_id):
        return message.reject("not_found", f"no message {message_id!r} in this room's history")
    _transform(message, "chat.deleted", {"message_id": message_id})


def _identity(message: MessageContext) -> str | None:
    identity = message.envelope.data["identity"]
    if not 1 <= len(identity) <= MAX_IDENTITY:
        message.reject("invalid_data", f"identity must be 1-{MAX_IDENTITY} characters")
        return None
    return identity


def mod_mute(room: RoomState, config: ChatConfig, message: MessageContext, now: float) -> None:
    identity = _identity(message)
    if identity is None:
        return
    seconds = message.envelope.data.get("seconds", config.mute_seconds)
    if not 1 <= seconds <= MAX_MUTE_SECONDS:
        return message.reject("invalid_data", f"mute seconds must be 1-{MAX_MUTE_SECONDS}")
    until = now + seconds
    room.mute(identity, until)
    _transform(message, "mod.muted", {"identity": identity, "until": int(until * 1000)})


def mod_unmute(room: RoomState, config: ChatConfig, message: MessageContext, now: float) -> None:
    identity = _identity(message)
    if identity is None:
        return
    room.unmute(identity)
    _transform(message, "mod.unmuted", {"identity": identity})


def _words(message: MessageContext, key: str) -> set[str] | None:
    words = message.envelope.data.get(key, [])
    if not all(isinstance(w, str) and 1 <= len(w) <= MAX_KEYWORD for w in words):
        message.reject("invalid_data", f"mod.keywords {key} must be strings of 1-{MAX_KEYWORD} characters")
        return None
    return {w.casefold() for w in words}


def mod_keywords(room: RoomState, config: ChatConfig, message: MessageContext, now: float) -> None:
    add, remove = _words(message, "add"), _words(message, "remove")
    if add is None or remove is None:
        return
    keywords = (room.keywords | add) - remove
    if len(keywords) > MAX_KEYWORDS:
        return message.reject("invalid_data", f"a room may have at most {MAX_KEYWORDS} keywords")
    room.keywords = keywords
    message.broadcast = False
    message.reply("mod.keywords", {"keywords": sorted(keywords)})


def mod_slowmode(room: RoomState, config: ChatConfig, message: MessageContext, now: float) -> None:
    seconds = message.envelope.data["seconds"]
    if not 0 <= seconds <= SLOWMODE_MAX_SECONDS:
        return message.reject("invalid_data", f"slow mode seconds must be 0-{SLOWMODE_MAX_SECONDS}")
    room.slowmode = seconds
    _transform(message, "mod.slowmode", {"seconds": seconds})


HANDLERS: dict[str, Handler] = {
    "chat.send": chat_send,
    "like": like,
    "chat.delete": chat_delete,
    "mod.mute": mod_mute,
    "mod.unmute": mod_unmute,
    "mod.keywords": mod_keywords,
    "mod.slowmode": mod_slowmode,
}
