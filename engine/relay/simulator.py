"""Twilio's side of a ConversationRelay session, over a real WebSocket: for tests and `flask call`.

    line = RelayLine.connect(url, auth_token)       # signed handshake, as Twilio signs it
    line.setup(call_sid, from_="+1555...", to="+1555...")
    reply = line.say("I'd like a cleaning")         # a final prompt; the reply's text tokens
    line.interrupt("I'd like")                      # the caller talked over the reply
    line.ended                                      # the `end` message's handoffData, once sent

Messages are Twilio's (FACTS.md, "Twilio ConversationRelay"): `setup`, `prompt`, `dtmf`,
`interrupt` and `error` go out; `text`, `end` (and `play`, `sendDigits`, `language`) come in and
are kept in `received`. `SimulatedCall` (engine/simulator.py) opens one when its call is
connected to a relay and posts the `<Connect action>` with the handoff when the session ends.
`barrier()` reads everything the server sent before it (a ping answered by its pong), and
`on_text` sees each `text` token as it arrives (`flask call` prints them so).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import websocket
from twilio.request_validator import RequestValidator

DEFAULT_TIMEOUT = 10.0


class RelayError(AssertionError):
    """The server did what Twilio would not accept, or did not answer in time."""


class HandshakeRefused(RelayError):
    """The WebSocket handshake was refused with HTTP `status`."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the relay handshake was refused with HTTP {status}")
        self.status = status


@dataclass
class RelayReply:
    """The `text` tokens of one reply as they came, and whether its `last` came."""

    tokens: list[str] = field(default_factory=list)
    last: bool = False
    arrived: list[float] = field(default_factory=list)  # monotonic time of each token

    @property
    def text(self) -> str:
        """The tokens joined, as Twilio would speak them."""
        return " ".join("".join(self.tokens).split())


def signature(auth_token: str, url: str) -> str:
    """The `X-Twilio-Signature` of a WebSocket handshake to `url` (no parameters)."""
    return str(RequestValidator(auth_token).compute_signature(url, {}))


class RelayLine:
    """One session, as Twilio holds it: see the module. Not thread-safe: one caller."""

    def __init__(self, ws: Any, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.ws = ws
        self.url = url
        self.timeout = timeout
        self.session_id = "VX" + secrets.token_hex(16)
        self.received: list[dict[str, Any]] = []
        self.ended: str | None = None  # the handoffData of `end`
        self.closed = False
        self.on_end: Callable[[RelayLine], None] | None = None
        self.on_text: Callable[[str, bool], None] | None = None  # (token, last) as they come
        self._pongs: set[bytes] = set()

    @classmethod
    def connect(cls, url: str, auth_token: str, *, signed: bool = True,
                headers: dict[str, str] | None = None,
                timeout: float = DEFAULT_TIMEOUT, address: str | None = None) -> RelayLine:
        """Open the WebSocket at `url` with Twilio's signature (unless `signed=False`);
        `HandshakeRefused` when the server refuses it. With `address` (`host:port`), the
        socket is opened there instead, still signed over `url` and with its `Host`: an app
        served on a local port whose TwiML names the host Twilio would connect to."""
        sent = dict(headers or {})
        if signed:
            sent["X-Twilio-Signature"] = signature(auth_token, url)
        target, options = url, dict[str, Any]()
        if address:
            parts = urlsplit(url)
            target = urlunsplit(("ws", address, parts.path, parts.query, ""))
            options["host"] = parts.netloc
        try:
            ws = websocket.create_connection(target, header=sent, timeout=timeout, **options)
        except websocket.WebSocketBadStatusException as error:
            raise HandshakeRefused(error.status_code) from error
        return cls(ws, url, timeout)

    # -- out -----------------------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        """Send one message as JSON."""
        self.send_raw(json.dumps(message))

    def send_raw(self, text: str) -> None:
        """Send `text` as it is (a malformed message, say)."""
        self.ws.send(text)

    def setup(self, call_sid: str, *, from_: str = "+15551230000", to: str = "+15550001000",
              account_sid: str = "AC" + "0" * 32, **extra: Any) -> None:
        """The `setup` Twilio sends first."""
        self.send({"type": "setup", "sessionId": self.session_id, "accountSid": account_sid,
                   "callSid": call_sid, "parentCallSid": "", "from": from_, "to": to,
                   "forwardedFrom": "", "callType": "PSTN", "callerName": "",
                   "direction": "inbound", "callStatus": "IN-PROGRESS",
                   "customParameters": {}, **extra})

    def say(self, speech: str, *, wait: bool = True, lang: str = "en-US") -> RelayReply:
        """A final prompt; the reply to it (until `last`, or the session's `end`)."""
        self.send({"type": "prompt", "voicePrompt": speech, "lang": lang, "last": True})
        return self.reply() if wait else RelayReply()

    def press(self, digit: str, *, wait: bool = True) -> RelayReply:
        """A `dtmf` message for one key; the reply to it."""
        self.send({"type": "dtmf", "digit": digit})
        return self.reply() if wait else RelayReply()

    def interrupt(self, heard: str, duration_ms: int = 800) -> None:
        """The caller talked over the reply, having heard `heard` of it."""
        self.send({"type": "interrupt", "utteranceUntilInterrupt": heard,
                   "durationUntilInterruptMs": duration_ms})

    def error(self, description: str) -> None:
        """An `error` Twilio reports about the session."""
        self.send({"type": "error", "description": description})

    # -- in ------------------------------------------------------------------------------------

    def next_message(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message from the server (kept in `received`); None at the timeout or when
        the server has closed the socket."""
        if self.closed:
            return None
        self.ws.settimeout(max(0.001, self.timeout if timeout is None else timeout))
        try:
            opcode, raw = self.ws.recv_data(control_frame=True)
        except websocket.WebSocketTimeoutException:
            return None
        except (websocket.WebSocketConnectionClosedException, OSError):
            self.closed = True
            return None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            self.closed = True
            return None
        if opcode == websocket.ABNF.OPCODE_PONG:
            self._pongs.add(bytes(raw))
            return None
        if opcode == websocket.ABNF.OPCODE_PING:
            return None  # answered by the client library
        message = json.loads(raw)
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise RelayError(f"the server sent a message Twilio rejects (64107): {raw!r:.200}")
        self.received.append(message)
        if message["type"] == "text" and self.on_text is not None:
            token = message.get("token")
            self.on_text(token if isinstance(token, str) else "", message.get("last") is True)
        if message["type"] == "end":
            handoff = message.get("handoffData", "")
            if not isinstance(handoff, str):
                raise RelayError("end's handoffData is not a string")
            self.ended = handoff
            if self.on_end is not None:
                self.on_end(self)
        return message

    def reply(self, timeout: float | None = None) -> RelayReply:
        """The `text` tokens until one with `last`, or until the session ends; RelayError when
        neither comes within `timeout` seconds."""
        reply = RelayReply()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self.ended is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RelayError(f"no complete reply within the timeout; got {reply.tokens}")
            message = self.next_message(left)
            if message is None:
                if self.closed:
                    break
                continue
            if message["type"] == "text":
                token = message.get("token")
                if not isinstance(token, str):
                    raise RelayError("a text message without a token")
                reply.tokens.append(token)
                reply.arrived.append(time.monotonic())
                if message.get("last") is True:
                    reply.last = True
                    break
        return reply

    def tokens(self, count: int, timeout: float | None = None) -> RelayReply:
        """The first `count` text tokens of a reply (for interrupting it mid-way)."""
        reply = RelayReply()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(reply.tokens) < count and self.ended is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RelayError(f"only {len(reply.tokens)} tokens within the timeout")
            message = self.next_message(left)
            if message is not None and message["type"] == "text":
                reply.tokens.append(str(message.get("token", "")))
                reply.arrived.append(time.monotonic())
                reply.last = message.get("last") is True
        return reply

    def barrier(self, timeout: float | None = None) -> None:
        """Read every message the server sent before now: a ping goes out and messages are
        read until its pong comes back (the server writes the pong after them). Returns at
        once when the socket is closed; RelayError when the pong does not come in time."""
        if self.closed:
            return
        payload = secrets.token_hex(8).encode()
        try:
            self.ws.ping(payload)
        except (websocket.WebSocketConnectionClosedException, OSError):
            self.closed = True
            return
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while payload not in self._pongs and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RelayError("the server did not answer a ping in time")
            self.next_message(left)
        self._pongs.discard(payload)

    def wait_end(self, timeout: float | None = None) -> str:
        """The handoffData of the session's `end`; RelayError when it does not come."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self.ended is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise RelayError("the session did not end")
            self.next_message(left)
        return self.ended

    def wait_closed(self, timeout: float | None = None) -> None:
        """Until the server closes the socket; RelayError when it stays open."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RelayError("the server kept the socket open")
            self.next_message(left)

    def close(self) -> None:
        """Hang up the socket (the caller or Twilio went away)."""
        self.closed = True
        with contextlib.suppress(Exception):  # already closed by the server
            self.ws.close()
