"""A tiny static file server for the browser tests.

It serves tests/e2e/pages/ and maps /js/whip.js and /js/whep.js to the ES modules
of the whip-whep npm package (tests/e2e/node_modules/whip-whep/). It listens on
127.0.0.1 on a free port, so the pages run on another origin than the node:
every WHIP/WHEP request from the pages goes through the node's CORS.

`http://127.0.0.1` is a secure context, which getUserMedia needs.
"""

from __future__ import annotations

import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

E2E_DIR = Path(__file__).resolve().parent
PAGES_DIR = E2E_DIR / "pages"
WHIP_WHEP_DIR = E2E_DIR / "node_modules" / "whip-whep"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
}


def resolve(path: str) -> Path | None:
    """URL path -> file to serve, or None (404). Never leaves the two roots."""
    if path in ("/js/whip.js", "/js/whep.js"):
        return WHIP_WHEP_DIR / path.rsplit("/", 1)[1]
    rel = path.lstrip("/") or "index.html"
    candidate = (PAGES_DIR / rel).resolve()
    if PAGES_DIR.resolve() not in candidate.parents:
        return None
    return candidate


class _Handler(BaseHTTPRequestHandler):
    server_version = "edge-e2e-static/1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        target = resolve(urlsplit(self.path).path)
        if target is None or not target.is_file():
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return
        data = target.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header(
            "Content-Type", CONTENT_TYPES.get(target.suffix, "application/octet-stream")
        )
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet: pytest captures enough already


class StaticServer:
    """ThreadingHTTPServer on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="e2e-static", daemon=True
        )

    def start(self) -> "StaticServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "StaticServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
