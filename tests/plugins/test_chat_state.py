"""The chat plugin's config parsing and room bookkeeping, without a node."""

from __future__ import annotations

import pytest
from edge_chat.config import ChatConfig, parse_config
from edge_chat.state import LikeCounter, Presence, RoomState


def test_config_defaults_and_overrides() -> None:
    assert parse_config({}) == ChatConfig(
        history_size=50, viewer_rate=(20, 30.0), staff_rate=(60, 30.0), welcome_text="Welcome!",
        max_text=500, mute_seconds=600,
    )
    config = parse_config({"history_size": 0, "viewer_rate": [5, 10], "welcome_text": "hi", "max_text": 1000})
    assert (config.history_size, config.viewer_rate, config.welcome_text, config.max_text) == (0, (5, 10.0), "hi", 1000)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"history_size": 1001}, "history_size must be an integer from 0 to 1000, got 1001"),
        ({"history_size": True}, "history_size must be an integer from 0 to 1000, got True"),
        ({"max_text": 0}, "max_text must be an integer from 1 to 1000, got 0"),
        ({"viewer_rate": 20}, "viewer_rate must be [messages, seconds], got 20"),
        ({"staff_rate": [0, 30]}, "staff_rate: messages must be a positive integer, got 0"),
        ({"staff_rate": [10, 0]}, "staff_rate: seconds must be a positive number, got 0"),
        ({"welcome_text": 5}, "welcome_text must be a string of at most 1000 characters"),
        ({"mute_seconds": 0}, "mute_seconds must be an integer from 1 to 604800, got 0"),
        ({"colour": "red"}, "unknown keys colour"),
    ],
)
def test_bad_config_values_are_refused_by_name(section: dict, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_config(section)
    assert str(refused.value).startswith(message)


def test_likes_coalesce_to_two_updates_a_second_only_when_changed() -> None:
    likes = LikeCounter()
    likes.add(1)
    assert likes.take(10.0) == {"total": 1, "delta": 1}
    likes.add(3)
    likes.add(2)
    assert likes.take(10.2) is None  # within half a second of the last
    assert likes.take(10.5) == {"total": 6, "delta": 5}
    assert likes.take(11.5) is None  # nothing new


def test_presence_goes_out_on_change_at_most_once_a_second() -> None:
    presence = Presence()
    assert presence.take(0, 1, 5.0) == {"viewers": 0, "participants": 1}
    assert presence.take(1, 2, 5.5) is None
    assert presence.take(1, 2, 6.0) == {"viewers": 1, "participants": 2}
    assert presence.take(1, 2, 9.0) is None


def test_history_ring_delete_mutes_and_slow_mode() -> None:
    room = RoomState(history_size=2)
    ids = [room.post(f"m{i}", {"identity": "v", "role": "viewer"}, 1000 + i, 100.0 + i) for i in range(3)]
    assert len(set(ids)) == 3
    assert [m["text"] for m in room.recent()] == ["m1", "m2"]
    assert room.delete(ids[1]) and not room.delete(ids[1]) and not room.delete(ids[0])
    room.mute("v", until=200.0)
    assert room.muted_for("v", 150.0) == 50.0 and room.muted_for("v", 200.0) == 0.0
    assert room.slowmode_wait("v", 102.5) == 0.0
    room.slowmode = 5
    assert room.slowmode_wait("v", 104.0) == 3.0 and room.slowmode_wait("w", 104.0) == 0.0
    room.keywords = {"scam"}
    assert room.blocked_keyword("A SCAM!") == "scam" and room.blocked_keyword("fine") is None
