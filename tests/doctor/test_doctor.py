"""`flask doctor` against the local doubles (the OpenAI double, the Pusher double) and with
broken settings: what works is `ok`, what is broken is `FAIL` with what to fix, exit 1 then.

The command reads the environment as `flask` leaves it, so each test sets the environment
(`clean_environment` keeps the developer's own out) and invokes the command in process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine.doctor import doctor_command
from tests.conftest import ROOT
from tests.doubles.openai_server import OpenAIDouble, Status, Text, ToolCall
from tests.doubles.pusher_server import PusherDouble

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "0123456789abcdef" * 2
PING = ToolCall("ping", '{"ok": true}', text="Hello.")


@pytest.fixture
def openai_double() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(api_key="test-key") as server:
        yield server
    assert server.errors == []


@pytest.fixture
def pusher_double() -> Iterator[PusherDouble]:
    with PusherDouble() as server:
        yield server


@pytest.fixture
def environment(clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                openai_double: OpenAIDouble, pusher_double: PusherDouble) -> dict[str, str]:
    values = {"PROJECT_ROOT": str(ROOT), "STORE_URL": f"sqlite:///{tmp_path / 'doctor.db'}",
              "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": TOKEN,
              "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": openai_double.base_url,
              "PUSHER_APP_ID": pusher_double.app_id, "PUSHER_KEY": pusher_double.key,
              "PUSHER_SECRET": pusher_double.secret, "PUSHER_HOST": pusher_double.url}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def doctor(monkeypatch: pytest.MonkeyPatch, **changes: str) -> Result:
    for key, value in changes.items():
        monkeypatch.setenv(key, value)
    return CliRunner().invoke(doctor_command, [])


def lines(result: Result, part: str) -> list[str]:
    return [line for line in result.output.splitlines() if re.match(rf"\S+\s+{part}\s", line)]


def test_everything_works_against_the_doubles(environment: dict[str, str],
                                              monkeypatch: pytest.MonkeyPatch,
                                              openai_double: OpenAIDouble,
                                              pusher_double: PusherDouble) -> None:
    openai_double.chat(PING)
    result = doctor(monkeypatch)

    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    assert all(line.startswith("ok") for part in ("settings", "flows", "store", "twilio",
                                                 "model", "speech", "pusher")
               for line in lines(result, part)), result.output
    assert "streams its reply" in result.output and "calls tools" in result.output
    (request,) = openai_double.chat_requests
    assert request.stream is True and request.tools[0]["function"]["name"] == "ping"
    assert len(openai_double.speech_requests) == 1
    (event,) = pusher_double.events
    assert event.channel == "private-phoney-doctor"
    assert result.output.rstrip().endswith("Nothing is broken.")
    assert TOKEN not in result.output and pusher_double.secret not in result.output


def test_a_reasoning_model_is_asked_as_calls_ask_it(environment: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    openai_double: OpenAIDouble) -> None:
    openai_double.reasoning_models = re.compile(r"^(o\d|gpt-5)")
    openai_double.chat(PING)
    result = doctor(monkeypatch, OPENAI_MODEL="o4-mini")
    assert result.exit_code == 0, result.output
    (request,) = openai_double.chat_requests
    assert request.max_completion_tokens and request.max_tokens is None


def test_a_model_that_calls_no_tool_and_a_missing_speech_endpoint_are_broken(
        environment: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        openai_double: OpenAIDouble) -> None:
    openai_double.chat(Text("Hello there."))
    openai_double.speech(Status(404, "Unknown request: POST /v1/audio/speech"))
    result = doctor(monkeypatch)

    assert result.exit_code == 1
    (tools,) = [line for line in lines(result, "model") if line.startswith("FAIL")]
    assert "did not call the tool" in tools and "function calling" in tools
    (speech,) = lines(result, "speech")
    assert speech.startswith("FAIL") and "404" in speech
    assert "2 things to fix" in result.output


def test_an_unreachable_model_is_named_with_the_setting_to_check(
        environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    result = doctor(monkeypatch, OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert result.exit_code == 1
    assert any("OPENAI_BASE_URL" in line for line in lines(result, "model"))


def test_wrong_model_key(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    result = doctor(monkeypatch, OPENAI_API_KEY="wrong-key")
    (model,) = lines(result, "model")
    assert model.startswith("FAIL") and "401" in model and "OPENAI_API_KEY" in model


def test_soketi_style_refusal_in_a_200_is_a_failure(
        environment: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        openai_double: OpenAIDouble) -> None:
    with PusherDouble(errors_in_body=True) as soketi:
        openai_double.chat(PING)
        result = doctor(monkeypatch, PUSHER_HOST=soketi.url, PUSHER_APP_ID=soketi.app_id,
                        PUSHER_KEY=soketi.key, PUSHER_SECRET="not-the-secret")
        assert soketi.events == []
    assert result.exit_code == 1
    (pusher,) = lines(result, "pusher")
    assert pusher.startswith("FAIL") and "code 401" in pusher


def test_wrong_pusher_secret(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                             openai_double: OpenAIDouble) -> None:
    openai_double.chat(PING)
    result = doctor(monkeypatch, PUSHER_SECRET="not-the-secret")
    (pusher,) = lines(result, "pusher")
    assert pusher.startswith("FAIL") and "PUSHER_SECRET" in pusher
    assert "not-the-secret" not in result.output


def test_broken_settings_are_each_named_and_the_rest_still_checked(
        environment: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        openai_double: OpenAIDouble) -> None:
    openai_double.chat(PING)
    result = doctor(monkeypatch, PUSHER_APP_ID="my-app", SESSION_HOURS="twelve",
                    TWILIO_ACCOUNT_SID="AC123", TWILIO_AUTH_TOKEN="secret",
                    STORE_URL="postgres://db/phoney")

    assert result.exit_code == 1
    settings = lines(result, "settings")
    assert [line.split()[2].split("=")[0] for line in settings] == [
        "SESSION_HOURS", "PUSHER_APP_ID", "STORE_URL"]
    assert all(line.startswith("FAIL") and "write" in line for line in settings)
    assert lines(result, "store")[0].startswith("FAIL")
    twilio = lines(result, "twilio")
    assert any("TWILIO_AUTH_TOKEN" in line and "32 hex" in line for line in twilio)
    assert any("TWILIO_ACCOUNT_SID" in line and "AC and 32 hex" in line for line in twilio)
    assert lines(result, "pusher")[0].startswith("--")  # not tried with a bad app id
    assert lines(result, "model")[0].startswith("ok")  # what can be checked still is
    assert "Traceback" not in result.output


def test_nothing_set_up_is_not_broken_but_the_missing_token_is(
        clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = doctor(monkeypatch, PROJECT_ROOT=str(ROOT),
                    STORE_URL=f"sqlite:///{tmp_path / 'd.db'}")
    assert [line.split()[0] for line in lines(result, "model")] == ["--"]
    assert [line.split()[0] for line in lines(result, "pusher")] == ["--"]
    assert result.exit_code == 1  # TWILIO_AUTH_TOKEN: every webhook would be refused
    assert "TWILIO_AUTH_TOKEN is not set" in result.output
