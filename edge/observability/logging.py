"""structlog set-up: JSON lines when stdout is not a TTY, console otherwise.

Anything logged under a key that looks like a credential is redacted, so a
token or the node secret never reaches a log line by accident.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, MutableMapping

import structlog

REDACTED_KEYS = ("secret", "token", "authorization", "password")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in REDACTED_KEYS):
            event[key] = "[redacted]"
    return event


def configure_logging(fmt: str = "auto", level: str = "info", *, to_stderr: bool = False) -> None:
    stream = sys.stderr if to_stderr else sys.stdout  # for the TTY check only
    json_output = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # The stream is looked up whenever a logger is made, never kept: tests
        # and tools swap sys.stdout/sys.stderr.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr if to_stderr else sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiortc, aioice, uvicorn) log through stdlib logging: keep them quiet.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
