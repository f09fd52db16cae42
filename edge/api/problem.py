"""RFC 9457 problem+json responses: every refusal says what was wrong."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

PROBLEM_TYPE = "urn:edge:problem:"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> Response:
        body = {
            "type": PROBLEM_TYPE + self.code,
            "title": self.code.replace("_", " "),
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }
        return Response(
            orjson.dumps(body),
            status_code=self.status,
            media_type="application/problem+json",
            headers=self.headers,
        )


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(data), status_code=status, media_type="application/json", headers=headers
    )
