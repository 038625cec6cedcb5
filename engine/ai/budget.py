"""How long the current webhook has been running, on a monotonic clock.

Twilio waits 15 s for an answer whatever the calls' clock says. That clock (`create_app(clock=)`)
is the calls' *now*, which tests freeze on a weekday morning and which a wall-clock adjustment can
move, so deadlines and latency timings are measured here instead: from when the call service
began handling the webhook, with `time.monotonic`. The start travels in a context variable, so
the model responder and the voicing can see it without widening the `Responder` port.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_began: ContextVar[float | None] = ContextVar("phoney_webhook_began", default=None)


@contextmanager
def webhook() -> Iterator[float]:
    """Time a webhook from now; a nested one keeps the outer start (it is the same request)."""
    began = _began.get()
    if began is not None:
        yield began
        return
    token = _began.set(time.monotonic())
    try:
        yield _began.get() or 0.0
    finally:
        _began.reset(token)


def began() -> float:
    """When the current webhook began (monotonic); now, outside of one."""
    found = _began.get()
    return time.monotonic() if found is None else found


def elapsed() -> float:
    """Seconds since the current webhook began; 0 outside of one."""
    found = _began.get()
    return 0.0 if found is None else time.monotonic() - found
