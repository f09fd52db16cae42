"""Fixtures of the browser tests: a static page server and headless Chromium.

Chromium is Debian's (/usr/bin/chromium), driven by Playwright for Python with
``executable_path``: never ``playwright install``. The pages load whip-whep's ES
modules from tests/e2e/node_modules (``npm ci --prefix tests/e2e``).

A missing prerequisite FAILS the test (it is never skipped): a browser test that
quietly does not run is worse than a red one.
"""

from __future__ import annotations

from typing import AsyncIterator, Iterator

import pytest

from .chromium import BrowserPages, launch, missing_prerequisites, prerequisites_message
from .static_server import StaticServer


def require_prerequisites() -> None:
    """pytest.fail (never skip) when Chromium or whip-whep is missing."""
    missing = missing_prerequisites()
    if missing:
        pytest.fail(prerequisites_message(missing), pytrace=False)


@pytest.fixture(scope="session")
def static_server() -> Iterator[StaticServer]:
    """tests/e2e/pages + /js/whip.js, /js/whep.js on http://127.0.0.1:<free port>."""
    require_prerequisites()
    server = StaticServer().start()
    yield server
    server.stop()


@pytest.fixture
async def chromium(static_server: StaticServer) -> AsyncIterator[BrowserPages]:
    """Headless Debian Chromium (fake camera + mic, loopback ICE allowed)."""
    require_prerequisites()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await launch(p)
        try:
            yield BrowserPages(browser, static_server.url)
        finally:
            await browser.close()

