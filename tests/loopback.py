"""A tiny HTTP server on 127.0.0.1 for tests: real sockets, real clients, no network.

``serve(app)`` runs ``app(method, path, headers) -> (status, headers, body)`` on a random free port
for the duration of a ``with`` block; ``serve_directory(root)`` serves files from a directory. The
server stops when the block ends, and by itself after ``lifetime`` seconds, so a hung test never
leaves it running.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

Response = tuple[int, dict[str, str], bytes]
App = Callable[[str, str, dict[str, str]], Response]


@contextlib.contextmanager
def serve(app: App, lifetime: float = 120.0) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1; yield the base URL (``http://127.0.0.1:PORT``)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _respond(self, method: str) -> None:
            status, headers, body = app(method, self.path, dict(self.headers))
            self.send_response(status)
            headers = {"Content-Length": str(len(body)), **headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
            self._respond("GET")

        def do_HEAD(self) -> None:  # noqa: N802
            self._respond("HEAD")

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    timer = threading.Timer(lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        timer.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def directory_app(root: str | Path) -> App:
    """An app serving the files under ``root`` (GET and HEAD; 404 for anything else)."""
    root = Path(root).resolve()

    def app(method: str, path: str, headers: dict[str, str]) -> Response:
        target = (root / unquote(urlsplit(path).path).lstrip("/")).resolve()
        if not target.is_file() or root not in target.parents:
            return 404, {}, b"not found"
        return 200, {"Content-Type": "application/octet-stream"}, target.read_bytes()

    return app


@contextlib.contextmanager
def serve_directory(root: str | Path, lifetime: float = 120.0) -> Iterator[str]:
    with serve(directory_app(root), lifetime) as url:
        yield url
