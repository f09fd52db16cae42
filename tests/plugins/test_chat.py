"""The chat plugin (docs/messages.md, "Live-room chat") against a real node.

Every test drives real WebSocket clients against an `edge serve` subprocess that
loaded the installed `edge-chat` distribution from the `edge` entry points.
Each test uses rooms and identities of its own on the shared node.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import websockets

from ..nodeproc import NodeProcess
from .chat_clients import BACKGROUND, ChatClient, Envelope, assert_next_is, close_all, join_all


def write_config(text: str) -> str:
    path = Path(tempfile.mkdtemp(prefix="edge-chat-conf-")) / "edge.toml"
    path.write_text(text)
    return str(path)


def is_text(text: str) -> Callable[[Envelope], bool]:
    return lambda e: e["data"].get("text") == text


# greeting and history ---------------------------------------------------------------


async def test_welcome_then_history_of_the_last_50_for_a_late_joiner(node: NodeProcess) -> None:
    room = "chat-history"
    host, cohost = await join_all(node, room, ("h", "host"), ("co", "cohost"))
    assert host.welcome["data"] == {"text": "Welcome!", "room": room, "viewers": 0}
    assert host.history["data"] == {"messages": []}
    sent = []
    for i in range(26):  # two staff senders: the per-connection floor is 50 / 10 s
        sent.append((await host.say(f"h{i}"))["data"])
        sent.append((await cohost.say(f"c{i}"))["data"])
    late = await ChatClient.join(node, room, "late", "viewer")
    assert late.welcome["data"] == {"text": "Welcome!", "room": room, "viewers": 1}
    history = late.history["data"]["messages"]
    assert [m["message_id"] for m in history] == [m["message_id"] for m in sent[-50:]]
    assert history[-1]["text"] == "c25" and history[0]["text"] == "h1"
    assert history[-1]["from"] == {"identity": "co", "role": "cohost"}
    assert isinstance(history[-1]["ts"], int)
    await close_all([host, cohost, late])


async def test_chat_message_fans_out_to_the_room_with_sender_and_node_id(node: NodeProcess) -> None:
    room = "chat-fanout"
    clients = await join_all(node, room, ("h", "host"), ("v1", "viewer"), ("v2", "viewer"))
    other = await ChatClient.join(node, "chat-fanout-other", "v3", "viewer")
    id = await clients[1].send("chat.send", {"text": "hello 👋"})
    seen = []
    for client in clients:
        envelope = await client.inbox.wait_for("chat.message")
        seen.append(envelope)
        assert envelope["room"] == room
        assert envelope["from"] == {"identity": "v1", "role": "viewer"}
        assert envelope["data"]["text"] == "hello 👋"
        assert set(envelope["data"]) == {"message_id", "text"}
        assert abs(envelope["ts"] - time.time() * 1000) < 10_000
    assert seen[0]["id"] == id  # the sender can match its own message
    assert len({e["data"]["message_id"] for e in seen}) == 1
    # another room hears nothing: its next chat envelope is its own
    await other.say("elsewhere")
    assert [e["type"] for e in other.inbox.seen if e["type"] not in BACKGROUND] == ["welcome", "chat.history", "chat.message"]
    await close_all([*clients, other])


# moderation -------------------------------------------------------------------------


async def test_delete_broadcasts_and_removes_from_history(node: NodeProcess) -> None:
    room = "chat-delete"
    mod, viewer = await join_all(node, room, ("m", "moderator"), ("v", "viewer"))
    keep = (await viewer.say("keep me"))["data"]["message_id"]
    gone = (await viewer.say("delete me"))["data"]["message_id"]
    await mod.send("chat.delete", {"message_id": gone})
    for client in (mod, viewer):
        deleted = await client.inbox.wait_for("chat.deleted")
        assert deleted["data"] == {"message_id": gone}
    late = await ChatClient.join(node, room, "late", "viewer")
    assert [m["message_id"] for m in late.history["data"]["messages"]] == [keep]
    again = await mod.send("chat.delete", {"message_id": gone})
    await mod.error("not_found", again)
    refused = await viewer.send("chat.delete", {"message_id": keep})
    await viewer.error("forbidden", refused)
    await mod.say("sentinel")
    await assert_next_is([viewer, late], "chat.message", is_text("sentinel"))
    await close_all([mod, viewer, late])


async def test_mute_refuses_chat_until_it_expires_and_unmute_lifts_it(node: NodeProcess) -> None:
    room = "chat-mute"
    mod, viewer, other = await join_all(node, room, ("m", "host"), ("v", "viewer"), ("o", "viewer"))
    await mod.send("mod.mute", {"identity": "v", "seconds": 1})
    muted = [await c.inbox.wait_for("mod.muted") for c in (mod, viewer, other)]
    until = muted[0]["data"]["until"]
    assert muted[0]["data"]["identity"] == "v" and 0 < until - time.time() * 1000 <= 1500
    refused = await viewer.send("chat.send", {"text": "let me talk"})
    await viewer.error("muted", refused)
    await other.say("sentinel")  # nobody saw the muted message
    await assert_next_is([mod, viewer], "chat.message", is_text("sentinel"))
    # No event marks the end of a mute: wait (bounded) until its announced end.
    await asyncio.sleep(max(0.0, until / 1000 - time.time()) + 0.15)
    await viewer.say("free again")

    await mod.send("mod.mute", {"identity": "v"})  # default 600 s
    long = await viewer.inbox.wait_for("mod.muted")
    assert 590_000 < long["data"]["until"] - time.time() * 1000 <= 600_000
    await viewer.error("muted", await viewer.send("chat.send", {"text": "still muted?"}))
    await mod.send("mod.unmute", {"identity": "v"})
    for client in (mod, viewer, other):
        assert (await client.inbox.wait_for("mod.unmuted"))["data"] == {"identity": "v"}
    await viewer.say("unmuted")
    await mod.error("invalid_data", await mod.send("mod.mute", {"identity": "v", "seconds": 0}))
    await close_all([mod, viewer, other])


async def test_keyword_filter_is_case_insensitive_and_replies_the_list(node: NodeProcess) -> None:
    room = "chat-keywords"
    mod, viewer = await join_all(node, room, ("m", "cohost"), ("v", "viewer"))
    id = await mod.send("mod.keywords", {"add": ["Scam", "spam"]})
    reply = await mod.inbox.next(skip=BACKGROUND)
    assert reply["type"] == "mod.keywords"
    assert reply["data"] == {"keywords": ["scam", "spam"], "reply_to": id}
    await viewer.error("blocked_keyword", await viewer.send("chat.send", {"text": "a big SCAM here"}))
    await mod.error("blocked_keyword", await mod.send("chat.send", {"text": "spam spam"}))
    await mod.send("mod.keywords", {"remove": ["SCAM"]})
    assert (await mod.inbox.next(skip=BACKGROUND))["data"]["keywords"] == ["spam"]
    await viewer.say("not a scam")
    await mod.error("invalid_data", await mod.send("mod.keywords", {"add": [""]}))
    await mod.error("invalid_data", await mod.send("mod.keywords", {"add": [3]}))
    # The keyword replies went to the moderator only; no refused text reached anyone.
    await mod.say("sentinel")
    await assert_next_is([viewer], "chat.message", is_text("sentinel"))
    assert [e["type"] for e in viewer.inbox.seen if e["type"] not in BACKGROUND] == [
        "welcome", "chat.history", "error", "chat.message", "chat.message",
    ]
    await close_all([mod, viewer])


async def test_slow_mode_applies_to_viewers_only(node: NodeProcess) -> None:
    room = "chat-slow"
    mod, viewer, other = await join_all(node, room, ("m", "moderator"), ("v", "viewer"), ("o", "viewer"))
    await mod.send("mod.slowmode", {"seconds": 1})
    for client in (mod, viewer, other):
        assert (await client.inbox.wait_for("mod.slowmode"))["data"] == {"seconds": 1}
    first = await viewer.say("one")
    await viewer.error("slow_mode", await viewer.send("chat.send", {"text": "two"}))
    await mod.say("staff 1")
    await mod.say("staff 2")  # staff are not slowed down
    await assert_next_is([other], "chat.message", is_text("one"))
    await assert_next_is([other], "chat.message", is_text("staff 1"))
    # No event marks the end of the interval: wait (bounded) until it has passed.
    await asyncio.sleep(max(0.0, first["ts"] / 1000 + 1.0 - time.time()) + 0.15)
    await viewer.say("three")
    await mod.error("invalid_data", await mod.send("mod.slowmode", {"seconds": 301}))
    await mod.send("mod.slowmode", {"seconds": 0})
    await viewer.inbox.wait_for("mod.slowmode", lambda e: e["data"]["seconds"] == 0)
    await viewer.say("four")
    await viewer.say("five")
    await close_all([mod, viewer, other])


async def test_viewers_may_not_moderate(node: NodeProcess) -> None:
    room = "chat-roles"
    viewer, other = await join_all(node, room, ("v", "viewer"), ("o", "viewer"))
    attempts = [
        ("mod.mute", {"identity": "o", "seconds": 60}),
        ("mod.unmute", {"identity": "o"}),
        ("mod.keywords", {"add": ["x"]}),
        ("mod.slowmode", {"seconds": 10}),
        ("chat.delete", {"message_id": "x"}),
    ]
    for type, data in attempts:
        await viewer.error("forbidden", await viewer.send(type, data))
    await other.say("still allowed")  # o was not muted, no slow mode, no keyword
    await assert_next_is([viewer], "chat.message", is_text("still allowed"))
    assert [e["type"] for e in other.inbox.seen if e["type"] not in BACKGROUND] == [
        "welcome", "chat.history", "chat.message",
    ]
    assert [e["type"] for e in viewer.inbox.seen if e["type"] not in BACKGROUND] == [
        "welcome", "chat.history", *["error"] * len(attempts), "chat.message",
    ]
    await close_all([viewer, other])


# limits -------------------------------------------------------------------------------


async def test_viewer_rate_limited_after_20_staff_not(node: NodeProcess) -> None:
    room = "chat-rate"
    viewer, host, observer = await join_all(node, room, ("v", "viewer"), ("h", "host"), ("o", "viewer"))
    ids = [await viewer.send("chat.send", {"text": f"v{i}"}) for i in range(21)]
    for i in range(20):
        assert (await viewer.inbox.next(skip=BACKGROUND))["data"]["text"] == f"v{i}"
    await viewer.error("rate_limited", ids[20])
    for i in range(25):
        await host.send("chat.send", {"text": f"h{i}"})
    got = [await observer.inbox.next(skip=BACKGROUND) for _ in range(45)]
    assert [e["data"]["text"] for e in got] == [f"v{i}" for i in range(20)] + [f"h{i}" for i in range(25)]
    await close_all([viewer, host, observer])


async def test_likes_are_aggregated_into_few_updates(node: NodeProcess) -> None:
    room = "chat-likes"
    observer, *likers = await join_all(
        node, room, ("o", "host"), ("l1", "viewer"), ("l2", "viewer"), ("l3", "viewer"), ("l4", "viewer")
    )
    start = time.monotonic()

    async def like(client: ChatClient) -> None:
        for i in range(25):
            await client.send("like", {"count": 2} if i % 5 == 0 else {})

    await asyncio.gather(*(like(c) for c in likers))
    expected = 4 * (20 * 1 + 5 * 2)
    updates = [await observer.inbox.wait_for("likes.updated")]
    while updates[-1]["data"]["total"] < expected:
        updates.append(await observer.inbox.wait_for("likes.updated"))
    elapsed = time.monotonic() - start
    totals = [u["data"]["total"] for u in updates]
    assert totals[-1] == expected
    assert sum(u["data"]["delta"] for u in updates) == expected
    assert totals == sorted(set(totals))
    assert len(updates) <= 2 * elapsed + 1
    assert len(updates) < 10  # 100 like messages
    gaps = [b["ts"] - a["ts"] for a, b in zip(updates, updates[1:])]
    assert all(gap >= 450 for gap in gaps), gaps
    await likers[0].error("invalid_data", await likers[0].send("like", {"count": 51}))
    await likers[0].error("invalid_data", await likers[0].send("like", {"count": True}))
    # Nothing changed: no further update (the tick runs about once a second).
    await observer.say("sentinel")
    await asyncio.sleep(1.5)
    assert [e for e in observer.inbox.pending() if e["type"] == "likes.updated"] == []
    await close_all([observer, *likers])


async def test_presence_counts_on_change_at_most_once_a_second(node: NodeProcess) -> None:
    room = "chat-presence"
    host = await ChatClient.join(node, room, "h", "host")
    first = await host.inbox.wait_for("presence")
    assert first["data"] == {"viewers": 0, "participants": 1}
    viewers = await join_all(node, room, ("v1", "viewer"), ("v2", "viewer"), ("v3", "viewer"))
    assert viewers[-1].welcome["data"]["viewers"] == 3
    full = await host.inbox.wait_for("presence", lambda e: e["data"]["viewers"] == 3)
    assert full["data"] == {"viewers": 3, "participants": 4}
    await viewers[0].close()
    left = await host.inbox.wait_for("presence", lambda e: e["data"]["viewers"] == 2)
    assert left["data"] == {"viewers": 2, "participants": 3}
    presence = [e for e in host.inbox.seen if e["type"] == "presence"]
    counts = [(e["data"]["viewers"], e["data"]["participants"]) for e in presence]
    assert all(a != b for a, b in zip(counts, counts[1:])), counts  # only on change
    gaps = [b["ts"] - a["ts"] for a, b in zip(presence, presence[1:])]
    assert all(gap >= 900 for gap in gaps), gaps
    await close_all([host, *viewers[1:]])


# bad input -------------------------------------------------------------------------------


async def test_bad_input_gets_an_error_and_nobody_sees_anything(node: NodeProcess) -> None:
    room = "chat-bad"
    bad, observer = await join_all(node, room, ("b", "viewer"), ("o", "host"))
    cases = [
        ("chat.send", {"text": "x" * 501}, "invalid_data"),
        ("chat.send", {"text": ""}, "invalid_data"),
        ("chat.send", {"text": 5}, "invalid_data"),
        ("chat.send", {}, "invalid_data"),
        ("chat.send", {"text": "hi", "color": "red"}, "invalid_data"),
        ("like", {"count": "many"}, "invalid_data"),
        ("like", {"count": 0}, "invalid_data"),
        ("chat.shout", {"text": "hi"}, "unknown_type"),
    ]
    for type, data, code in cases:
        await bad.error(code, await bad.send(type, data))
    raw = [
        ('{"type": "chat.send", "data": {"text": "tru', "invalid_json"),
        (json.dumps({"type": "chat.send", "data": "text"}), "invalid_envelope"),
        (json.dumps({"type": "chat.send", "room": "elsewhere", "data": {"text": "x"}}), "wrong_room"),
        (json.dumps({"type": "chat.send", "data": {"text": "y" * 5000}}), "too_large"),
        (b'{"type": "chat.send", "data": {"text": "binary"}}', "binary_not_supported"),
    ]
    for frame, code in raw:
        await bad.send_raw(frame)
        await bad.error(code)
    await bad.say("sentinel")
    await assert_next_is([observer], "chat.message", is_text("sentinel"))
    seen = [e["type"] for e in bad.inbox.seen if e["type"] not in BACKGROUND]
    assert seen == ["welcome", "chat.history", *["error"] * (len(cases) + len(raw)), "chat.message"]
    await close_all([bad, observer])


# configuration ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def configured_node() -> Iterator[NodeProcess]:
    config = write_config(
        """
[plugins.chat]
history_size = 3
viewer_rate = [3, 30]
staff_rate = [5, 30]
welcome_text = "Hi from the shop"
max_text = 10
mute_seconds = 1
"""
    )
    proc = NodeProcess(env={"EDGE_CONFIG": config}).start()
    yield proc
    proc.stop()


async def test_config_section_sets_history_rates_text_and_mute(configured_node: NodeProcess) -> None:
    node, room = configured_node, "configured"
    host, viewer = await join_all(node, room, ("h", "host"), ("v", "viewer"))
    assert host.welcome["data"]["text"] == "Hi from the shop"
    for i in range(3):
        await viewer.say(f"v{i}")
    await viewer.error("rate_limited", await viewer.send("chat.send", {"text": "v3"}))
    for i in range(5):
        await host.say(f"h{i}")
    await host.error("rate_limited", await host.send("chat.send", {"text": "h5"}))
    late = await ChatClient.join(node, room, "late", "viewer")
    assert [m["text"] for m in late.history["data"]["messages"]] == ["h2", "h3", "h4"]
    await late.error("invalid_data", await late.send("chat.send", {"text": "x" * 11}))
    await host.send("mod.mute", {"identity": "late"})  # the configured default: 1 s
    muted = await late.inbox.wait_for("mod.muted")
    assert 0 < muted["data"]["until"] - time.time() * 1000 <= 1500
    await late.error("muted", await late.send("chat.send", {"text": "hush"}))
    await asyncio.sleep(max(0.0, muted["data"]["until"] / 1000 - time.time()) + 0.15)
    await late.say("ok now")
    await close_all([host, viewer, late])


@pytest.mark.parametrize(
    "section, complaint",
    [
        ("history_size = -1", "history_size"),
        ("viewer_rate = [20]", "viewer_rate"),
        ("max_text = 2000", "max_text"),
        ("histroy_size = 5", "unknown keys histroy_size"),
    ],
)
def test_bad_config_stops_the_node(section: str, complaint: str) -> None:
    proc = NodeProcess(env={"EDGE_CONFIG": write_config(f"[plugins.chat]\n{section}\n")})
    try:
        with pytest.raises(RuntimeError, match="exited") as failed:
            proc.start()
        assert "[plugins.chat]" in str(failed.value) and complaint in str(failed.value)
    finally:
        proc.stop()


async def test_websocket_broadcasts_use_the_frame_once_fast_path(node) -> None:
    """Under `edge serve` (uvicorn, websockets-sansio) every WebSocket gets the fast path,
    and what it delivers is still well-formed for a standard client."""
    room = "fastpath"
    before = node.metrics().get("edge_ws_fastpath_connections_total", 0.0)
    url = node.url.replace("http://", "ws://") + f"/v1/rooms/{room}/ws?token="
    async with websockets.connect(url + node.token(room, "a", "viewer")) as a, websockets.connect(
        url + node.token(room, "b", "viewer")
    ) as b:
        await a.send(json.dumps({"type": "chat.send", "data": {"text": "over the fast path"}}))
        for ws in (a, b):
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["type"] == "chat.message":
                    assert msg["data"]["text"] == "over the fast path"
                    break
    assert node.metrics()["edge_ws_fastpath_connections_total"] >= before + 2
