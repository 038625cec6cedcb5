"""A local server that answers like Pusher Channels' HTTP API, for tests, with faults on demand.

    with PusherDouble() as double:
        client = pusher.Pusher(app_id=double.app_id, key=double.key, secret=double.secret,
                               host="127.0.0.1", port=double.port, ssl=False)
        client.trigger(["private-calls"], "call.start", "{}")
        assert double.events[0].channel == "private-calls"

Routes: `POST /apps/<app_id>/events` (`{"name", "channels" | "channel", "data", "socket_id"?}`)
and `POST /apps/<app_id>/batch_events` (`{"batch": [{"channel", "name", "data"}, ...]}`).

Checks, in Pusher's order and with its status codes:
- 401 unless the query is signed as Pusher signs it: `auth_key` is the app key,
  `auth_timestamp` within 600 s of now, `auth_version=1.0`, `body_md5` the MD5 of the body, and
  `auth_signature` the hex HMAC-SHA256 (keyed with the secret) of
  `POST\\n<path>\\n<the other query parameters, keys lower-cased, sorted, key=value joined by &>`;
- 400 for a body that is not JSON, event names over 200 characters, channel names that break
  Pusher's rules (1–164 of `A-Za-z0-9_-=@,.;`), more than 100 channels, more than 10 batch events,
  data that is not a string;
- 413 when an event's data is over 10 240 bytes, counted in UTF-8 (Pusher's "10 kB").
Every request is logged in `requests` (with its status); accepted events land in `events`, one
`Received` per channel, in arrival order.

Faults: `fail(times, status)` answers the next `times` requests with `status` (500 by default);
`down_for(seconds)` (or `down()`/`up()`) drops every connection without an answer, as a dead
host behind a load balancer does (the `requests` library raises ConnectionError);
`slow_for(seconds, delay)` answers after `delay` seconds.

`PusherDouble(errors_in_body=True)` answers as soketi (a self-hosted Pusher-compatible server)
does: a refusal for 401 or 413 comes with status 200 and a body `{"error": "...", "code": 401}`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_DATA_BYTES = 10_240
MAX_CHANNELS = 100
MAX_BATCH = 10
MAX_EVENT_NAME = 200
TIMESTAMP_GRACE = 600
CHANNEL = re.compile(r"\A[-a-zA-Z0-9_=@,.;]{1,164}\Z")
SOCKET_ID = re.compile(r"\A\d+\.\d+\Z")
ERRORS_IN_BODY = (401, 413)  # what soketi answers with 200 and an error body
ROUTE = re.compile(r"\A/apps/([^/]+)/(events|batch_events)\Z")


@dataclass(frozen=True)
class Received:
    channel: str
    name: str
    data: str
    endpoint: str  # "events" or "batch_events"
    socket_id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True)
class Logged:
    path: str
    query: dict[str, str]
    body: bytes
    status: int
    answer: str


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def string_to_sign(method: str, path: str, query: dict[str, str]) -> str:
    signed = sorted((key.lower(), value) for key, value in query.items()
                    if key != "auth_signature")
    return f"{method}\n{path}\n" + "&".join(f"{key}={value}" for key, value in signed)


class PusherDouble:
    def __init__(self, app_id: str = "4242", key: str = "double-key",
                 secret: str = "double-secret", *, now: Callable[[], float] = time.time,
                 errors_in_body: bool = False) -> None:
        self.app_id, self.key, self.secret = app_id, key, secret
        self.now = now
        self.errors_in_body = errors_in_body
        self.events: list[Received] = []
        self.requests: list[Logged] = []
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._down_until = 0.0
        self._slow_until = 0.0
        self._slow_delay = 0.0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="pusher-double", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """For PUSHER_HOST."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PusherDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> PusherDouble:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # -- faults ------------------------------------------------------------------------------

    def fail(self, times: int = 1, status: int = 500) -> None:
        with self._lock:
            self._failures += [status] * times

    def down_for(self, seconds: float) -> None:
        self._down_until = time.monotonic() + seconds

    def down(self) -> None:
        self._down_until = float("inf")

    def up(self) -> None:
        self._down_until = 0.0

    def slow_for(self, seconds: float, delay: float) -> None:
        self._slow_delay = delay
        self._slow_until = time.monotonic() + seconds

    # -- reading what arrived ----------------------------------------------------------------

    def on(self, channel: str) -> list[Received]:
        with self._lock:
            return [event for event in self.events if event.channel == channel]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least `count` events were accepted."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.events) >= count:
                return True
            time.sleep(0.02)
        return len(self.events) >= count

    def statuses(self) -> list[int]:
        with self._lock:
            return [logged.status for logged in self.requests]

    # -- the API -----------------------------------------------------------------------------

    def answer(self, path: str, query: dict[str, str], body: bytes) -> tuple[int, str]:
        """(status, body) for one request; accepted events are recorded."""
        with self._lock:
            if self._failures:
                return self._failures.pop(0), json.dumps({"error": "injected failure"})
        try:
            endpoint = self._check(path, query, body)
            received = self._events(endpoint, body)
        except Refused as refused:
            if self.errors_in_body and refused.status in ERRORS_IN_BODY:
                return 200, json.dumps({"error": str(refused), "code": refused.status})
            return refused.status, str(refused)
        with self._lock:
            self.events += received
        return 200, "{}" if endpoint == "events" else json.dumps({"batch": [{}] * len(received)})

    def _check(self, path: str, query: dict[str, str], body: bytes) -> str:
        route = ROUTE.match(path)
        if route is None:
            raise Refused(404, "Not found")
        if route.group(1) != self.app_id:
            raise Refused(404, f"Unknown app {route.group(1)}")
        if query.get("auth_key") != self.key:
            raise Refused(401, "Unknown auth_key")
        if query.get("auth_version") != "1.0":
            raise Refused(401, "auth_version must be 1.0")
        try:
            stamp = int(query.get("auth_timestamp", ""))
        except ValueError:
            raise Refused(401, "auth_timestamp missing or not a number") from None
        if abs(self.now() - stamp) > TIMESTAMP_GRACE:
            raise Refused(401, f"Timestamp expired: given {stamp}, not within 600 s of now")
        if query.get("body_md5") != hashlib.md5(body).hexdigest():
            raise Refused(401, "body_md5 does not match the body")
        expected = hmac.new(self.secret.encode(), string_to_sign("POST", path, query).encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(query.get("auth_signature", ""), expected):
            raise Refused(401, "Invalid signature: you should have sent HmacSHA256Hex("
                               f"{string_to_sign('POST', path, query)!r}, your_secret_key)")
        return route.group(2)

    def _events(self, endpoint: str, body: bytes) -> list[Received]:
        try:
            request = json.loads(body)
        except ValueError:
            raise Refused(400, "Request body is not JSON") from None
        if not isinstance(request, dict):
            raise Refused(400, "Request body must be a JSON object")
        if endpoint == "events":
            channels = request.get("channels")
            if channels is None and "channel" in request:
                channels = [request["channel"]]
            if not isinstance(channels, list) or not channels:
                raise Refused(400, "channels must be a non-empty list")
            if len(channels) > MAX_CHANNELS:
                raise Refused(400, f"Too many channels: {len(channels)} (at most {MAX_CHANNELS})")
            socket_id = request.get("socket_id")
            if socket_id is not None and not (isinstance(socket_id, str)
                                              and SOCKET_ID.match(socket_id)):
                raise Refused(400, "Invalid socket_id")
            name, data = self._event(request)
            return [Received(self._channel(channel), name, data, endpoint, socket_id)
                    for channel in channels]
        batch = request.get("batch")
        if not isinstance(batch, list) or not batch:
            raise Refused(400, "batch must be a non-empty list")
        if len(batch) > MAX_BATCH:
            raise Refused(400, f"Batch too large: {len(batch)} events (at most {MAX_BATCH})")
        received = []
        for item in batch:
            if not isinstance(item, dict):
                raise Refused(400, "batch events must be objects")
            name, data = self._event(item)
            received.append(Received(self._channel(item.get("channel")), name, data, endpoint))
        return received

    @staticmethod
    def _channel(channel: Any) -> str:
        if not isinstance(channel, str) or not CHANNEL.match(channel):
            raise Refused(400, f"Invalid channel name {channel!r}")
        return channel

    @staticmethod
    def _event(item: dict[str, Any]) -> tuple[str, str]:
        name, data = item.get("name"), item.get("data")
        if not isinstance(name, str) or not name or len(name) > MAX_EVENT_NAME:
            raise Refused(400, "Event name missing or over 200 characters")
        if not isinstance(data, str):
            raise Refused(400, "Event data must be a string")
        size = len(data.encode("utf-8"))
        if size > MAX_DATA_BYTES:
            raise Refused(413, f"Payload too large: {size} bytes of data (at most "
                               f"{MAX_DATA_BYTES})")
        return name, data

    # -- HTTP --------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's requests session expects

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if time.monotonic() < double._down_until:
                    self.close_connection = True  # no answer at all
                    return
                if time.monotonic() < double._slow_until:
                    time.sleep(double._slow_delay)
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                status, answer = double.answer(parts.path, query, body)
                with double._lock:
                    double.requests.append(Logged(parts.path, query, body, status, answer))
                encoded = answer.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

            def do_GET(self) -> None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
