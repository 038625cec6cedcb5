"""Logging: one handler on the root logger, JSON lines or text, every line tagged with its call.

`configure(level, fmt)` installs the handler (once per process: `create_app` calls it every time,
and a later call only changes its level and format). `fmt="json"` writes one JSON object a line
with `time`, `level`, `logger`, `message`, `call_sid`, `route` and, for a logged exception,
`exception`; anything else writes text for people:

    2025-01-15 15:00:00,123 WARNING engine.web.voice [CA0123...] /api/voice/input: ...

The call and route come from context variables: the voice blueprint binds them for each Twilio
webhook (`bind`), and a thread started for a call's work copies the context it was started in
(`contextvars.copy_context().run`), so the model's stream thread logs under the call too.

`AccessLogger` is gunicorn's logger with a cheaper access line (gunicorn.conf.py uses it): the
same line, written without the ~60-entry dictionary gunicorn builds for every request.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, TextIO

import click
from gunicorn import glogging  # type: ignore[import-untyped]  # no type hints

call_sid: ContextVar[str] = ContextVar("phoney_call_sid", default="")
route: ContextVar[str] = ContextVar("phoney_route", default="")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(call_tag)s: %(message)s"


Bound = tuple[Token[str], Token[str]]


def push(sid: str = "", path: str = "") -> Bound:
    """Tag the lines logged from here on (in this context) with `sid` and `path`."""
    return call_sid.set(sid), route.set(path)


def pop(bound: Bound) -> None:
    """Undo a `push`. One made in another context (another thread) leaves this one as is."""
    sid_token, route_token = bound
    try:
        route.reset(route_token)
        call_sid.reset(sid_token)
    except ValueError:
        pass


@contextmanager
def bind(sid: str = "", path: str = "") -> Iterator[None]:
    """Tag the lines logged inside the `with` block with `sid` and `path` (`push`), and undo
    it on the way out, whatever happens (`pop`)."""
    bound = push(sid, path)
    try:
        yield
    finally:
        pop(bound)


class ContextFilter(logging.Filter):
    """Puts the call and route in force on every record (unless the record has its own, given
    with `extra=`), so handlers' formats can use them."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Set `call_sid`, `route` and `call_tag` (" [sid] [route]", empty parts left out) on
        `record`; always True: no record is dropped."""
        sid = getattr(record, "call_sid", None) or call_sid.get()
        path = getattr(record, "route", None) or route.get()
        record.__dict__.update(call_sid=sid, route=path,
                               call_tag="".join(f" [{part}]" for part in (sid, path) if part))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line (a message's or traceback's newlines are escaped inside it)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line: time (UTC, ISO 8601 with milliseconds), level, logger,
        message, call_sid and route, plus `exception` and `stack` when the record has them."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "call_sid": getattr(record, "call_sid", "") or call_sid.get(),
            "route": getattr(record, "route", "") or route.get(),
        }
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            line["exception"] = record.exc_text
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (as `logging.lastResort` does), so a
    test's captured stderr, or one replaced after start-up, gets the lines."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr


def _handler() -> logging.Handler | None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _StderrHandler):
            return handler
    return None


def level_of(name: str | int | None) -> int:
    """A level from a name ('info', 'WARNING') or number; INFO for anything unknown."""
    if isinstance(name, int):
        return name
    text = (name or "").strip().upper()
    if text.isdigit():
        return int(text)
    found = logging.getLevelName(text or "INFO")
    return found if isinstance(found, int) else logging.INFO


def default_level() -> str:
    """INFO for a server (gunicorn, `flask run`, tests); WARNING for the other `flask`
    commands, whose output is what the user asked for."""
    context = click.get_current_context(silent=True)
    return "INFO" if context is None or context.info_name == "run" else "WARNING"


def configure(level: str | int | None = None, fmt: str | None = "text") -> logging.Handler:
    """Install (or update) Phoney's handler on the root logger, and set the root level
    (empty: `default_level()`)."""
    wanted = level_of(level or default_level())
    handler = _handler()
    if handler is None:
        handler = _StderrHandler()
        handler.addFilter(ContextFilter())
        logging.getLogger().addHandler(handler)
    handler.setLevel(wanted)
    handler.setFormatter(JsonFormatter() if (fmt or "").strip().lower() == "json"
                         else logging.Formatter(TEXT_FORMAT))
    logging.getLogger().setLevel(wanted)
    return handler


# -- gunicorn's access log ----------------------------------------------------------------------

DEFAULT_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
"""gunicorn's default `access_log_format` (Apache's combined log format)."""


def _quoted(value: str) -> str:
    return value.replace('"', '\\"')  # as gunicorn's SafeAtoms escapes every text atom


class AccessLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, whose access line costs a fifth of gunicorn's own.

    For every request gunicorn's `access` puts every environ variable and request and response
    header into a dictionary, copies it into another that escapes quotes, and formats the line
    from that; for a webhook that answers in about a millisecond that was a tenth of the
    request's time. With the default `access_log_format` this writes the very same line
    straight from the few values it holds; with any other format it is gunicorn's `access`.
    The line goes through the same `gunicorn.access` logger and handlers (and the app's log
    redaction), so where and how it is written does not change.
    """

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """Log one request's access line, as gunicorn's `access` would (nothing when the access
        log is off); an error while writing it is logged to the error log, never raised."""
        if self.cfg.access_log_format != DEFAULT_ACCESS_FORMAT:
            return super().access(resp, req, environ, request_time)  # type: ignore[no-any-return]
        if not getattr(self, "access_log_enabled", True):
            return None
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        sent = getattr(resp, "sent", None)
        line = (f"{_quoted(environ.get('REMOTE_ADDR', '-'))} - "
                f"{_quoted(self._get_user(environ) or '-')} {_quoted(self.now())} "
                f'"{_quoted(environ["REQUEST_METHOD"])} {_quoted(environ["RAW_URI"])} '
                f'{_quoted(environ["SERVER_PROTOCOL"])}" {status} '
                f"{(sent is not None and str(sent)) or '-'} "
                f'"{_quoted(environ.get("HTTP_REFERER", "-"))}" '
                f'"{_quoted(environ.get("HTTP_USER_AGENT", "-"))}"')
        try:
            self.access_log.info(line)  # no arguments: the line is not %-formatted again
        except Exception:
            self.error(traceback.format_exc())
        return None
