"""One request to the business's API, its JSON answer, and the record of it without secrets.

`HttpClient.send` is the only place a call's `http` nodes and `ai` tools reach the network
(DESIGN.md section 8.5). What it promises:

- **Only allowed places.** The URL's host must pass `HostPolicy.host_refusal`; the connection is
  made by a network backend that resolves the host itself, refuses it unless every address
  passes `HostPolicy.address_refusal`, and connects to the address it checked (no second DNS
  answer). Redirects are followed (at most MAX_REDIRECTS, only from http(s) to http(s)) and each
  hop is checked the same way; headers holding a `${NAME}` are not sent to another origin.
- **Within a deadline.** The request's own timeout (at most MAX_TIMEOUT seconds) and the caller's
  deadline, whichever comes first, bound connecting, sending and every read; the answer is
  given up between reads once the time is past.
- **Bounded answers.** At most MAX_BYTES of body are read: a longer one (by Content-Length, or
  as it arrives) fails as `too_large` without reading the rest.
- **Failures by reason.** `HttpFailure.reason` is `refused`, `timeout`, `connection`, `status`
  (>= 400, or a redirect it would not follow), `bad_json` or `too_large`; the flow sees all
  of them as the error kind `http`.
- **No secrets kept.** `${NAME}` is expanded only into the bytes sent (engine/actions/secrets);
  the `Exchange` recorded with the answer or the failure holds the URL as the flow wrote it and
  nothing the environment gave, and error details and the answer's JSON have the values taken
  back out.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore2

from engine.actions.exchange import Exchange, HttpAnswer, HttpFailure, HttpRequest, Reason
from engine.actions.hosts import Address, HostPolicy, parse_address
from engine.actions.secrets import MissingSecret, Secrets, references

MAX_TIMEOUT = 10.0
"""Seconds a request may take at most, whatever the flow says (a webhook has 15 in all)."""
MAX_BYTES = 1 << 20
"""Bytes of an answer read at most: what a phone call can use is far less."""
MAX_REDIRECTS = 3
"""Redirects followed at most, each checked as the first request was."""
USER_AGENT = "Phoney"
_REDIRECTS = (301, 302, 303, 307, 308)

__all__ = ["MAX_BYTES", "MAX_REDIRECTS", "MAX_TIMEOUT", "Exchange", "HttpAnswer", "HttpClient",
           "HttpFailure", "HttpRequest", "Reason", "Resolver", "resolve"]

Resolver = Callable[[str, int], Sequence[Address]]
"""A host name and port to its addresses (a DNS lookup; tests give their own answers)."""


class _Refused(Exception):
    """Raised by the network backend when the policy refuses the addresses it found."""


def resolve(host: str, port: int) -> list[Address]:
    """The host's addresses from the system's resolver, each once, in the resolver's order."""
    found: list[Address] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = parse_address(str(sockaddr[0]))
        if address is not None and address not in found:
            found.append(address)
    return found


class _CheckedBackend(httpcore2.NetworkBackend):
    """httpcore's own sockets, connected only to addresses the policy allows."""

    def __init__(self, policy: HostPolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._sockets = httpcore2.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore2.NetworkStream:
        literal = parse_address(host)
        try:
            addresses = [literal] if literal is not None else list(self._resolver(host, port))
        except OSError as error:
            raise httpcore2.ConnectError(f"{host}: {error}") from None
        refusal = self._policy.address_refusal(host, addresses)
        if refusal:
            raise _Refused(refusal)
        last: Exception | None = None
        for address in addresses:
            try:
                return self._sockets.connect_tcp(str(address), port, timeout, local_address,
                                                 socket_options)
            except httpcore2.ConnectError as error:
                last = error
        raise last or httpcore2.ConnectError(f"{host}: no address answered")

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None,
                            ) -> httpcore2.NetworkStream:
        raise _Refused("unix sockets are not reachable from a flow")

    def sleep(self, seconds: float) -> None:
        self._sockets.sleep(seconds)


@dataclass
class _Attempt:
    """The state of one `send`: where it is, when it must end, what it has seen."""

    request: HttpRequest
    secrets: Secrets
    used: list[str]
    started: float
    ends: float
    url: str
    method: str
    redirects: list[str] = field(default_factory=list)
    status: int | None = None
    size: int = 0

    def exchange(self, reason: Reason | None = None, detail: str | None = None) -> Exchange:
        return Exchange(
            method=self.request.method.upper(), url=self.request.url, status=self.status,
            elapsed_ms=(time.monotonic() - self.started) * 1000, size=self.size,
            reason=reason,
            detail=None if detail is None else self.secrets.redact(detail, self.used)[:300],
            redirects=tuple(self.secrets.redact(url, self.used) for url in self.redirects))

    def fail(self, reason: Reason, detail: str) -> HttpFailure:
        return HttpFailure(reason, self.secrets.redact(detail, self.used),
                           self.exchange(reason, detail))


class HttpClient:
    """Sends `HttpRequest`s under a `HostPolicy`, with `${NAME}` read from `secrets`.

    Thread-safe: one client (and its pool of kept-alive connections) serves every call of a
    process.
    """

    def __init__(self, policy: HostPolicy, secrets: Secrets, resolver: Resolver = resolve,
                 max_bytes: int = MAX_BYTES, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.policy = policy
        self.secrets = secrets
        self.max_bytes = max_bytes
        self._clock = clock
        self._pool = httpcore2.ConnectionPool(
            network_backend=_CheckedBackend(policy, resolver), max_connections=50,
            keepalive_expiry=30.0)

    def close(self) -> None:
        """Close the kept-alive connections."""
        self._pool.close()

    def send(self, request: HttpRequest, deadline: float | None = None) -> HttpAnswer:
        """The request's JSON answer, or HttpFailure; `deadline` is a `time.monotonic()` time
        the answer must come by (the webhook's), besides the request's own timeout."""
        started = self._clock()
        ends = started + max(0.0, min(request.timeout, MAX_TIMEOUT))
        if deadline is not None:
            ends = min(ends, deadline)
        used = sorted({name for text in (request.url, request.body or "",
                                         *(value for _, value in request.headers))
                       for name in references(text)})
        attempt = _Attempt(request, self.secrets, used, started, ends, request.url,
                           request.method.upper())
        try:
            body = None if request.body is None else self.secrets.expand(request.body).encode()
            url = self.secrets.expand(request.url)
            headers = [(name, self.secrets.expand(value)) for name, value in request.headers]
        except MissingSecret as missing:
            raise attempt.fail("refused", str(missing)) from None
        secret_headers = {name.lower() for name, value in request.headers if references(value)}
        origin = _origin(url)
        while True:
            refusal = self._url_refusal(url)
            if refusal:
                raise attempt.fail("refused", refusal)
            sent = headers if _origin(url) == origin else [
                (name, value) for name, value in headers if name.lower() not in secret_headers]
            status, location, data = self._exchange(attempt, url, sent, body)
            if status in _REDIRECTS and location:
                if len(attempt.redirects) >= MAX_REDIRECTS:
                    raise attempt.fail("status", f"more than {MAX_REDIRECTS} redirects")
                url = urljoin(url, location)
                attempt.redirects.append(url)
                if status == 303 or (status in (301, 302) and attempt.method == "POST"):
                    attempt.method, body = "GET", None
                continue
            if status >= 300:
                raise attempt.fail("status", f"HTTP {status}")
            return HttpAnswer(status, data, attempt.exchange())

    def _url_refusal(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (a port that is not a number raises here)
        except ValueError as error:
            return f"not a URL ({error})"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{url!r} is not an http(s) URL"
        return self.policy.host_refusal(parts.hostname)

    def _exchange(self, attempt: _Attempt, url: str, headers: list[tuple[str, str]],
                  body: bytes | None) -> tuple[int, str | None, Any]:
        """One hop: its status, its Location, and its JSON (read only when it is not a
        redirect)."""
        left = attempt.ends - self._clock()
        if left <= 0:
            raise attempt.fail("timeout", "no time left before the deadline")
        sent = [("User-Agent", USER_AGENT), ("Accept", "application/json"), *headers]
        if body is not None and not any(name.lower() == "content-type" for name, _ in headers):
            sent.append(("Content-Type", "application/json"))
        timeouts = {"connect": left, "read": left, "write": left, "pool": left}
        try:
            with self._pool.stream(attempt.method, url, headers=sent, content=body,
                                   extensions={"timeout": timeouts}) as response:
                attempt.status = response.status
                found = dict((name.decode("latin-1").lower(), value.decode("latin-1"))
                             for name, value in response.headers)
                if response.status in _REDIRECTS and found.get("location"):
                    return response.status, found["location"], None
                if response.status >= 400:
                    raise attempt.fail("status", f"HTTP {response.status}")
                length = found.get("content-length", "")
                if length.isdigit() and int(length) > self.max_bytes:
                    raise attempt.fail("too_large", f"{length} bytes (at most {self.max_bytes})")
                chunks: list[bytes] = []
                for chunk in response.iter_stream():
                    attempt.size += len(chunk)
                    if attempt.size > self.max_bytes:
                        raise attempt.fail("too_large", f"over {self.max_bytes} bytes")
                    if self._clock() > attempt.ends:
                        raise attempt.fail("timeout", "the answer was still coming at the deadline")
                    chunks.append(chunk)
                return response.status, None, _json(attempt, b"".join(chunks), found)
        except _Refused as refused:
            raise attempt.fail("refused", str(refused)) from None
        except httpcore2.TimeoutException as error:
            raise attempt.fail("timeout", f"{type(error).__name__} after "
                                          f"{attempt.exchange().elapsed_ms:.0f} ms") from None
        except (httpcore2.NetworkError, httpcore2.ProtocolError, OSError) as error:
            raise attempt.fail("connection", f"{type(error).__name__}: {error}") from None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _json(attempt: _Attempt, body: bytes, headers: dict[str, str]) -> Any:
    if not body.strip():
        return None
    try:
        if attempt.used:
            # An API that echoes what it was sent (a header, a query) must not carry a secret
            # into vars, the store or the model: its values are written as ${NAME} again.
            return json.loads(attempt.secrets.redact(body.decode("utf-8"), attempt.used))
        return json.loads(body)
    except ValueError:
        kind = headers.get("content-type", "no content type").split(";")[0]
        raise attempt.fail("bad_json", f"the answer is not JSON ({kind}, {len(body)} bytes)"
                           ) from None
