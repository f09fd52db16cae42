"""Where the browser tests find Chromium and how they launch it (shared with bench/)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlencode

from .static_server import WHIP_WHEP_DIR

CHROMIUM = os.environ.get("EDGE_E2E_CHROMIUM", "/usr/bin/chromium")

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    # The node gathers ICE candidates on 127.0.0.1 only; Chromium skips loopback
    # interfaces unless told otherwise.
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

SETUP_HINT = (
    "run the README's browser test command, which installs them: "
    "`apt-get install -y chromium` (Debian's Chromium at /usr/bin/chromium; never "
    "`playwright install`) and `npm ci --prefix tests/e2e` (whip-whep into "
    "tests/e2e/node_modules)"
)


def missing_prerequisites() -> list[str]:
    """What the browser tests need and cannot find (empty: all there)."""
    missing = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium executable {CHROMIUM}")
    for name in ("whip.js", "whep.js"):
        if not (WHIP_WHEP_DIR / name).is_file():
            missing.append(str(WHIP_WHEP_DIR / name))
    return missing


def prerequisites_message(missing: list[str]) -> str:
    return "browser test prerequisites missing: " + ", ".join(missing) + "; " + SETUP_HINT


async def launch(playwright):  # type: ignore[no-untyped-def]
    """Headless Debian Chromium with fake camera + mic and loopback ICE allowed."""
    return await playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )


class BrowserPages:
    """A launched Chromium plus the pages a test opened, with their console logs."""

    def __init__(self, browser: Any, static_url: str) -> None:
        self.browser = browser
        self.static_url = static_url
        self.logs: list[str] = []
        self.pages: dict[str, Any] = {}

    async def open(self, name: str, page: str, **query: str) -> Any:
        """Open `page` (e.g. "pub.html") with `query` in a browser context of its own."""
        context = await self.browser.new_context()
        tab = await context.new_page()
        tab.on("console", lambda m: self.logs.append(f"[{name}] {m.type}: {m.text}"))
        tab.on("pageerror", lambda e: self.logs.append(f"[{name}] pageerror: {e}"))
        self.pages[name] = tab
        await tab.goto(f"{self.static_url}/{page}?{urlencode(query)}")
        return tab

    async def state(self, name: str, var: str) -> Any:
        """window[var] of page `name` (JSON-able), or an error string."""
        try:
            return await self.pages[name].evaluate(f"window.{var} || null")
        except Exception as exc:  # page crashed or closed: report, don't mask
            return f"<unavailable: {exc}>"

    async def report(self, **states: str) -> str:
        """Page states (name=window var) and console logs, for assertion messages."""
        parts = []
        for name, var in states.items():
            if name in self.pages:
                value = await self.state(name, var)
                if isinstance(value, dict):
                    value = {k: v for k, v in value.items() if k != "requests"} | {
                        "requests": [
                            f"{r.get('method')} {r.get('url')} -> {r.get('status', r.get('error'))}"
                            for r in value.get("requests", [])
                        ]
                    }
                parts.append(f"{name} ({var}): {json.dumps(value, indent=1, default=str)}")
        parts.append("console:\n  " + "\n  ".join(self.logs[-40:]))
        return "\n".join(parts)
