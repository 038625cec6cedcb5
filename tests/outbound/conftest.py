"""An app on the bundled flows whose Twilio REST API is a local double, and helpers to play
Twilio's side of a placed call (its webhooks, signed) against it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.settings import ENV_KEYS
from engine.simulator import HttpAnswer, SimulatedCall
from engine.web.app import create_app
from tests.support_twilio_api import TwilioApiDouble

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "5f1c0ffee0ddba11c0ffee0ddba11c0f"
BASE = "https://phoney.example"
REMINDER_FROM = "+15550006000"  # flows/reminder.yaml's numbers[0]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def api() -> Iterator[TwilioApiDouble]:
    with TwilioApiDouble(ACCOUNT_SID, AUTH_TOKEN) as double:
        yield double


def make_app(tmp_path: Path, api: TwilioApiDouble, **overrides: Any) -> Flask:
    config: dict[str, Any] = {
        "PROJECT_ROOT": str(ROOT), "STORE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_URL": api.url, "PUBLIC_BASE_URL": BASE,
        "DASHBOARD_PASSWORD": "pw", "SECRET_KEY": "test-secret", "TESTING": True,
        "SPEECH_WARMUP": False,
    }
    config.update(overrides)
    return create_app({key: value for key, value in config.items() if value is not None})


def dashboard(app: Flask) -> tuple[FlaskClient, str]:
    """A signed-in dashboard client (the password: admin) and its CSRF token."""
    client = app.test_client()
    assert client.post("/login", data={"password": "pw"}).status_code == 302
    return client, str(client.get("/api/session").get_json()["csrf_token"])


def twilio_side(app: Flask, call_sid: str, to: str, from_: str) -> SimulatedCall:
    """Twilio's webhooks of the outbound call `call_sid`, signed, into `app`."""
    client = app.test_client()

    def transport(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpAnswer:
        parts = urlsplit(url)
        answer = client.post(parts.path + ("?" + parts.query if parts.query else ""),
                             data=dict(params), headers=dict(headers),
                             base_url=f"{parts.scheme}://{parts.netloc}")
        return HttpAnswer(answer.status_code, answer.get_data(as_text=True),
                          answer.content_type)

    # Twilio calls `to` from `from_`: the callee is the webhook's `To`.
    return SimulatedCall(transport, BASE, AUTH_TOKEN, call_sid=call_sid, to=to, from_=from_,
                         account_sid=ACCOUNT_SID, extra={"Direction": "outbound-api"})
