"""A business's webhook receiver on a real local socket, for the webhook tests.

Each POST is recorded (`Post`: path, headers, raw body) and answered with the next scripted
status (`answer(...)`), 200 once the script is used up. `hang()` holds every request open until
`release()`; `redirect_to(url, times)` answers 302 with that Location.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Post:
    path: str
    headers: Mapping[str, str]
    body: bytes
    status: int

    @property
    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


class Receiver:
    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.lock = threading.Lock()
        self.script: list[int] = []
        self.location = ""
        self.redirects = 0
        self.hanging = threading.Event()  # set: requests wait for `released`
        self.released = threading.Event()
        self.hung = 0  # requests that arrived while hanging
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.hanging.is_set():
                    with receiver.lock:
                        receiver.hung += 1
                    receiver.released.wait(60)
                with receiver.lock:
                    extra: dict[str, str] = {}
                    if receiver.redirects:
                        receiver.redirects -= 1
                        status, extra = 302, {"Location": receiver.location}
                    else:
                        status = receiver.script.pop(0) if receiver.script else 200
                    receiver.posts.append(Post(self.path, dict(self.headers.items()), body,
                                               status))
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def url(self, path: str = "/hooks/phoney") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def answer(self, *statuses: int) -> None:
        with self.lock:
            self.script += statuses

    def redirect_to(self, location: str, times: int) -> None:
        with self.lock:
            self.location, self.redirects = location, times

    def hang(self) -> None:
        self.released.clear()
        self.hanging.set()

    def release(self) -> None:
        self.hanging.clear()
        self.released.set()

    def taken(self) -> list[Post]:
        """The posts answered 2xx, in arrival order."""
        with self.lock:
            return [post for post in self.posts if 200 <= post.status < 300]

    def all(self) -> list[Post]:
        with self.lock:
            return list(self.posts)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
