import os
import time
from pathlib import Path

import pytest

from edge.auth import TokenAuthority, describe_secret, load_or_create_secret
from edge.errors import AuthError, ForbiddenError
from edge.observability.logging import _redact

SECRET = "s" * 40


def test_round_trip_and_roles() -> None:
    authority = TokenAuthority(SECRET)
    ident = authority.verify(authority.issue(room="r1", identity="alice", role="host", region="mx"))
    assert (ident.identity, ident.role, ident.room, ident.region) == ("alice", "host", "r1", "mx")
    ident.require("r1", frozenset({"host"}))
    with pytest.raises(ForbiddenError, match="token is for room 'r1'"):
        ident.require("r2", frozenset({"host"}))
    with pytest.raises(ForbiddenError, match="role 'host' may not"):
        ident.require("r1", frozenset({"admin"}))


def test_admin_may_do_anything_anywhere() -> None:
    authority = TokenAuthority(SECRET)
    admin = authority.verify(authority.issue(room="*", identity="ops", role="admin"))
    admin.require("any-room", frozenset({"host"}))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda a: a.issue(room="r", identity="x", role="viewer", now=time.time() - 1000, ttl_seconds=10), "expired"),
        (lambda a: TokenAuthority("o" * 40).issue(room="r", identity="x", role="viewer"), "invalid token"),
        (lambda a: "not.a.jwt", "invalid token"),
        (lambda a: TokenAuthority(SECRET, issuer="other").issue(room="r", identity="x", role="viewer"), "invalid token"),
    ],
)
def test_bad_tokens(make, message: str) -> None:
    authority = TokenAuthority(SECRET)
    with pytest.raises(AuthError, match=message):
        authority.verify(make(authority))


def test_authorization_header_forms() -> None:
    authority = TokenAuthority(SECRET)
    token = authority.issue(room="r", identity="x", role="viewer")
    assert authority.from_authorization(f"Bearer {token}").identity == "x"
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(AuthError):
            authority.from_authorization(header)


def test_unknown_role_is_refused_at_issue() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        TokenAuthority(SECRET).issue(room="r", identity="x", role="god")


def test_secret_is_generated_once_with_private_mode(tmp_path: Path) -> None:
    first = load_or_create_secret("", tmp_path)
    assert load_or_create_secret("", tmp_path) == first
    assert os.stat(tmp_path / "secret").st_mode & 0o777 == 0o600
    assert load_or_create_secret("configured-secret-value", tmp_path) == "configured-secret-value"


def test_secret_never_shown() -> None:
    authority = TokenAuthority(SECRET)
    assert SECRET not in repr(authority)
    assert SECRET not in describe_secret(SECRET)
    event = _redact(None, "info", {"event": "x", "auth_secret": SECRET, "token": "abc", "room": "r"})
    assert event["auth_secret"] == "[redacted]" and event["token"] == "[redacted]" and event["room"] == "r"
