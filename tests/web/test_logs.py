"""Logs keep callers' numbers, what they say, and every configured secret out of sight.

`create_app` installs the redacting filter on the root logger and in the log record factory, so
records of every logger are masked before any handler (caplog's, or the server's stderr) sees
them. These tests drive calls, logins and failures, then read everything that was logged.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import pytest
from flask import Flask

from engine.simulator import SimulatedCall
from engine.web.security import REDACTED, SECRET, log_filter
from tests.support import client_transport
from tests.web.test_bad_input import base_params, post

CALLER = "+15557654321"
MASKED = "+1555***4321"
SAID = "my date of birth is the fourth of July and my pin is wombat"
LOCAL = "http://localhost"

SECRETS = {
    "TWILIO_AUTH_TOKEN": "twilio-token-4a1b2c3d4e5f60718293",
    "OPENAI_API_KEY": "sk-test-openai-key-9f8e7d6c5b4a39281706",
    "PUSHER_SECRET": "pusher-secret-0a9b8c7d6e5f4a3b2c1d",
    "DASHBOARD_PASSWORD": "dashboard-password-3c4d5e6f7a8b9c0d",
    "ENCRYPTION_KEY": "encryption-key-one-5e6f7a8b9c0d1e2f, encryption-key-old-7a8b9c0d1e2f3a4b",
    "SECRET_KEY": "flask-secret-key-8b9c0d1e2f3a4b5c6d7e",
}


def closed_port() -> int:
    """A local port nothing listens on: every request to it fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def everything(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    records = "\n".join(f"{record.getMessage()}\n{record.exc_text or ''}"
                        for record in caplog.records)
    return "\n".join([caplog.text, records, out, err])


def test_the_filter_masks_numbers_speech_and_secrets() -> None:
    logs = log_filter()
    logs.add_secrets(["hunter2-but-longer"])
    assert logs.clean(f"call from {CALLER} to +15550001000") == \
        f"call from {MASKED} to +1555***1000"
    assert logs.clean("From=%2B15557654321&To=x") == "From=%2B1555***4321&To=x"
    assert logs.clean(f"SpeechResult={SAID.replace(' ', '+')}&Confidence=0.9") == \
        f"SpeechResult={REDACTED}&Confidence=0.9"
    assert logs.clean(f"Heard(now=1.0, speech='{SAID}', digits='1234')") == \
        f"Heard(now=1.0, speech='{REDACTED}', digits='{REDACTED}')"
    assert logs.clean('{"text": "I need to cancel", "node": "assist"}') == \
        f'{{"text": "{REDACTED}", "node": "assist"}}'
    assert logs.clean("token hunter2-but-longer used") == f"token {SECRET} used"
    assert logs.clean("version 2.10.4, 200 OK, port 5000") == "version 2.10.4, 200 OK, port 5000"


def test_records_of_any_logger_are_masked_before_a_handler_sees_them(
        app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("some.library.deep.down").warning("From=%s SpeechResult=%r", CALLER, SAID)
    try:
        raise ValueError(f"could not reach {CALLER}")
    except ValueError:
        logging.getLogger("engine.web.voice").exception("failed for %s", CALLER)
    text = caplog.text
    assert CALLER not in text and "wombat" not in text
    assert MASKED in text and "ValueError: could not reach +1555***4321" in text
    assert all(CALLER not in record.getMessage() for record in caplog.records)


def test_a_call_logs_no_number_and_no_speech(make_app: Callable[..., Flask],
                                             caplog: pytest.LogCaptureFixture,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    app = make_app(CALLER_CALL_LIMIT="1/hour")
    caplog.set_level(logging.DEBUG)  # (after create_app, which sets LOG_LEVEL's)
    transport = client_transport(app.test_client())
    call = SimulatedCall(transport, LOCAL, "test-token", from_=CALLER).start()
    call.say(SAID)
    call.press("4321")
    call.hang_up()
    # A second call is refused (over the limit): that path logs the caller, masked.
    SimulatedCall(transport, LOCAL, "test-token", from_=CALLER).start()
    # A webhook that fails inside (an unknown CallSid of a malformed form) logs too.
    post(app.test_client(), "/api/voice/input",
         base_params(call_sid=CALLER, SpeechResult=SAID, From=CALLER))

    logged = everything(caplog, capfd)
    assert MASKED in logged  # the refusal was logged, with the number masked
    assert CALLER not in logged and "5557654321" not in logged
    assert "wombat" not in logged and "fourth of July" not in logged


def test_no_secret_is_ever_logged(make_app: Callable[..., Flask],
                                  caplog: pytest.LogCaptureFixture,
                                  capfd: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    app = make_app(**SECRETS, OPENAI_BASE_URL=f"{dead}/v1", TWILIO_ACCOUNT_SID="AC" + "1" * 32,
                   TWILIO_API_URL=dead, PUSHER_APP_ID="12345", PUSHER_KEY="pusher-key",
                   PUSHER_CLUSTER="eu", PUBLISHER=False, SPEECH_WARMUP=False,
                   CALLER_CALL_LIMIT="2/hour")
    caplog.set_level(logging.DEBUG)  # (after create_app, which sets LOG_LEVEL's)
    transport = client_transport(app.test_client())
    token = SECRETS["TWILIO_AUTH_TOKEN"]

    # Calls whose model and speech both fail (nothing listens at OPENAI_BASE_URL) ...
    call = SimulatedCall(transport, LOCAL, token, from_=CALLER).start()
    call.say(SAID)
    SimulatedCall(transport, LOCAL, token, from_=CALLER).start()
    SimulatedCall(transport, LOCAL, token, from_=CALLER).start()  # refused: over the limit
    # ... webhooks signed with the wrong token, and with none ...
    assert post(app.test_client(), "/api/incoming-call", base_params(),
                token="not-the-token").status_code == 403
    assert app.test_client().post("/api/voice/input", data=base_params()).status_code == 403
    # ... wrong and right logins, and call control that cannot reach Twilio.
    client = app.test_client()
    for password in ("wrong", SECRETS["DASHBOARD_PASSWORD"][:-1], "also wrong"):
        assert client.post("/login", data={"password": password}).status_code == 401
    assert client.post("/login", data={"password": SECRETS["DASHBOARD_PASSWORD"]}
                       ).status_code == 302
    csrf = client.get("/api/session").get_json()["csrf_token"]
    ended = client.post("/api/end-call", data={"CallSid": call.call_sid},
                        headers={"X-CSRF-Token": csrf})
    assert ended.status_code in (409, 502)
    client.post("/pusher/auth", data={"socket_id": "123.456", "channel_name": "private-calls"},
                headers={"X-CSRF-Token": csrf})
    client.get("/api/calls")
    # Even a careless log line of ours would not show them.
    logging.getLogger("engine.web.app").warning(
        "settings: %s", {key: value for key, value in SECRETS.items()})

    logged = everything(caplog, capfd)
    assert "engine.web" in logged  # the capture did see the app's lines
    for name, value in SECRETS.items():
        for part in [value, *value.split(",")]:
            assert part.strip() not in logged, f"{name} appears in the logs"
    assert SECRET in logged


def test_a_generated_dashboard_password_is_shown_once_a_configured_one_never(
        make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO)
    make_app(DASHBOARD_PASSWORD="my-own-dashboard-password")
    shown = everything(caplog, capfd)
    assert "my-own-dashboard-password" not in shown
    assert "Dashboard password" not in shown

    generated = make_app(DASHBOARD_PASSWORD="").extensions["phoney"].dashboard_password
    assert generated and generated in everything(caplog, capfd)  # on purpose: to sign in


def test_the_filter_is_on_the_root_logger(app: Flask) -> None:
    assert log_filter() in logging.getLogger().filters


