"""A scripted API for scenario files: the call service's HTTP port, replayed.

`ScriptedHttp` answers each request the flow sends (an http node's or a tool's) with the next
scripted entry: a status and its JSON, or a failure of one of the client's reasons. It keeps a
record of every request, so the scenario runner can say which one had no answer scripted (such a
request fails as a `connection` failure, and the call goes on as it would with a dead API) and
which entries were never used. No socket is opened and no secret is read: `${NAME}` stays as
written.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from engine.actions.exchange import Exchange, HttpAnswer, HttpFailure, HttpRequest, Reason
from engine.flows.scenarios import HttpScript


@dataclass(frozen=True)
class Sent:
    """One request the flow sent, and the entry that answered it (None: none was scripted)."""

    method: str
    url: str
    answered_with: HttpScript | None


class ScriptedHttp:
    """The HTTP port of a scenario: each request takes the next scripted entry."""

    def __init__(self) -> None:
        self.queue: deque[HttpScript] = deque()
        self.sent: list[Sent] = []
        self._lock = threading.Lock()  # a tool's request may come from the model's thread

    def script(self, entries: Iterable[HttpScript]) -> None:
        """Answers for the coming requests, in order."""
        with self._lock:
            self.queue.extend(entries)

    def unused(self) -> list[HttpScript]:
        """The scripted entries no request has taken yet, in order."""
        with self._lock:
            return list(self.queue)

    def clear(self) -> None:
        """Drop the entries not taken yet (`sent` is kept)."""
        with self._lock:
            self.queue.clear()

    def send(self, request: HttpRequest, deadline: float | None = None) -> HttpAnswer:
        """The next entry's answer, or HttpFailure for a failure entry, a status of 400 or more,
        or no entry left."""
        with self._lock:
            entry = self.queue.popleft() if self.queue else None
            self.sent.append(Sent(request.method.upper(), request.url, entry))

        def failure(reason: Reason, detail: str, status: int | None = None) -> HttpFailure:
            return HttpFailure(reason, detail, Exchange(
                request.method.upper(), request.url, status, 0.0, 0, reason, detail))

        if entry is None:
            raise failure("connection", "no answer was scripted for this request")
        if entry.error is not None:
            reason: Reason = entry.error  # type: ignore[assignment]  # the schema's enum
            raise failure(reason, entry.detail or f"scripted {entry.error}")
        if entry.status >= 400:
            raise failure("status", entry.detail or f"HTTP {entry.status}", entry.status)
        size = len(repr(entry.json)) if entry.json is not None else 0
        return HttpAnswer(entry.status, entry.json, Exchange(
            request.method.upper(), request.url, entry.status, 0.0, size))
