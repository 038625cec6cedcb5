"""The values of one request to the business's API: what is asked, what came back, the record.

Plain values with no I/O, so the call service and the model responder can pass requests and
answers around (and tests can make them) without the HTTP client (`engine.actions.http`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

Reason = Literal["refused", "timeout", "connection", "status", "bad_json", "too_large"]
"""Why a request gave no usable answer; a flow sees every one as the error kind `http`."""


@dataclass(frozen=True)
class HttpRequest:
    """A request as a flow declares it: templates rendered, `${NAME}` references still in."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    timeout: float = 5.0


@dataclass(frozen=True)
class Exchange:
    """What the call's record keeps of one request: no secret, no body."""

    method: str
    url: str
    status: int | None
    elapsed_ms: float
    size: int
    reason: Reason | None = None
    detail: str | None = None
    redirects: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The exchange as the JSON an event carries."""
        return {"method": self.method, "url": self.url, "status": self.status,
                "elapsed_ms": round(self.elapsed_ms, 1), "size": self.size,
                "reason": self.reason, "detail": self.detail, "redirects": list(self.redirects)}


@dataclass(frozen=True)
class HttpAnswer:
    """A successful answer: its status, its JSON (None for an empty body) and its record."""

    status: int
    data: Any
    exchange: Exchange


class HttpFailure(Exception):
    """A request that did not give a usable JSON answer; the flow's error kind is `http`."""

    kind = "http"

    def __init__(self, reason: Reason, detail: str, exchange: Exchange) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.exchange = exchange


class HttpPort(Protocol):
    """Sends one request and reads its JSON answer (engine.actions.http.HttpClient, or the
    scenario runner's engine.actions.scripted.ScriptedHttp)."""

    def send(self, request: HttpRequest, deadline: float | None = None) -> HttpAnswer:
        """The answer by `deadline` (a `time.monotonic()` time), or HttpFailure."""
