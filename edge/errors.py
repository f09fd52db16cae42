"""Named errors for misuse of the node's objects (malformed wire input raises ValueError)."""


class EdgeError(Exception):
    """Base class of the node's own errors."""


class ConfigError(EdgeError):
    """The configuration is invalid; the message names the setting."""


class AuthError(EdgeError):
    """A token is missing, malformed, expired or signed with another secret."""


class ForbiddenError(EdgeError):
    """A valid token whose role or room does not allow the request."""


class NegotiationError(EdgeError):
    """An SDP offer cannot be answered (malformed, or no common codec)."""

    def __init__(self, message: str, *, status: int = 400, supported: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.supported = supported or []


class InvalidStateError(EdgeError):
    """An operation on a closed or not-yet-ready object."""


class LimitExceededError(EdgeError):
    """A configured capacity or rate limit would be exceeded."""
