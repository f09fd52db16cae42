"""parse_envelope and check_fields: every reason code, and nothing but EnvelopeError."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.messaging.envelope import (
    MAX_DEPTH,
    MAX_ENVELOPE_BYTES,
    MAX_ID_LENGTH,
    MAX_STRING_LENGTH,
    Envelope,
    EnvelopeError,
    MessageType,
    check_fields,
    error_envelope,
    now_ms,
    parse_envelope,
)

ROOM = "shop1"


def raw(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def code_of(data: bytes | str, room: str = ROOM) -> str:
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(data, room=room)
    assert isinstance(info.value, ValueError)  # EnvelopeError is a ValueError
    assert str(info.value) == info.value.reason
    return info.value.code


# accepted ------------------------------------------------------------------------------


def test_minimal_and_full_envelopes() -> None:
    before = now_ms()
    env = parse_envelope(b'{"type": "ping"}', room=ROOM)
    assert (env.type, env.room, env.data, env.id, env.sender) == ("ping", ROOM, {}, None, None)
    assert before <= env.ts <= now_ms()
    env = parse_envelope(
        raw(type="chat.send", room=ROOM, id="c-17", ts=1, data={"text": "hi", "n": [1, {"a": None}]}),
        room=ROOM,
    )
    assert (env.type, env.id, env.data) == ("chat.send", "c-17", {"text": "hi", "n": [1, {"a": None}]})
    assert env.ts != 1  # the node's clock, never the client's


def test_str_input_and_multi_part_type_names() -> None:
    env = parse_envelope('{"type": "mod.keywords.add_1", "data": {"t": "é"}}', room=ROOM)
    assert env.type == "mod.keywords.add_1" and env.data == {"t": "é"}


def test_to_dict_and_encode() -> None:
    env = Envelope(type="chat.message", room=ROOM, data={"text": "x"}, id="a", ts=5,
                   sender={"identity": "alice", "role": "viewer"})
    assert env.to_dict() == {
        "type": "chat.message", "room": ROOM, "ts": 5, "data": {"text": "x"}, "id": "a",
        "from": {"identity": "alice", "role": "viewer"},
    }
    assert orjson.loads(env.encode()) == env.to_dict()
    assert Envelope(type="x", room=ROOM).to_dict() == {"type": "x", "room": ROOM, "ts": 0, "data": {}}


def test_error_envelope() -> None:
    env = error_envelope(ROOM, "rate_limited", "slow down", reply_to="c-1", retry_after=2)
    assert (env.type, env.room) == ("error", ROOM)
    assert env.data == {"code": "rate_limited", "reason": "slow down", "retry_after": 2, "reply_to": "c-1"}
    assert "reply_to" not in error_envelope(ROOM, "x", "y").data


# too_large / invalid_json -------------------------------------------------------------------


def test_too_large() -> None:
    body = b'{"type": "a"}'
    at_limit = body + b" " * (MAX_ENVELOPE_BYTES - len(body))  # JSON allows trailing blanks
    assert parse_envelope(at_limit, room=ROOM).type == "a"
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(at_limit + b" ", room=ROOM)
    assert info.value.code == "too_large"
    assert info.value.reason == f"a message may be at most {MAX_ENVELOPE_BYTES} bytes, got {MAX_ENVELOPE_BYTES + 1}"
    big = raw(type="a", data={f"k{i}": "y" * 900 for i in range(5)})
    assert len(big) > MAX_ENVELOPE_BYTES
    assert code_of(big) == "too_large"
    # counted in bytes, not characters: 2000 three-byte characters are 6000 bytes
    assert code_of(json.dumps({"type": "a", "data": {"t": "€" * 2000}}, ensure_ascii=False)) == "too_large"
    # the size is checked before anything else, even for text that is not JSON
    assert code_of(b"{" * (MAX_ENVELOPE_BYTES + 1)) == "too_large"


@pytest.mark.parametrize(
    "text", [b"", b"{", b"not json", b'{"type": "a",}', b"\xff\xfe", b'{"type": NaN}', b"{'type': 'a'}"]
)
def test_invalid_json(text: bytes) -> None:
    assert code_of(text) == "invalid_json"


# invalid_envelope ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [b"[]", b'"ping"', b"1", b"null", b"true", b'[{"type": "ping"}]'])
def test_not_an_object(text: bytes) -> None:
    assert code_of(text) == "invalid_envelope"


@pytest.mark.parametrize("extra", ["from", "sender", "Type", "extra", ""])
def test_unknown_fields(extra: str) -> None:
    # "from" in particular: the node sets the sender, a client cannot claim one
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(orjson.dumps({"type": "a", extra: {"identity": "host"}}), room=ROOM)
    assert info.value.code == "invalid_envelope"
    assert "unknown envelope fields" in info.value.reason


@pytest.mark.parametrize(
    "kind",
    [None, 1, True, ["a"], {"a": 1}, "", "Chat", "chat.", ".chat", "chat..send", "1chat", "chat.1send",
     "chat send", "chat-send", "chät", "a" * (MAX_ID_LENGTH + 1)],
)
def test_bad_type_name(kind: Any) -> None:
    fields = {} if kind is None else {"type": kind}
    assert code_of(orjson.dumps(fields)) == "invalid_envelope"


def test_type_name_length_limit() -> None:
    assert parse_envelope(raw(type="a" * MAX_ID_LENGTH), room=ROOM).type == "a" * MAX_ID_LENGTH


def test_type_name_with_a_trailing_newline_is_refused() -> None:
    # TYPE_PATTERN ends in "$", which also matches before a final "\n"
    assert code_of(raw(type="chat.send\n")) == "invalid_envelope"


@pytest.mark.parametrize("msg_id", ["", "x" * (MAX_ID_LENGTH + 1), 17, 1.5, True, ["a"], {"a": "b"}])
def test_bad_id(msg_id: Any) -> None:
    assert code_of(raw(type="a", id=msg_id)) == "invalid_envelope"


def test_id_limits() -> None:
    assert parse_envelope(raw(type="a", id="x"), room=ROOM).id == "x"
    assert parse_envelope(raw(type="a", id="x" * MAX_ID_LENGTH), room=ROOM).id == "x" * MAX_ID_LENGTH
    assert parse_envelope(raw(type="a", id=None), room=ROOM).id is None


@pytest.mark.parametrize("data", [None, [], ["a"], "text", 1, True])
def test_non_object_data(data: Any) -> None:
    assert code_of(raw(type="a", data=data)) == "invalid_envelope"


def test_too_long_strings() -> None:
    ok = "x" * MAX_STRING_LENGTH
    parse_envelope(raw(type="a", data={"t": ok, "l": [ok], "d": {"k": ok}}), room=ROOM)
    long = ok + "x"
    for data in ({"t": long}, {"l": ["a", long]}, {"d": {"k": long}}):
        assert code_of(raw(type="a", data=data)) == "invalid_envelope", data
    # keys too
    parse_envelope(raw(type="a", data={"k" * MAX_ID_LENGTH: 1}), room=ROOM)
    assert code_of(raw(type="a", data={"k" * (MAX_ID_LENGTH + 1): 1})) == "invalid_envelope"
    assert code_of(raw(type="a", data={"d": {"k" * (MAX_ID_LENGTH + 1): 1}})) == "invalid_envelope"


def test_too_deep_nesting() -> None:
    # data is level 1; values may sit at most MAX_DEPTH levels down
    assert MAX_DEPTH == 4
    parse_envelope(raw(type="a", data={"a": {"b": {"c": "x"}}}), room=ROOM)
    parse_envelope(raw(type="a", data={"a": [[1, 2]]}), room=ROOM)
    parse_envelope(raw(type="a", data={"a": {"b": {"c": {}}}}), room=ROOM)
    for data in ({"a": {"b": {"c": {"d": "x"}}}}, {"a": [[[1]]]}, {"a": [{"b": [0]}]}):
        with pytest.raises(EnvelopeError) as info:
            parse_envelope(raw(type="a", data=data), room=ROOM)
        assert info.value.code == "invalid_envelope"
        assert "nested too deeply" in info.value.reason


# wrong_room --------------------------------------------------------------------------------------


@pytest.mark.parametrize("room", ["shop2", "", "SHOP1", None, 1, ["shop1"]])
def test_wrong_room(room: Any) -> None:
    assert code_of(raw(type="a", room=room)) == "wrong_room"


def test_matching_room_is_accepted() -> None:
    assert parse_envelope(raw(type="a", room=ROOM), room=ROOM).room == ROOM


# check_fields: invalid_data ---------------------------------------------------------------------

NOTE = MessageType(
    name="probe.note",
    fields={"text": str, "count": int, "price": (int, float), "flag": bool, "tags": list},
    required=frozenset({"text"}),
)


def data_code(message_type: MessageType, data: dict[str, Any]) -> str:
    with pytest.raises(EnvelopeError) as info:
        check_fields(message_type, data)
    return info.value.code


def test_check_fields_accepts_the_declared_shape() -> None:
    check_fields(NOTE, {"text": "x"})
    check_fields(NOTE, {"text": "x", "count": 3, "price": 1.5, "flag": False, "tags": ["a"]})
    check_fields(NOTE, {"text": "x", "price": 2})  # a tuple of types: any of them


def test_missing_required_field() -> None:
    with pytest.raises(EnvelopeError) as info:
        check_fields(NOTE, {"count": 1})
    assert (info.value.code, info.value.reason) == ("invalid_data", "probe.note needs text")


def test_unknown_field_when_fields_are_declared() -> None:
    with pytest.raises(EnvelopeError) as info:
        check_fields(NOTE, {"text": "x", "colour": "red"})
    assert (info.value.code, info.value.reason) == ("invalid_data", "probe.note has no field 'colour'")


@pytest.mark.parametrize(
    "data",
    [{"text": 1}, {"text": None}, {"text": ["x"]}, {"text": "x", "count": "3"}, {"text": "x", "count": 1.0},
     {"text": "x", "price": "1"}, {"text": "x", "flag": 1}, {"text": "x", "tags": {"a": 1}}],
)
def test_wrong_type(data: dict[str, Any]) -> None:
    assert data_code(NOTE, data) == "invalid_data"


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_an_int(value: bool) -> None:
    with pytest.raises(EnvelopeError) as info:
        check_fields(NOTE, {"text": "x", "count": value})
    assert (info.value.code, info.value.reason) == ("invalid_data", "probe.note.count has the wrong type")
    assert data_code(NOTE, {"text": "x", "price": value}) == "invalid_data"  # (int, float) either
    check_fields(NOTE, {"text": "x", "flag": value})  # where bool is declared it is fine


def test_no_declared_fields_means_any_data() -> None:
    free = MessageType(name="free.form")
    check_fields(free, {})
    check_fields(free, {"anything": [1, {"x": True}], "n": 2})
    required_only = MessageType(name="needs.one", required=frozenset({"id"}))
    check_fields(required_only, {"id": 1, "other": "x"})
    assert data_code(required_only, {"other": "x"}) == "invalid_data"


def test_message_type_rates() -> None:
    mt = MessageType(name="chat.send", rate={"viewer": (5, 10.0)}, default_rate=(20, 30.0))
    assert mt.rate_for("viewer") == (5, 10.0)
    assert mt.rate_for("host") == (20, 30.0)


# property: nothing but EnvelopeError escapes ---------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=70), children, max_size=5),
    max_leaves=30,
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["chat.send", "ping", "a.b_c", "Bad", ""]) | json_values,
        "room": st.sampled_from([ROOM, "other"]) | json_values,
        "id": st.text(max_size=80) | json_values,
        "ts": json_values,
        "data": st.dictionaries(st.text(max_size=70), json_values, max_size=6) | json_values,
        "extra": json_values,
    },
)


def _encode(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers over 64 bits
        return json.dumps(value).encode()


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        envelope_like.map(_encode),
        json_values.map(_encode),
        st.binary(max_size=200),
        st.text(max_size=200),
        envelope_like.map(lambda v: _encode(v).decode()),
    )
)
def test_parse_envelope_only_raises_envelope_error(data: bytes | str) -> None:
    try:
        env = parse_envelope(data, room=ROOM)
    except EnvelopeError as exc:
        assert exc.code in {"too_large", "invalid_json", "invalid_envelope", "wrong_room"}
        return
    assert isinstance(env, Envelope) and env.room == ROOM and isinstance(env.data, dict)
    assert env.type and (env.id is None or isinstance(env.id, str))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["text", "count", "price", "flag", "tags", "other"]), json_values, max_size=6)
)
def test_check_fields_only_raises_envelope_error(data: dict[str, Any]) -> None:
    try:
        check_fields(NOTE, data)
    except EnvelopeError as exc:
        assert exc.code == "invalid_data"
        return
    assert "text" in data and isinstance(data["text"], str)
