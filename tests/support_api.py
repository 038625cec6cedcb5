"""A local HTTP API for tests: real sockets on 127.0.0.1, routes answered by handlers, every
request it received kept in `seen`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Api:
    """The local API: `routes` maps a path to a handler writing the answer."""

    port: int
    seen: list[Seen] = field(default_factory=list)
    routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def answer(status: int, body: bytes, content_type: str = "application/json",
            headers: dict[str, str] | None = None) -> Callable[[BaseHTTPRequestHandler], None]:
    def handle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    return handle


@contextmanager
def serve_api() -> Iterator[Api]:
    """A local JSON API on a free port of 127.0.0.1, served in threads until the block ends."""
    state: dict[str, Api] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server = state["api"]
            path = self.path.split("?")[0]
            server.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            route = server.routes.get(path)
            if route is None:
                answer(404, b'{"error": "no such route"}')(self)
            else:
                route(self)

        do_GET = do_POST = do_PUT = _serve

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state["api"] = Api(port=httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state["api"]
    state["api"].release.set()
    httpd.shutdown()
    httpd.server_close()
