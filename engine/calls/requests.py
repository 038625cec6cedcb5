"""The http nodes' requests, sent for the call service within a webhook's time, or beyond it.

A request is sent through the `HttpPort` (engine/actions/http.py's `HttpClient`, or a scripted
one in scenario runs). When its node has nothing to say while waiting, the webhook sends it
itself, bounded by the webhook's deadline. When it has (`say_while_waiting`), the request runs in
a thread of its own and the webhook waits only `PATIENCE` seconds for it: a slower answer is
written to the store (a blob under `http:<key>`, as streamed replies are) and whichever server
process Twilio's continuation reaches reads it from there. What is written is the answer's JSON
and its record, never a secret: the client has taken those out already.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.actions.exchange import Exchange, HttpAnswer, HttpFailure, HttpPort, HttpRequest
from engine.runtime.state import Failed, HttpAnswered, SendRequest
from engine.store import CallStore

log = logging.getLogger(__name__)

__all__ = ["MAX_KEPT", "PATIENCE", "REQUEST_BLOB", "HttpPort", "Outcome", "Requests",
           "Unconfigured", "http_request", "outcome_of"]

REQUEST_BLOB = "http:{key}"
MAX_KEPT = 1000
"""Requests of this process remembered for `wait`; past this, half of those done are dropped
(their answers stay in the store)."""
PATIENCE = 1.5
"""Seconds a webhook waits for a request whose node has a line to say meanwhile; past that
the line is said and the answer is picked up by the continuation."""


class Unconfigured:
    """The port of a service built without an HTTP client: every request is refused."""

    def send(self, request: HttpRequest, deadline: float | None = None) -> HttpAnswer:
        exchange = Exchange(request.method, request.url, None, 0.0, 0, "refused",
                            "no HTTP client is configured")
        raise HttpFailure("refused", "no HTTP client is configured", exchange)


@dataclass(frozen=True)
class Outcome:
    """What became of one request, as every process reads it (the blob `http:<key>`)."""

    ok: bool
    data: Any = None
    exchange: dict[str, Any] = field(default_factory=dict)
    detail: str = ""

    def event(self, now: float, node: str) -> HttpAnswered | Failed:
        """The event to step the call with."""
        if self.ok:
            return HttpAnswered(now, node, self.data, self.exchange)
        return Failed(now, "http", self.detail, exchange=self.exchange)

    def to_json(self) -> bytes:
        """The outcome as UTF-8 JSON, as `from_json` reads it back."""
        return json.dumps(asdict(self), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Outcome:
        """The outcome `to_json` wrote."""
        return cls(**json.loads(raw))


def outcome_of(port: HttpPort, request: HttpRequest, deadline: float | None) -> Outcome:
    """Send `request` through `port`: its answer or its failure, never an exception."""
    try:
        answer = port.send(request, deadline)
    except HttpFailure as failure:
        return Outcome(False, exchange=failure.exchange.as_dict(),
                       detail=f"{failure.reason}: {failure.detail}")
    except Exception as error:  # a broken port must not break the call: it is a failed request
        log.exception("request to %s failed inside", request.url)
        return Outcome(False, exchange=Exchange(request.method, request.url, None, 0.0, 0,
                                                "connection", "internal error").as_dict(),
                       detail=f"internal error: {type(error).__name__}")
    return Outcome(True, answer.data, answer.exchange.as_dict())


def http_request(action: SendRequest) -> HttpRequest:
    """The client's request for a step's `SendRequest`."""
    return HttpRequest(action.method, action.url, action.headers, action.body, action.timeout)


class Requests:
    """Sends requests for the call service; keeps those that outlive their webhook (see the
    module docstring) so any process can read their outcome."""

    def __init__(self, port: HttpPort, store: CallStore, poll_interval: float = 0.05) -> None:
        self.port = port
        self.store = store
        self.poll_interval = poll_interval
        self._done: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def send(self, request: HttpRequest, deadline: float | None) -> Outcome:
        """Send it now, waiting for the answer at most until `deadline`."""
        return outcome_of(self.port, request, deadline)

    def start(self, key: str, request: HttpRequest, patience: float) -> Outcome | None:
        """Send it in a thread; its outcome if it comes within `patience` seconds, else None
        (it is then kept under `key`, for `wait`)."""
        done = threading.Event()
        with self._lock:
            self._done[key] = done
            if len(self._done) > MAX_KEPT:  # answers nobody came back for (the call ended)
                for old in [k for k, event in self._done.items() if event.is_set()][:MAX_KEPT // 2]:
                    del self._done[old]
        found: list[Outcome] = []

        def run() -> None:
            outcome = outcome_of(self.port, request, None)
            found.append(outcome)
            try:
                self.store.put_blob(REQUEST_BLOB.format(key=key), outcome.to_json())
            except Exception:  # the store went away (shutdown): nobody is left to tell
                log.exception("request %s: could not keep its answer", key)
            finally:
                done.set()

        threading.Thread(target=contextvars.copy_context().run, args=(run,), daemon=True,
                         name=f"http-{key[-12:]}").start()
        if done.wait(patience) and found:
            with self._lock:
                self._done.pop(key, None)
            return found[0]
        return None

    def wait(self, key: str, timeout: float) -> Outcome | None:
        """The outcome kept under `key`, waiting at most `timeout` seconds for it: from this
        process's thread when it started it, else by polling the store. None when there is
        none by then."""
        with self._lock:
            done = self._done.get(key)
        if done is not None:
            done.wait(timeout)
        deadline = time.monotonic() + timeout
        while True:
            raw = self.store.get_blob(REQUEST_BLOB.format(key=key))
            if raw is not None:
                with self._lock:
                    self._done.pop(key, None)
                return Outcome.from_json(raw)
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_interval)
