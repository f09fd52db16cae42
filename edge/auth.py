"""JWT tokens: who a participant is, which room, which role.

Tokens are HS256, signed with the node secret. Claims: ``sub`` (identity),
``room`` (a room name, or ``*`` for every room), ``role``, ``iss``, ``iat``, ``exp``.
The secret is never logged; ``describe_secret`` gives a fingerprint for logs.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt

from .errors import AuthError, ForbiddenError

ROLES = ("viewer", "host", "cohost", "moderator", "service", "admin")
PUBLISH_ROLES = frozenset({"host", "cohost"})
ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Identity:
    identity: str
    role: str
    room: str  # "*" = any room
    region: str = ""

    def may_enter(self, room: str) -> bool:
        return self.room == "*" or self.room == room

    def require(self, room: str | None, roles: frozenset[str] | tuple[str, ...]) -> None:
        """Raise ForbiddenError unless this identity has one of ``roles`` for ``room``."""
        if self.role not in roles and self.role != "admin":
            raise ForbiddenError(f"role {self.role!r} may not do this (needs one of {sorted(roles)})")
        if room is not None and not self.may_enter(room):
            raise ForbiddenError(f"token is for room {self.room!r}, not {room!r}")


def load_or_create_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, else the one persisted in data_dir, else a new one."""
    if configured:
        return configured
    path = data_dir / "secret"
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # Create with 0600 from the start so the secret is never world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def describe_secret(secret: str) -> str:
    """A short fingerprint safe to log."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


class TokenAuthority:
    def __init__(self, secret: str, issuer: str = "edge") -> None:
        if len(secret) < 16:
            raise AuthError("the node secret must be at least 16 characters")
        self._secret = secret
        self.issuer = issuer

    def __repr__(self) -> str:  # never show the secret
        return f"TokenAuthority(issuer={self.issuer!r}, secret={describe_secret(self._secret)})"

    def issue(
        self,
        *,
        room: str,
        identity: str,
        role: str,
        ttl_seconds: int = 86400,
        region: str = "",
        now: float | None = None,
    ) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if not identity:
            raise ValueError("identity must not be empty")
        issued = int(time.time() if now is None else now)
        claims = {
            "sub": identity,
            "room": room,
            "role": role,
            "iss": self.issuer,
            "iat": issued,
            "exp": issued + int(ttl_seconds),
        }
        if region:
            claims["region"] = region
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Identity:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                options={"require": ["sub", "role", "room", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        role = claims["role"]
        if role not in ROLES:
            raise AuthError(f"invalid token: unknown role {role!r}")
        if not isinstance(claims["sub"], str) or not isinstance(claims["room"], str):
            raise AuthError("invalid token: sub and room must be strings")
        return Identity(
            identity=claims["sub"], role=role, room=claims["room"], region=str(claims.get("region", ""))
        )

    def from_authorization(self, header: str | None) -> Identity:
        if not header:
            raise AuthError("missing Authorization: Bearer token")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization must be 'Bearer <token>'")
        return self.verify(token.strip())
