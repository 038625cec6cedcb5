"""gunicorn's access log through `engine.logs.AccessLogger`: the very line gunicorn's own logger
writes, for any request, and gunicorn's own `access` for any other format."""

from __future__ import annotations

import datetime
import runpy
from pathlib import Path
from typing import Any

import pytest
from gunicorn.config import Config  # type: ignore[import-untyped]
from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from engine.logs import DEFAULT_ACCESS_FORMAT, AccessLogger

ROOT = Path(__file__).resolve().parents[1]


class Response:
    def __init__(self, status: Any = "200 OK", sent: int | None = 612) -> None:
        self.status = status
        self.sent = sent
        self.headers = [("Content-Type", "text/xml; charset=utf-8")]


class Request:
    headers = (("HOST", "phoney.example"), ("USER-AGENT", "TwilioProxy/1.1"))


def environ(**changes: str) -> dict[str, Any]:
    base = {"REQUEST_METHOD": "POST", "RAW_URI": "/api/voice/input?step=1",
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "PATH_INFO": "/api/voice/input", "QUERY_STRING": "step=1",
            "HTTP_USER_AGENT": "TwilioProxy/1.1"}
    return {**base, **changes}


def lines(logger_class: type[Logger], tmp_path: Path, calls: list[tuple[Any, dict[str, Any]]],
          access_format: str | None = None) -> list[str]:
    cfg = Config()
    out = tmp_path / f"{logger_class.__name__}.log"
    cfg.set("accesslog", str(out))
    cfg.set("errorlog", str(tmp_path / "error.log"))
    if access_format is not None:
        cfg.set("access_log_format", access_format)
    logger = logger_class(cfg)
    logger.now = lambda: "[07/Dec/2026:16:00:00 +0000]"
    for response, env in calls:
        logger.access(response, Request(), env, datetime.timedelta(microseconds=2345))
    for handler in logger.access_log.handlers:
        handler.flush()
    return out.read_text().splitlines()


CASES = [
    (Response(), environ()),
    (Response("403 FORBIDDEN", sent=0), environ(RAW_URI="/api/incoming-call")),
    (Response(200, sent=None), environ(HTTP_REFERER='https://x.example/"quoted"')),
    (Response(), environ(HTTP_USER_AGENT='agent "with" quotes and 100% sure')),
    (Response(), environ(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")),  # user:pass
    (Response(), {k: v for k, v in environ().items() if k not in ("REMOTE_ADDR",
                                                                  "HTTP_USER_AGENT")}),
]


def test_the_line_is_gunicorns_own(tmp_path: Path) -> None:
    ours = lines(AccessLogger, tmp_path, CASES)
    theirs = lines(Logger, tmp_path, CASES)
    assert ours == theirs
    assert len(ours) == len(CASES)
    assert ours[0] == ('127.0.0.1 - - [07/Dec/2026:16:00:00 +0000] '
                       '"POST /api/voice/input?step=1 HTTP/1.1" 200 612 "-" "TwilioProxy/1.1"')
    assert " user " in ours[4]


@pytest.mark.parametrize("access_format", ['%(h)s %(s)s %(D)s "%({x-twilio-signature}i)s"',
                                           '%(r)s %(L)s'])
def test_another_format_is_left_to_gunicorn(tmp_path: Path, access_format: str) -> None:
    assert lines(AccessLogger, tmp_path, CASES, access_format) == \
        lines(Logger, tmp_path, CASES, access_format)


def test_no_access_log_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config()
    cfg.set("errorlog", str(tmp_path / "error.log"))  # and no accesslog: gunicorn's default
    logger = AccessLogger(cfg)
    written: list[str] = []
    monkeypatch.setattr(logger.access_log, "info", lambda *args: written.append(str(args)))
    logger.access(Response(), Request(), environ(), datetime.timedelta(microseconds=1))
    assert written == []


def test_gunicorn_conf_uses_it_with_the_default_format() -> None:
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    assert settings["logger_class"] == "engine.logs.AccessLogger"
    assert settings.get("access_log_format", DEFAULT_ACCESS_FORMAT) == DEFAULT_ACCESS_FORMAT
    assert Config().settings["access_log_format"].get() == DEFAULT_ACCESS_FORMAT
