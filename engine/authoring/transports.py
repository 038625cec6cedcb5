"""Transports for `engine.simulator.SimulatedCall`: an app in process, or a server over HTTP.

Both send exactly what Twilio would (a signed, form-encoded POST) and time the round trip, so a
call in the terminal or in a scenario goes through the same signature check and webhooks as a
real one. A ConversationRelay session needs a real WebSocket: `LocalServer` serves an app in
process on a local port for it.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from engine.simulator import HttpAnswer, Transport

HTTP_TIMEOUT = 20.0
"""Seconds to wait for a webhook answer: more than Twilio's 15, so a slow answer still shows."""


def app_transport(app: Flask) -> Transport:
    """Post through the app's test client: no sockets, the same app and signatures."""
    return client_transport(app.test_client())


def client_transport(client: FlaskClient) -> Transport:
    """Post through a Flask test client (keeping its cookies), timed."""

    def post(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpAnswer:
        parts = urlsplit(url)
        started = time.perf_counter()
        answer = client.post(parts.path + (f"?{parts.query}" if parts.query else ""),
                             data=dict(params), headers=dict(headers),
                             base_url=f"{parts.scheme}://{parts.netloc}")
        return HttpAnswer(answer.status_code, answer.get_data(as_text=True),
                          answer.content_type or "", time.perf_counter() - started)

    return post


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Twilio does not follow HTTP redirects on a webhook's POST; neither do we."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


class Unreachable(ConnectionError):
    """The server could not be reached at all."""


def http_transport(url: str, params: Mapping[str, str],
                   headers: Mapping[str, str]) -> HttpAnswer:
    """Post over real HTTP (the standard library's client: no dependency to add)."""
    request = urllib.request.Request(
        url, data=urlencode(dict(params)).encode(), method="POST",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    started = time.perf_counter()
    try:
        with _opener.open(request, timeout=HTTP_TIMEOUT) as response:
            status, body = response.status, response.read()
            content_type = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
        content_type = error.headers.get("Content-Type", "") if error.headers else ""
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Unreachable(f"cannot reach {url}: {reason}") from error
    return HttpAnswer(status, body.decode("utf-8", "replace"), content_type,
                      time.perf_counter() - started)


class _Unlogged(WSGIRequestHandler):
    """The dev server's handler without its access log: the terminal shows the call itself."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class LocalServer:
    """`app` served on 127.0.0.1 (werkzeug's threaded server, on a free port), started on the
    first `address()`: where a call made in process opens its relay WebSockets. Webhooks keep
    going through the test client; the socket reaches the same app, its store and services."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def address(self) -> str:
        """`127.0.0.1:PORT`, serving from the first call on."""
        with self._lock:
            if self._server is None:
                self._server = make_server("127.0.0.1", 0, self.app, threaded=True,
                                           request_handler=_Unlogged)
                # A short poll, so that close() returns at once.
                self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                                name="phoney-local-server", daemon=True)
                self._thread.start()
            return f"127.0.0.1:{self._server.server_port}"

    def close(self) -> None:
        """Stop serving (nothing to do when it never started)."""
        with self._lock:
            server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)
