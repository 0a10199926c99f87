"""A loopback HTTP server for tests (no network): serve bytes, and serve them badly on purpose.

Usage::

    from httpserver import LoopbackServer, Route

    with LoopbackServer() as srv:
        srv.add("/data.zip", Route(body=zip_bytes))
        srv.add("/broken.zip", Route(body=zip_bytes, truncate_at=100))   # Content-Length lies
        srv.add("/login", Route(body=b"<html>...</html>", content_type="text/html"))
        url = srv.url("/data.zip")
        ...
        srv.requests  # [(method, path, {header: value})] in arrival order

The server binds 127.0.0.1 on an ephemeral port in a daemon thread; each connection has
a socket timeout, the number of requests is capped (``max_requests``; beyond it the server
answers 503), and leaving the ``with`` block shuts it down. ``Range: bytes=N-`` requests
are answered with ``206 Partial Content`` when the route allows it (``ranges=True``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Route", "LoopbackServer"]


@dataclass
class Route:
    """How one path answers.

    Attributes:
        body: the full response body.
        status: HTTP status for a full (non-range) answer.
        content_type: ``Content-Type`` header.
        truncate_at: send only this many bytes of the body (after any range offset) while
            still announcing the full ``Content-Length``, then close: a truncated download.
        ranges: honour ``Range: bytes=N-`` with 206 (else ignore it and send 200 + everything).
        headers: extra headers.
        times: after this many answers, switch to ``then`` (e.g. truncated once, then whole).
        then: the route used after ``times`` answers.
    """

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    truncate_at: int | None = None
    ranges: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None
    then: Route | None = None
    served: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 16


class LoopbackServer:
    """Context manager running a bounded HTTP server on 127.0.0.1 (ephemeral port)."""

    def __init__(self, *, max_requests: int = 200, timeout_s: float = 10.0):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.max_requests = max_requests
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- routes
    def add(self, path: str, route: Route) -> str:
        """Register ``route`` at ``path``; returns its full URL."""
        self.routes[path] = route
        return self.url(path)

    def url(self, path: str) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def range_requests(self, path: str) -> list[str]:
        """The ``Range`` headers received for ``path`` (in order; '' when none)."""
        return [h.get("Range", "") for m, p, h in self.requests if p == path]

    # -- lifecycle
    def __enter__(self) -> LoopbackServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = server.timeout_s

            def log_message(self, format: str, *args) -> None:  # silence stderr
                pass

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def do_GET(self) -> None:
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                path = self.path.split("?", 1)[0] if self.path.split("?", 1)[0] in server.routes else self.path
                with server._lock:
                    server.requests.append((self.command, path, dict(self.headers.items())))
                    over = len(server.requests) > server.max_requests
                    route = server.routes.get(path)
                    if route is not None:
                        while route.times is not None and route.served >= route.times and route.then is not None:
                            route = route.then
                        route.served += 1
                if over:
                    return self._plain(503, b"request limit reached")
                if route is None:
                    return self._plain(404, b"<html><body>404 Not Found</body></html>", "text/html")
                body = route.body
                start = 0
                status = route.status
                rng = self.headers.get("Range")
                if rng and route.ranges and status == 200 and rng.startswith("bytes=") and rng.endswith("-"):
                    try:
                        start = int(rng[len("bytes=") : -1])
                    except ValueError:
                        start = 0
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                payload = body[start:]
                self.send_response(status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(payload)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                if route.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                for k, v in route.headers.items():
                    self.send_header(k, v)
                if route.truncate_at is not None:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if head:
                    return
                if route.truncate_at is not None:
                    payload = payload[: route.truncate_at]
                try:
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _plain(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.timeout = self.timeout_s
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
