"""The native data plane tests fail, never skip, when the extension is not built."""

from __future__ import annotations

import importlib

import pytest


def native_import_error() -> str | None:
    try:
        importlib.import_module("edge.media.native_plane")
    except ImportError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session", autouse=True)
def _native_built() -> None:
    error = native_import_error()
    if error is not None:
        pytest.fail(
            "the native data plane (edge.media._native) is not built, so it cannot be "
            f"tested: {error}",
            pytrace=False,
        )
