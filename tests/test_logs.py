"""Logs: JSON lines or text, every line logged while a webhook is handled tagged with its call.

The calls go through the in-process transport; stderr (where the handler writes) is read back
with `capsys`. One test drives the model through the OpenAI double, whose stream thread logs the
failure it met: that line carries the call too.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from engine import logs
from engine.simulator import SimulatedCall
from tests.doubles.openai_server import OpenAIDouble, Status
from tests.support import AUTH_TOKEN, client_transport

Capture = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """These tests change the process's log level and format: put them back afterwards."""
    root = logging.getLogger()
    level = root.level
    handlers = list(root.handlers)
    ours = [(h, h.level, h.formatter) for h in handlers if isinstance(h, logs._StderrHandler)]
    yield
    root.setLevel(level)
    for handler, handler_level, formatter in ours:
        handler.setLevel(handler_level)
        handler.setFormatter(formatter)
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)


def phone(app: Flask, **options: Any) -> SimulatedCall:
    """A call to `app` through the in-process transport."""
    return SimulatedCall(client_transport(app.test_client()), "http://localhost", AUTH_TOKEN,
                         **options)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


def test_every_line_logged_during_a_calls_webhooks_is_json_with_its_call_sid(
        make_app: Callable[..., Flask], capsys: Capture, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    capsys.readouterr()  # start-up lines are not the call's
    c = phone(app).start()
    c.say("what are your hours")
    # A stale webhook (logged at INFO) and a failing one (an exception, logged with its text).
    c.post("http://localhost/api/voice/input?step=0", {"SpeechResult": "hello"})
    service = app.extensions["phoney"].call_service

    def broken(*args: Any, **kwargs: Any) -> str:
        logging.getLogger("tests.logs").info("about to fail")
        raise RuntimeError("the call service broke")

    monkeypatch.setattr(service, "advance", broken)
    c.post("http://localhost/api/voice/input", {"SpeechResult": "anyone there"})
    lines = json_lines(capsys.readouterr().err)

    assert len(lines) >= 3
    for line in lines:
        assert set(line) >= {"time", "level", "logger", "message", "call_sid", "route"}, line
        assert line["call_sid"] == c.call_sid, line
        assert line["route"].startswith("/api/"), line
    assert any("stale webhook" in line["message"] for line in lines)
    failed = [line for line in lines if "exception" in line]
    assert len(failed) == 1
    assert failed[0]["level"] == "ERROR" and failed[0]["route"] == "/api/voice/input"
    assert "RuntimeError: the call service broke" in failed[0]["exception"]
    assert {"logger": "tests.logs", "message": "about to fail"}.items() <= next(
        line for line in lines if line["logger"] == "tests.logs").items()


def test_lines_outside_a_webhook_carry_no_call(make_app: Callable[..., Flask],
                                               capsys: Capture) -> None:
    phone(make_app(LOG_FORMAT="json")).start()
    capsys.readouterr()
    logging.getLogger("tests.logs").warning("after the webhook")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["call_sid"] == "" and line["route"] == ""
    assert line["level"] == "WARNING" and line["message"] == "after the webhook"


def test_a_malformed_call_sid_is_not_put_in_the_lines(make_app: Callable[..., Flask],
                                                      capsys: Capture) -> None:
    app = make_app(LOG_FORMAT="json")
    capsys.readouterr()
    call = phone(app, call_sid="CA" + "0" * 32 + "\nforged")
    call.post("http://localhost/api/incoming-call")
    lines = json_lines(capsys.readouterr().err)
    assert lines and all(line["call_sid"] == "" for line in lines)
    assert any("malformed CallSid" in line["message"] for line in lines)


def test_the_model_threads_lines_carry_the_call(make_app: Callable[..., Flask],
                                                capsys: Capture) -> None:
    with OpenAIDouble(api_key="test-key") as double:
        app = make_app(LOG_FORMAT="json", OPENAI_API_KEY="test-key",
                       OPENAI_BASE_URL=double.base_url, SPEECH_WARMUP=False)
        double.default_chat(Status(400))
        capsys.readouterr()
        c = phone(app).start()
        c.say("do you do whitening")
        lines = json_lines(capsys.readouterr().err)
    failed = [line for line in lines if "model call failed" in line["message"]]
    assert failed, lines
    assert all(line["call_sid"] == c.call_sid for line in failed)
    assert all(line["route"] == "/api/voice/input" for line in failed)


def test_text_lines_name_the_call_and_route(make_app: Callable[..., Flask],
                                            capsys: Capture) -> None:
    c = phone(make_app()).start()  # LOG_FORMAT unset: text
    capsys.readouterr()
    c.post("http://localhost/api/voice/input?step=0", {"SpeechResult": "hello"})  # stale
    text = capsys.readouterr().err
    (line,) = [line for line in text.splitlines() if "stale webhook" in line]
    assert f" INFO engine.calls.service [{c.call_sid}] [/api/voice/input]: " in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_log_level_is_respected(make_app: Callable[..., Flask], capsys: Capture) -> None:
    make_app(LOG_LEVEL="warning", LOG_FORMAT="json")
    capsys.readouterr()
    logging.getLogger("tests.logs").info("quiet")
    logging.getLogger("tests.logs").warning("loud")
    assert [line["message"] for line in json_lines(capsys.readouterr().err)] == ["loud"]


def test_several_apps_share_one_handler(make_app: Callable[..., Flask], capsys: Capture) -> None:
    for _ in range(3):
        make_app(LOG_FORMAT="json")  # create_app each time
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs._StderrHandler)]
    assert len(ours) == 1
    capsys.readouterr()
    logging.getLogger("tests.logs").warning("once")
    assert len(json_lines(capsys.readouterr().err)) == 1


def test_bind_tags_a_block_and_threads_started_in_it_with_a_copied_context() -> None:
    import contextvars

    seen: list[tuple[str, str]] = []

    def work() -> None:
        seen.append((logs.call_sid.get(), logs.route.get()))

    sid = "CA" + "ab" * 16
    with logs.bind(sid, "/api/voice/input"):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(work,))
        thread.start()
        thread.join()
    work()
    assert seen == [(sid, "/api/voice/input"), ("", "")]


@pytest.mark.parametrize("name, level", [("debug", logging.DEBUG), ("ERROR", logging.ERROR),
                                         ("10", 10), ("", logging.INFO),
                                         ("nonsense", logging.INFO)])
def test_level_names(name: str, level: int) -> None:
    assert logs.level_of(name) == level


def test_the_default_level_is_quieter_for_commands_other_than_run() -> None:
    import click

    assert logs.default_level() == "INFO"  # no command: a WSGI server, or a test
    with click.Context(click.Command("run"), info_name="run"):
        assert logs.default_level() == "INFO"
    with click.Context(click.Command("validate"), info_name="validate"):
        assert logs.default_level() == "WARNING"
