"""A local server that answers like OpenAI's API, for tests and benchmarks, with faults on demand.

    with OpenAIDouble() as double:
        double.chat(Text("Hello there. How can I help?", ttft=0.3, tokens_per_second=40),
                    Status(429, headers={"retry-after": "2"}))
        client = openai.OpenAI(api_key=double.api_key, base_url=double.base_url, max_retries=0)
        ...
        assert double.requests[0].model == "gpt-4o-mini"

Routes (under `/v1`, the prefix is optional): `POST /chat/completions`, `POST /audio/speech`,
`GET /models`. Every request is recorded in `requests` (in arrival order) before it is answered.
A request without `Authorization: Bearer <api_key>` gets a 401 and consumes no behaviour.

Each chat (speech) request takes the next behaviour queued with `chat()` (`speech()`), one per
request, retries included; with the queue empty it takes `default_chat` (`default_speech`).

Wire format, as the `openai` SDK (3.x) reads it:
- streams are `text/event-stream` over HTTP/1.1 chunked transfer encoding, one HTTP chunk per
  `data: {json}\\n\\n` event, written and flushed as it is produced (TCP_NODELAY), ending with
  `data: [DONE]\\n\\n` and the terminating zero-length chunk;
- errors are `{"error": {"message", "type", "param", "code"}}` with the status code, and an
  `x-request-id` header on every answer, as OpenAI sends them.

What the SDK makes of each fault (checked in test_openai_server.py against the real SDK):
- `Status(429)` → `openai.RateLimitError` (headers on `error.response.headers`), `Status(5xx)` →
  `openai.InternalServerError`, 400 → `BadRequestError`, 404 → `NotFoundError`, bad key →
  `AuthenticationError`; the SDK retries 408/409/429/5xx itself when `max_retries` > 0.
- `Hang(longer than the client's timeout)` → `openai.APITimeoutError`.
- `Malformed` → a plain `json.JSONDecodeError` (a `ValueError`, not an `openai.OpenAIError`):
  raised by `create()` for a non-stream request, by the iteration for a stream. For speech the
  SDK does not parse the body: `Malformed` bytes come back from `.read()` as if they were audio.
- `Cut` → for a stream, the chunks sent before the cut are yielded, then iterating raises
  `openai.APIConnectionError` (the chunked body ends without its terminating chunk); for a
  non-stream request `create()` raises `openai.APIConnectionError` (body shorter than its
  Content-Length), after the SDK's own retries.
- `Empty` → no error: a stream with no content and finish_reason "stop", or content "".
- `Raw` → whatever its bytes say: the wire quirks of other OpenAI-compatible servers (an error
  event inside a 200 stream, `event: ping`, events split across HTTP chunks, Gemini's tool
  calls without `index` ...), written exactly as given.

Reasoning models: `OpenAIDouble(reasoning_models=r"^(o\\d|gpt-5)")` answers a chat request for a
model whose name matches as OpenAI answers one for o1, o3, o4-mini or gpt-5: HTTP 400 for
`max_tokens` (`unsupported_parameter`: "Use 'max_completion_tokens' instead.") and for any
`temperature` but 1 (`unsupported_value`), with OpenAI's exact error bodies. A refused request is
recorded (its `behaviour` is the refusal) and takes no queued behaviour.
"""

from __future__ import annotations

import contextlib
import hashlib
import http
import json
import math
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeAlias, cast

DEFAULT_REPLY = "Happy to help with that. Anything else?"
SPEECH_INPUT_LIMIT = 4096
SAMPLE_RATE = 24_000  # OpenAI speech: 24 kHz, 16-bit, mono for wav and pcm

# -- behaviours -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A text reply. Streamed as one chunk per token (a word with its trailing whitespace).

    The first content chunk is sent `ttft` seconds after the headers, token i at
    `ttft + i / tokens_per_second` (all at once when `tokens_per_second` is None). A non-stream
    request waits as long as the whole stream would have taken, then answers.
    """

    text: str
    ttft: float = 0.0
    tokens_per_second: float | None = None


@dataclass(frozen=True)
class ToolCall:
    """The model calls a function. `arguments` is sent verbatim (it may be malformed JSON) and,
    when streamed, split over several `delta.tool_calls` chunks; `text` is said before the call.
    `call_id` defaults to an id derived from name and arguments."""

    name: str
    arguments: str
    text: str = ""
    call_id: str | None = None
    ttft: float = 0.0

    @property
    def id(self) -> str:
        if self.call_id is not None:
            return self.call_id
        digest = hashlib.sha256(f"{self.name}\0{self.arguments}".encode()).hexdigest()
        return f"call_{digest[:24]}"


@dataclass(frozen=True)
class Status:
    """An error answer with OpenAI's error JSON. `message`, `type` and `error_code` default to
    what OpenAI sends for that status; `headers` are added to the answer (e.g. retry-after)."""

    code: int
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    type: str | None = None
    error_code: str | None = None
    param: str | None = None


@dataclass(frozen=True)
class Hang:
    """Wait `seconds` before answering, then behave as `then` (default: the default behaviour).
    If the client has gone away meanwhile, the write fails quietly."""

    seconds: float
    then: ChatBehaviour | SpeechBehaviour | None = None


@dataclass(frozen=True)
class Malformed:
    """200 with a body that is not JSON (`Content-Type: application/json` all the same); for a
    stream, an SSE event `data: <body>`; for speech, `body` served as the requested audio."""

    body: bytes = b"{not json"


@dataclass(frozen=True)
class Empty:
    """A completion with no content: finish_reason "stop", content "" (streamed: no content
    chunk at all, only the role chunk and the finish chunk)."""


@dataclass(frozen=True)
class Cut:
    """Send the first `keep` tokens of `text` (default: half of them, rounded up), then drop the
    connection without `[DONE]` nor the end of the chunked body. `delivered` is what gets out.
    A non-stream request gets the first half of the JSON body, then the drop."""

    text: str
    keep: int | None = None
    ttft: float = 0.0
    tokens_per_second: float | None = None

    @property
    def pieces(self) -> list[str]:
        pieces = tokens(self.text)
        keep = (len(pieces) + 1) // 2 if self.keep is None else self.keep
        return pieces[:keep]

    @property
    def delivered(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class Raw:
    """An answer with a body of `chunks`, each written verbatim as one HTTP chunk and flushed,
    `gap` seconds apart, to stream and non-stream requests alike. For what the other behaviours
    never send: SSE events split anywhere, error events mid-stream, keep-alive pings, other
    servers' chunk shapes and error bodies. With `end=False` the connection drops after the
    last chunk instead of the body ending."""

    chunks: tuple[bytes, ...]
    content_type: str = "text/event-stream; charset=utf-8"
    gap: float = 0.0
    end: bool = True
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Audio:
    """A speech answer after `delay` seconds: `body` if given, otherwise a small deterministic
    file in the requested format (`ID3...` for mp3, a RIFF/WAVE of silence for wav)."""

    delay: float = 0.0
    body: bytes | None = None
    content_type: str | None = None


ChatBehaviour: TypeAlias = Text | ToolCall | Status | Hang | Malformed | Empty | Cut | Raw
SpeechBehaviour: TypeAlias = Audio | Status | Hang | Malformed
_CHAT_TYPES = (Text, ToolCall, Status, Hang, Malformed, Empty, Cut, Raw)
_SPEECH_TYPES = (Audio, Status, Hang, Malformed)

_TOKEN = re.compile(r"^\s+|\S+\s*")


def tokens(text: str) -> list[str]:
    """The double's tokens: leading whitespace, then each word with its trailing whitespace.
    `"".join(tokens(text)) == text` always holds."""
    return _TOKEN.findall(text)


# -- recording ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """One request as the double received it. `headers` has lower-case names; `body` is the
    parsed JSON (None when absent or not JSON); `received_at` is `time.monotonic()`;
    `behaviour` is what the double answered with (None: refused, or no such route)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    raw_body: bytes
    received_at: float
    behaviour: ChatBehaviour | SpeechBehaviour | None = None

    def get(self, key: str) -> Any:
        """A top-level field of the JSON body as sent, or None."""
        return self.body.get(key) if isinstance(self.body, dict) else None

    @property
    def is_chat(self) -> bool:
        return _route(self.path) == "/chat/completions"

    @property
    def is_speech(self) -> bool:
        return _route(self.path) == "/audio/speech"

    @property
    def model(self) -> Any:
        return self.get("model")

    @property
    def messages(self) -> Any:
        return self.get("messages")

    @property
    def tools(self) -> Any:
        return self.get("tools")

    @property
    def temperature(self) -> Any:
        return self.get("temperature")

    @property
    def stream(self) -> Any:
        return self.get("stream")

    @property
    def max_tokens(self) -> Any:
        return self.get("max_tokens")

    @property
    def max_completion_tokens(self) -> Any:
        return self.get("max_completion_tokens")


def _route(path: str) -> str:
    path = path.split("?", 1)[0].rstrip("/")
    return path[3:] if path.startswith("/v1/") else path


# -- the double -----------------------------------------------------------------------------------


class OpenAIDouble:
    """An OpenAI-compatible server on 127.0.0.1 (a free port), served by a daemon thread.

    Use it as a context manager (or call `start()` and `close()`). Thread-safe: behaviours may
    be queued while requests are in flight."""

    def __init__(self, api_key: str = "test-key", reasoning_models: str | None = None) -> None:
        self.api_key = api_key
        self.reasoning_models = re.compile(reasoning_models) if reasoning_models else None
        self.requests: list[Recorded] = []
        self.errors: list[BaseException] = []  # the double's own failures; should stay empty
        self._chat: deque[ChatBehaviour] = deque()
        self._speech: deque[SpeechBehaviour] = deque()
        self._default_chat: ChatBehaviour = Text(DEFAULT_REPLY)
        self._default_speech: SpeechBehaviour = Audio()
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._connections: set[socket.socket] = set()
        self._counter = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle --

    def start(self) -> OpenAIDouble:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _Handler)
        server.double = self
        self._server = server
        port = server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                         name=f"openai-double-{port}", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; hanging and streaming answers are cut short, open connections closed."""
        server = self._server
        if server is None:
            return
        self._closing.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> OpenAIDouble:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- behaviours --

    def chat(self, *behaviours: ChatBehaviour) -> None:
        """Queue behaviours for the next chat-completion requests, one per request."""
        for behaviour in behaviours:
            _check(behaviour, _CHAT_TYPES, "chat")
        with self._lock:
            self._chat.extend(behaviours)

    def speech(self, *behaviours: SpeechBehaviour) -> None:
        """Queue behaviours for the next /audio/speech requests, one per request."""
        for behaviour in behaviours:
            _check(behaviour, _SPEECH_TYPES, "speech")
        with self._lock:
            self._speech.extend(behaviours)

    def default_chat(self, behaviour: ChatBehaviour) -> None:
        """The chat behaviour used when the queue is empty."""
        _check(behaviour, _CHAT_TYPES, "chat")
        with self._lock:
            self._default_chat = behaviour

    def default_speech(self, behaviour: SpeechBehaviour) -> None:
        """The speech behaviour used when the queue is empty."""
        _check(behaviour, _SPEECH_TYPES, "speech")
        with self._lock:
            self._default_speech = behaviour

    @property
    def pending_chat(self) -> list[ChatBehaviour]:
        """Queued chat behaviours not yet taken by a request."""
        with self._lock:
            return list(self._chat)

    @property
    def pending_speech(self) -> list[SpeechBehaviour]:
        with self._lock:
            return list(self._speech)

    # -- what was received --

    @property
    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.is_chat]

    @property
    def speech_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.is_speech]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        """Block until at least `count` requests have arrived (for work done in threads)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} requests after {timeout} s, "
                                   f"wanted {count}")
            return list(self.requests)

    # -- used by the handler --

    def _take(self, route: str, method: str, authorised: bool,
              ) -> ChatBehaviour | SpeechBehaviour | None:
        if not authorised:
            return None
        if route == "/chat/completions" and method == "POST":
            return self._chat.popleft() if self._chat else self._default_chat
        if route == "/audio/speech" and method == "POST":
            return self._speech.popleft() if self._speech else self._default_speech
        return None

    def _refusal(self, route: str, method: str, body: Any) -> Status | None:
        """OpenAI's 400 for what a reasoning model does not take, or None."""
        if self.reasoning_models is None or route != "/chat/completions" or method != "POST" \
                or not isinstance(body, dict) \
                or not self.reasoning_models.search(str(body.get("model", ""))):
            return None
        if "max_tokens" in body:
            return Status(400, "Unsupported parameter: 'max_tokens' is not supported with this "
                               "model. Use 'max_completion_tokens' instead.",
                          type="invalid_request_error", param="max_tokens",
                          error_code="unsupported_parameter")
        temperature = body.get("temperature", 1)
        if temperature != 1:
            return Status(400, f"Unsupported value: 'temperature' does not support "
                               f"{json.dumps(temperature)} with this model. Only the default (1) "
                               f"value is supported.",
                          type="invalid_request_error", param="temperature",
                          error_code="unsupported_value")
        return None

    def _receive(self, method: str, path: str, headers: Mapping[str, str], raw: bytes,
                 received_at: float) -> tuple[Recorded, int]:
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        authorised = headers.get("authorization") == f"Bearer {self.api_key}"
        with self._lock:
            behaviour = self._refusal(_route(path), method, body) if authorised else None
            behaviour = behaviour or self._take(_route(path), method, authorised)
            record = Recorded(method, path, headers, body, raw, received_at, behaviour)
            self.requests.append(record)
            self._counter += 1
            self._lock.notify_all()
            return record, self._counter


def _check(behaviour: object, allowed: tuple[type, ...], kind: str) -> None:
    if not isinstance(behaviour, allowed):
        names = ", ".join(t.__name__ for t in allowed)
        raise TypeError(f"{behaviour!r} is not a {kind} behaviour (one of {names})")
    if isinstance(behaviour, Hang) and behaviour.then is not None:
        _check(behaviour.then, allowed, kind)


# -- HTTP -----------------------------------------------------------------------------------------

_DISCONNECTED = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class _Drop(Exception):
    """Unwind and close the connection without finishing the answer."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: a burst of new connections (a benchmark's 100
    # model turns at once) overflows it, and each dropped SYN costs its client a 1 s resend,
    # which no real model server charges.
    request_queue_size = 256
    double: OpenAIDouble

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if error is None or isinstance(error, (*_DISCONNECTED, _Drop)):
            return
        if isinstance(error, OSError) and self.double._closing.is_set():
            return
        self.double.errors.append(error)


_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request sent to the double.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to sample from this model.", "invalid_request_error", None),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error",
          "model_not_found"),
    408: ("Request timed out.", "invalid_request_error", None),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!",
          "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}

_SPEECH_TYPES_BY_FORMAT = {
    "mp3": "audio/mpeg", "opus": "audio/opus", "aac": "audio/aac", "flac": "audio/flac",
    "wav": "audio/wav", "pcm": "audio/pcm",
}


def error_body(status: Status) -> dict[str, Any]:
    """OpenAI's error JSON for a Status behaviour."""
    message, kind, code = _DEFAULT_ERRORS.get(status.code, (
        _phrase(status.code), "server_error" if status.code >= 500 else "invalid_request_error",
        None))
    return {"error": {
        "message": status.message if status.message is not None else message,
        "type": status.type if status.type is not None else kind,
        "param": status.param,
        "code": status.error_code if status.error_code is not None else code,
    }}


def _phrase(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return f"HTTP {code}"


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _pause_until(double: OpenAIDouble, deadline: float) -> None:
    delay = deadline - time.monotonic()
    if (delay > 0 and double._closing.wait(delay)) or double._closing.is_set():
        raise _Drop


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "OpenAIDouble/1.0"
    timeout = 60  # idle keep-alive connections end after a minute

    @property
    def double(self) -> OpenAIDouble:
        return cast(_Server, self.server).double

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.double._lock:
            self.double._connections.add(self.connection)

    def finish(self) -> None:
        with self.double._lock:
            self.double._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the requests are recorded

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -- request --

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self, method: str) -> None:
        received_at = time.monotonic()
        self._headers_sent = False
        try:
            raw = self._read_body()
            headers = {name.lower(): value for name, value in self.headers.items()}
            record, number = self.double._receive(method, self.path, headers, raw, received_at)
            self._request_id = f"req_double_{number:06d}"
            self._number = number
            self._answer(record)
        except (_Drop, *_DISCONNECTED):
            self._drop()
        except OSError:
            if not self.double._closing.is_set():
                self.double.errors.append(sys.exc_info()[1] or OSError())
            self._drop()
        except Exception as error:  # a bug in the double: answer 500, keep the trace
            self.double.errors.append(error)
            if not self._headers_sent:
                with contextlib.suppress(OSError):
                    self._send_json(500, {"error": {"message": f"double failed: {error!r}",
                                                    "type": "double_error", "param": None,
                                                    "code": None}})
            self._drop()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _answer(self, record: Recorded) -> None:
        route = _route(record.path)
        if record.headers.get("authorization") != f"Bearer {self.double.api_key}":
            given = record.headers.get("authorization", "")
            message = ("You didn't provide an API key." if not given.startswith("Bearer ")
                       else "Incorrect API key provided.")
            self._send_status(Status(401, message))
        elif route == "/models" and record.method == "GET":
            self._send_json(200, {"object": "list", "data": [
                {"id": model, "object": "model", "created": 1700000000, "owned_by": "double"}
                for model in ("gpt-4o-mini", "gpt-4o-mini-tts")]})
        elif record.behaviour is None:
            self._send_status(Status(404, f"Unknown request: {record.method} {record.path}",
                                     error_code="unknown_url"))
        elif route == "/chat/completions":
            self._chat(cast(ChatBehaviour, record.behaviour), record)
        else:
            self._speech(cast(SpeechBehaviour, record.behaviour), record)

    # -- response plumbing --

    def _start(self, code: int, content_type: str, headers: Mapping[str, str] | None = None,
               length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", self._request_id)
        self.send_header("openai-processing-ms", "1")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self._headers_sent = True

    def _send_bytes(self, code: int, content_type: str, body: bytes,
                    headers: Mapping[str, str] | None = None) -> None:
        self._start(code, content_type, headers, len(body))
        self.wfile.write(body)

    def _send_json(self, code: int, value: object,
                   headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(code, "application/json", _json(value), headers)

    def _send_status(self, status: Status) -> None:
        self._send_json(status.code, error_body(status), status.headers)

    def _chunk(self, data: bytes) -> None:
        """One HTTP chunk, in one write (so one TCP segment when small)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, value: object) -> None:
        self._chunk(b"data: " + (value if isinstance(value, bytes) else _json(value)) + b"\n\n")

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _hang(self, seconds: float) -> None:
        _pause_until(self.double, time.monotonic() + seconds)

    # -- chat --

    def _chat(self, behaviour: ChatBehaviour, record: Recorded) -> None:
        while isinstance(behaviour, Hang):
            self._hang(behaviour.seconds)
            then = behaviour.then
            with self.double._lock:
                behaviour = cast(ChatBehaviour, then) if then is not None \
                    else self.double._default_chat
        if isinstance(behaviour, Status):
            self._send_status(behaviour)
            return
        if isinstance(behaviour, Raw):
            self._raw(behaviour)
            return
        reply = _Completion(record, self._number)
        if record.stream:
            self._chat_stream(behaviour, reply)
        else:
            self._chat_whole(behaviour, reply)

    def _raw(self, behaviour: Raw) -> None:
        self._start(behaviour.status, behaviour.content_type, behaviour.headers)
        start = time.monotonic()
        for i, data in enumerate(behaviour.chunks):
            _pause_until(self.double, start + i * behaviour.gap)
            if data:  # an empty HTTP chunk would end the body
                self._chunk(data)
        if not behaviour.end:
            raise _Drop
        self._end_chunks()

    def _chat_stream(self, behaviour: ChatBehaviour, reply: _Completion) -> None:
        self._start(200, "text/event-stream; charset=utf-8")
        start = time.monotonic()
        if isinstance(behaviour, Malformed):
            self._event(behaviour.body)
            self._end_chunks()
            return
        if isinstance(behaviour, (Text, Cut)):
            pieces = tokens(behaviour.text) if isinstance(behaviour, Text) else behaviour.pieces
            ttft, rate = behaviour.ttft, behaviour.tokens_per_second
        elif isinstance(behaviour, ToolCall):
            pieces, ttft, rate = tokens(behaviour.text), behaviour.ttft, None
        else:  # Empty
            pieces, ttft, rate = [], 0.0, None
        _pause_until(self.double, start + ttft)
        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        if isinstance(behaviour, ToolCall) and not pieces:
            first = {"role": "assistant", "content": None, "refusal": None,
                     "tool_calls": [reply.tool_header(behaviour)]}
        self._event(reply.chunk(first))
        for i, piece in enumerate(pieces):
            if rate:
                _pause_until(self.double, start + ttft + i / rate)
            self._event(reply.chunk({"content": piece}))
        if isinstance(behaviour, Cut):
            raise _Drop
        finish = "stop"
        if isinstance(behaviour, ToolCall):
            if pieces:
                self._event(reply.chunk({"tool_calls": [reply.tool_header(behaviour)]}))
            for part in _argument_parts(behaviour.arguments):
                self._event(reply.chunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
            finish = "tool_calls"
        self._event(reply.chunk({}, finish))
        if reply.include_usage:
            self._event(reply.usage_chunk(behaviour))
        self._event(b"[DONE]")
        self._end_chunks()

    def _chat_whole(self, behaviour: ChatBehaviour, reply: _Completion) -> None:
        if isinstance(behaviour, Malformed):
            self._send_bytes(200, "application/json", behaviour.body)
            return
        if isinstance(behaviour, (Text, Cut)):
            count = len(tokens(behaviour.text))
            rate = behaviour.tokens_per_second
            self._hang(behaviour.ttft + ((count - 1) / rate if rate and count > 1 else 0.0))
        elif isinstance(behaviour, ToolCall):
            self._hang(behaviour.ttft)
        body = _json(reply.whole(behaviour))
        if isinstance(behaviour, Cut):
            self._start(200, "application/json", length=len(body))
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            raise _Drop
        self._send_bytes(200, "application/json", body)

    # -- speech --

    def _speech(self, behaviour: SpeechBehaviour, record: Recorded) -> None:
        while isinstance(behaviour, Hang):
            self._hang(behaviour.seconds)
            then = behaviour.then
            with self.double._lock:
                behaviour = cast(SpeechBehaviour, then) if then is not None \
                    else self.double._default_speech
        if isinstance(behaviour, Status):
            self._send_status(behaviour)
            return
        fmt = record.get("response_format") or "mp3"
        text = record.get("input")
        if fmt not in _SPEECH_TYPES_BY_FORMAT:
            self._send_status(Status(400, f"Invalid value for 'response_format': {fmt!r}.",
                                     param="response_format", error_code="invalid_value"))
            return
        if not isinstance(text, str) or not text:
            self._send_status(Status(400, "Missing required parameter: 'input'.",
                                     param="input", error_code="missing_required_parameter"))
            return
        if len(text) > SPEECH_INPUT_LIMIT:
            self._send_status(Status(
                400, f"Invalid 'input': string too long. Expected a string with maximum length "
                     f"{SPEECH_INPUT_LIMIT}, but got a string with length {len(text)} instead.",
                param="input", error_code="string_too_long"))
            return
        content_type = _SPEECH_TYPES_BY_FORMAT[fmt]
        if isinstance(behaviour, Malformed):
            self._send_bytes(200, content_type, behaviour.body)
            return
        self._hang(behaviour.delay)
        body = behaviour.body if behaviour.body is not None else synthesise(fmt, text)
        self._send_bytes(200, behaviour.content_type or content_type, body)


def _argument_parts(arguments: str) -> list[str]:
    """Arguments split over several chunks (at least three when there are three characters)."""
    if not arguments:
        return []
    size = max(1, min(8, math.ceil(len(arguments) / 3)))
    return [arguments[i:i + size] for i in range(0, len(arguments), size)]


class _Completion:
    """Builds the chunks and the whole completion of one request."""

    def __init__(self, record: Recorded, number: int) -> None:
        self.id = f"chatcmpl-double{number:06d}"
        self.created = int(time.time())
        model = record.model
        self.model = model if isinstance(model, str) and model else "gpt-double"
        options = record.get("stream_options")
        self.include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.prompt_tokens = _prompt_tokens(record.messages)

    def _base(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "service_tier": "default", "system_fingerprint": "fp_double"}

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        value = self._base("chat.completion.chunk")
        value["choices"] = [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]
        if self.include_usage:
            value["usage"] = None
        return value

    def usage_chunk(self, behaviour: ChatBehaviour) -> dict[str, Any]:
        value = self._base("chat.completion.chunk")
        value["choices"] = []
        value["usage"] = self.usage(behaviour)
        return value

    @staticmethod
    def tool_header(call: ToolCall) -> dict[str, Any]:
        return {"index": 0, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": ""}}

    def usage(self, behaviour: ChatBehaviour) -> dict[str, Any]:
        completion = 0
        if isinstance(behaviour, (Text, Cut)):
            completion = len(tokens(behaviour.text))
        elif isinstance(behaviour, ToolCall):
            completion = len(tokens(behaviour.text)) + math.ceil(len(behaviour.arguments) / 4)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}

    def whole(self, behaviour: ChatBehaviour) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None,
                                   "annotations": []}
        finish = "stop"
        if isinstance(behaviour, (Text, Cut)):
            message["content"] = behaviour.text
        elif isinstance(behaviour, ToolCall):
            message["content"] = behaviour.text or None
            message["tool_calls"] = [{"id": behaviour.id, "type": "function", "function": {
                "name": behaviour.name, "arguments": behaviour.arguments}}]
            finish = "tool_calls"
        value = self._base("chat.completion")
        value["choices"] = [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": finish}]
        value["usage"] = self.usage(behaviour)
        return value


def _prompt_tokens(messages: Any) -> int:
    count = 0
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            count += len(tokens(content)) + 4
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    count += len(tokens(part["text"]))
            count += 4
    return count


# -- audio ----------------------------------------------------------------------------------------


def _derived(text: str, size: int) -> bytes:
    """`size` deterministic bytes derived from `text`."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{counter}\0{text}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def synthesise(fmt: str, text: str) -> bytes:
    """A small audio file that looks like the format (magic bytes, plausible framing) and
    depends only on `text`. wav and pcm are real silence (24 kHz, 16-bit mono, 0.1 s)."""
    silence = b"\0\0" * (SAMPLE_RATE // 10)
    if fmt == "wav":
        fmt_chunk = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2,
                                2, 16)
        data_chunk = struct.pack("<4sI", b"data", len(silence)) + silence
        return struct.pack("<4sI4s", b"RIFF", 4 + len(fmt_chunk) + len(data_chunk),
                           b"WAVE") + fmt_chunk + data_chunk
    if fmt == "pcm":
        return silence
    frames = 1 + min(len(text) // 40, 24)
    if fmt == "mp3":
        # ID3v2.4 header with an empty tag, then 128 kb/s 44.1 kHz MPEG-1 layer III frames.
        frame_size = 417
        return b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"".join(
            b"\xff\xfb\x90\x64" + _derived(f"{i}\0{text}", frame_size - 4)
            for i in range(frames))
    magic = {"opus": b"OggS\x00\x02", "aac": b"\xff\xf1\x50\x80", "flac": b"fLaC"}[fmt]
    return magic + _derived(text, 400 * frames)


def iter_sse_payloads(raw: bytes) -> Iterator[bytes]:
    """The `data:` payloads of an SSE body (a helper for tests reading raw streams)."""
    for event in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data:"):
                yield line[5:].lstrip(b" ")
