"""A local Pusher Channels server for browsers: the HTTP API of `tests.doubles.pusher_server` and
Pusher's websocket protocol on the same port, as a self-hosted Pusher-compatible server serves
both (the dashboard connects pusher-js to PUSHER_HOST when it is not pusher.com).

    with PusherDouble() as api, PusherSockets(api) as sockets:
        app = create_app({..., "PUSHER_HOST": sockets.url, "PUSHER_KEY": api.key, ...})

`POST /apps/<id>/events|batch_events` is answered by the `PusherDouble` (signature, sizes,
faults); what it accepts is sent to the browsers subscribed to each event's channel.
`GET /app/<key>` upgrades to a websocket (RFC 6455, text frames, no extensions) speaking Pusher's
protocol 7: `pusher:connection_established`, `pusher:subscribe` (private channels checked against
the app secret: `auth` must be `<key>:<hex HMAC-SHA256 of "<socket_id>:<channel>">`, as
`POST /pusher/auth` signs it), `pusher_internal:subscription_succeeded` or
`pusher:subscription_error`, `pusher:ping`/`pusher:pong`. Subscriptions are recorded in
`subscriptions` (channel, whether the signature was valid).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import socket
import struct
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.doubles.pusher_server import Logged, PusherDouble

WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Subscription:
    channel: str
    socket_id: str
    authorised: bool


class Browser:
    """One websocket connection: frames out under a lock (the API thread sends too)."""

    def __init__(self, connection: socket.socket, socket_id: str) -> None:
        self.connection = connection
        self.socket_id = socket_id
        self.channels: set[str] = set()
        self.lock = threading.Lock()
        self.open = True

    def send(self, message: dict[str, Any], opcode: int = TEXT) -> None:
        payload = json.dumps(message).encode() if opcode == TEXT else b""
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([127]) + struct.pack(">Q", len(payload))
        with self.lock:
            if self.open:
                try:
                    self.connection.sendall(header + payload)
                except OSError:
                    self.open = False

    def read(self) -> tuple[int, bytes] | None:
        """One frame (opcode, unmasked payload); None when the connection ends."""
        try:
            head = self._exactly(2)
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._exactly(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._exactly(8))[0]
            mask = self._exactly(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(byte ^ mask[index % 4] for index, byte in enumerate(self._exactly(size)))
        except (OSError, ConnectionError):
            return None
        return opcode, data

    def _exactly(self, count: int) -> bytes:
        chunks = b""
        while len(chunks) < count:
            chunk = self.connection.recv(count - len(chunks))
            if not chunk:
                raise ConnectionError("closed")
            chunks += chunk
        return chunks


class PusherSockets:
    def __init__(self, api: PusherDouble) -> None:
        self.api = api
        self.subscriptions: list[Subscription] = []
        self.browsers: list[Browser] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="pusher-sockets", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> PusherSockets:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        with self._lock:
            browsers = list(self.browsers)
        for browser in browsers:
            browser.open = False
            with contextlib.suppress(OSError):
                browser.connection.shutdown(socket.SHUT_RDWR)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def subscribed(self, channel: str) -> bool:
        with self._lock:
            return any(s.channel == channel and s.authorised for s in self.subscriptions)

    # -- the API side: accepted events go to the browsers --------------------------------------

    def publish(self, path: str, query: dict[str, str], body: bytes) -> tuple[int, str]:
        with self.api._lock:
            before = len(self.api.events)
        status, answer = self.api.answer(path, query, body)
        with self.api._lock:
            self.api.requests.append(Logged(path, query, body, status, answer))
            accepted = self.api.events[before:]
        with self._lock:
            browsers = list(self.browsers)
        for event in accepted:
            for browser in browsers:
                if event.channel in browser.channels:
                    browser.send({"event": event.name, "channel": event.channel,
                                  "data": event.data})
        return status, answer

    # -- the websocket side --------------------------------------------------------------------

    def expected_auth(self, socket_id: str, channel: str) -> str:
        signature = hmac.new(self.api.secret.encode(), f"{socket_id}:{channel}".encode(),
                             hashlib.sha256).hexdigest()
        return f"{self.api.key}:{signature}"

    def converse(self, browser: Browser) -> None:
        browser.send({"event": "pusher:connection_established", "data": json.dumps(
            {"socket_id": browser.socket_id, "activity_timeout": 30})})
        while browser.open:
            frame = browser.read()
            if frame is None:
                return
            opcode, data = frame
            if opcode == CLOSE:
                browser.send({}, CLOSE)
                return
            if opcode == PING:
                browser.send({}, PONG)
                continue
            if opcode != TEXT:
                continue
            self.on_message(browser, json.loads(data))

    def on_message(self, browser: Browser, message: dict[str, Any]) -> None:
        event, data = message.get("event"), message.get("data") or {}
        if event == "pusher:ping":
            browser.send({"event": "pusher:pong", "data": "{}"})
        elif event == "pusher:subscribe":
            channel = str(data.get("channel", ""))
            authorised = not channel.startswith("private-") or hmac.compare_digest(
                str(data.get("auth", "")), self.expected_auth(browser.socket_id, channel))
            with self._lock:
                self.subscriptions.append(Subscription(channel, browser.socket_id, authorised))
            if authorised:
                browser.channels.add(channel)
                browser.send({"event": "pusher_internal:subscription_succeeded",
                              "channel": channel, "data": "{}"})
            else:
                browser.send({"event": "pusher:subscription_error", "channel": channel,
                              "data": json.dumps({"type": "AuthError", "status": 401,
                                                  "error": "invalid signature"})})
        elif event == "pusher:unsubscribe":
            browser.channels.discard(str(data.get("channel", "")))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sockets = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = urlsplit(self.path)
                status, answer = sockets.publish(
                    parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)), body)
                encoded = answer.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

            def do_GET(self) -> None:
                key = self.headers.get("Sec-WebSocket-Key")
                path = urlsplit(self.path).path
                if (self.headers.get("Upgrade", "").lower() != "websocket" or not key
                        or path != f"/app/{sockets.api.key}"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode())
                                          .digest()).decode()
                self.send_response(101, "Switching Protocols")
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept)
                self.end_headers()
                self.wfile.flush()
                browser = Browser(self.connection, f"{next(sockets._ids)}.{4242}")
                with sockets._lock:
                    sockets.browsers.append(browser)
                try:
                    sockets.converse(browser)
                finally:
                    browser.open = False
                    with sockets._lock:
                        sockets.browsers.remove(browser)
                    self.close_connection = True

        return Handler
