"""How many dashboard event streams (`GET /api/events`) a process serves at once.

An open stream holds a server thread for up to SSE_LIFETIME (5 minutes), and gunicorn's threads
are what Twilio's webhooks wait for: a few dozen open tabs would leave a caller's webhook queued
behind them. So streams take a slot first: at most `per_session` for one signed-in session
(SSE_STREAMS_PER_SESSION, default 4: a dashboard and a few call pages) and `per_process` in all
(SSE_STREAMS_PER_PROCESS, default a quarter of GUNICORN_THREADS), which leaves most threads to
webhooks whatever the dashboards do. The counts are this process's: each gunicorn worker has its
own threads to protect.

Over a cap the stream is refused with a `Refusal` (429 for the session's own cap, 503 for the
process's, both with Retry-After); the dashboard's EventSource then reconnects later on its own
(engine/web/static/live.js backs off).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

DEFAULT_PER_SESSION = 4
DEFAULT_GUNICORN_THREADS = 64  # gunicorn.conf.py's default
PROCESS_SHARE = 4  # a quarter of the threads at most
SESSION_RETRY_AFTER = 10  # seconds: the session's other streams are still open
PROCESS_RETRY_AFTER = 5  # seconds: another worker, or a moment later, may have room

Release = Callable[[], None]
"""Gives a slot back; calling it again does nothing."""


@dataclass(frozen=True)
class Refusal:
    """Why a stream was not opened: the HTTP status, Retry-After seconds and a message."""

    status: int
    retry_after: int
    error: str


def default_process_streams(environ: Mapping[str, str]) -> int:
    """SSE_STREAMS_PER_PROCESS when it is not set: a quarter of GUNICORN_THREADS (64 when that
    is not set either, as in gunicorn.conf.py), at least one."""
    try:
        threads = int(environ.get("GUNICORN_THREADS") or DEFAULT_GUNICORN_THREADS)
    except ValueError:
        threads = DEFAULT_GUNICORN_THREADS
    return max(1, threads // PROCESS_SHARE)


class StreamSlots:
    """The process's stream slots, by session; safe from any thread."""

    def __init__(self, per_session: int = DEFAULT_PER_SESSION,
                 per_process: int = DEFAULT_GUNICORN_THREADS // PROCESS_SHARE) -> None:
        if per_session < 1 or per_process < 1:
            raise ValueError("SSE_STREAMS_PER_SESSION and SSE_STREAMS_PER_PROCESS must be at "
                             "least 1")
        self.per_session = per_session
        self.per_process = per_process
        self._lock = threading.Lock()
        self._by_session: dict[str, int] = {}
        self._open = 0

    @property
    def open(self) -> int:
        """Streams open now in this process."""
        return self._open

    def take(self, session_id: str) -> Release | Refusal:
        """A slot for one more stream of `session_id`, as the function that gives it back; or
        the refusal when the session or the process is at its cap."""
        with self._lock:
            held = self._by_session.get(session_id, 0)
            if held >= self.per_session:
                return Refusal(429, SESSION_RETRY_AFTER,
                               f"this session already has {held} event streams open (at most "
                               f"{self.per_session}); close a dashboard tab or try again later")
            if self._open >= self.per_process:
                return Refusal(503, PROCESS_RETRY_AFTER,
                               "this server has as many event streams open as it serves; "
                               "try again shortly")
            self._by_session[session_id] = held + 1
            self._open += 1
        given_back = threading.Event()

        def release() -> None:
            with self._lock:
                if given_back.is_set():
                    return
                given_back.set()
                self._open -= 1
                left = self._by_session[session_id] - 1
                if left:
                    self._by_session[session_id] = left
                else:
                    del self._by_session[session_id]

        return release
