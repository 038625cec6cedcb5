"""Tools on ai nodes over <Gather>: the real `openai` SDK against the OpenAI double, and the tool
requests against a local API on real sockets. The model calls a tool, its JSON answer goes back
to the model, which then replies; wrong arguments are answered to the model and never sent; a
model that keeps calling tools is cut off after MAX_TOOL_ROUNDS; no secret reaches the model,
the store or the records."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engine.ai.tools import MAX_TOOL_ROUNDS
from tests.ai.conftest import Phone, call_on, events, heard_since, heard_text, wait_for_warmup
from tests.doubles.openai_server import OpenAIDouble, Text, ToolCall
from tests.support import Clock
from tests.support_api import Api, answer, serve_api

TOKEN = "clinic-secret-4d3c2b1a"

PERSONALITY = """\
personality: plain
name: Plain
system_prompt: You answer the phone for {{ vars.business }}.
voice: {twilio: Polly.Joanna-Neural}
examples:
  - {input: "Hello?", response: "Hello! How can I help?"}
"""

FLOW = """\
flow: clinic
personality: plain
numbers: ["+15550001000"]
vars: {business: Acme Dental}
defaults:
  no_input: {retries: 1, then: bye}
  on_error:
    network: {then: sorry}
    rate_limit: {then: sorry}
    ai_failure: {then: sorry}
    tts_failure: {voice: twilio}
start: assist
nodes:
  assist:
    type: ai
    opening: How can I help?
    instructions: Book cleanings.
    exits: {bye: The caller is done.}
    tools:
      find_slots:
        description: The free slots on a day.
        parameters:
          day: {type: string, enum: [monday, tuesday]}
        request:
          url: "BASE/slots?day={{ args.day }}"
          headers: {Authorization: "Bearer ${CLINIC_TOKEN}"}
          timeout: 3
  sorry: {type: say, text: "Sorry, I can't check that right now.", next: bye}
  bye: {type: hangup, text: Goodbye.}
"""

SLOTS = json.dumps({"slots": [{"label": "9am"}, {"label": "2pm"}]}).encode()


@pytest.fixture
def api() -> Iterator[Api]:
    with serve_api() as served:
        yield served


@pytest.fixture
def app(make_app: Callable[..., Flask], api: Api, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Flask:
    root = tmp_path / "project"
    (root / "flows").mkdir(parents=True)
    (root / "personalities").mkdir()
    (root / "flows" / "clinic.yaml").write_text(FLOW.replace("BASE", api.base), encoding="utf-8")
    (root / "personalities" / "plain.yaml").write_text(PERSONALITY, encoding="utf-8")
    monkeypatch.setenv("CLINIC_TOKEN", TOKEN)
    created = make_app(PROJECT_ROOT=str(root), DEFAULT_FLOW="clinic",
                       HTTP_ALLOW_HOSTS="127.0.0.1")
    wait_for_warmup(created)
    return created


@pytest.fixture
def phone(app: Flask, clock: Clock) -> Phone:
    def make(**options: Any) -> Any:
        return call_on(app, clock, **options)
    return make


def tool_messages(request: Any) -> list[dict[str, Any]]:
    return [message for message in request.messages if message["role"] == "tool"]


def no_secret_anywhere(app: Flask, double: OpenAIDouble, tmp_path: Path) -> None:
    for request in double.requests:
        assert TOKEN.encode() not in request.raw_body
    app.extensions["phoney"].store.close()
    for path in tmp_path.glob("phoney.db*"):
        assert TOKEN.encode() not in path.read_bytes()


def test_the_answer_goes_back_to_the_model_which_then_replies(
        app: Flask, phone: Phone, double: OpenAIDouble, api: Api, tmp_path: Path) -> None:
    api.routes["/slots"] = answer(200, SLOTS)
    double.chat(ToolCall("find_slots", '{"day": "monday"}'),
                Text("Monday at 9am is free. Shall I book it?"))
    c = phone().start()
    mark = len(c.heard)
    c.say("any time on monday?")
    assert heard_since(app, double, c, mark) == "Monday at 9am is free. Shall I book it?"
    [seen] = api.seen
    assert seen.path == "/slots?day=monday" and seen.headers["Authorization"] == f"Bearer {TOKEN}"
    first, second = double.chat_requests
    offered = {tool["function"]["name"]: tool["function"] for tool in first.tools}
    assert set(offered) == {"bye", "find_slots"}
    assert offered["find_slots"]["parameters"]["required"] == ["day"]
    [called] = [m for m in second.messages if m.get("tool_calls")]
    assert called["tool_calls"][0]["function"]["name"] == "find_slots"
    [result] = tool_messages(second)
    assert json.loads(result["content"]) == {"slots": [{"label": "9am"}, {"label": "2pm"}]}
    assert result["tool_call_id"] == called["tool_calls"][0]["id"]
    [record] = events(app, c.call_sid, "call.http")
    assert record["tool"] == "find_slots" and record["status"] == 200
    assert "${CLINIC_TOKEN}" not in json.dumps(record) and TOKEN not in json.dumps(record)
    no_secret_anywhere(app, double, tmp_path)


def test_wrong_arguments_are_answered_to_the_model_and_not_sent(
        app: Flask, phone: Phone, double: OpenAIDouble, api: Api) -> None:
    api.routes["/slots"] = answer(200, SLOTS)
    double.chat(ToolCall("find_slots", '{"day": "someday", "when": 3}'),
                ToolCall("find_slots", "{not json"),
                Text("Which day would suit you, Monday or Tuesday?"))
    c = phone().start()
    mark = len(c.heard)
    c.say("whenever")
    assert heard_since(app, double, c, mark) == "Which day would suit you, Monday or Tuesday?"
    assert api.seen == []
    *_, last = double.chat_requests
    first, second = tool_messages(last)
    assert "invalid arguments for find_slots" in first["content"]
    assert "not JSON" in second["content"]
    errors = events(app, c.call_sid, "call.error")
    assert [error["kind"] for error in errors] == ["tool", "tool"]


def test_a_failing_api_is_told_to_the_model(
        app: Flask, phone: Phone, double: OpenAIDouble, api: Api) -> None:
    api.routes["/slots"] = answer(500, b'{"error": "down"}')
    double.chat(ToolCall("find_slots", '{"day": "tuesday"}'),
                Text("I can't see the calendar right now. Can I take a message?"))
    c = phone().start()
    mark = len(c.heard)
    c.say("tuesday please")
    assert heard_since(app, double, c, mark) == ("I can't see the calendar right now. Can I "
                                                 "take a message?")
    [result] = tool_messages(double.chat_requests[-1])
    assert "the request failed (status)" in result["content"]
    [record] = events(app, c.call_sid, "call.http")
    assert record["reason"] == "status" and record["status"] == 500


def test_a_model_looping_on_a_tool_is_cut_off(
        app: Flask, phone: Phone, double: OpenAIDouble, api: Api) -> None:
    def handler(h: BaseHTTPRequestHandler) -> None:
        answer(200, SLOTS)(h)

    api.routes["/slots"] = handler
    double.default_chat(ToolCall("find_slots", '{"day": "monday"}'))
    c = phone().start()
    c.say("monday")
    assert len(api.seen) == MAX_TOOL_ROUNDS
    requests = double.chat_requests
    assert len(requests) == MAX_TOOL_ROUNDS + 1
    assert requests[-1].get("tool_choice") == "none"
    assert "tool_choice" not in requests[0].body
    # The model never answered in words: the node's ai_failure strategy speaks for it.
    assert heard_text(app, double, c)[-2:] == ["Sorry, I can't check that right now.",
                                               "Goodbye."]


def test_words_before_a_tool_call_are_spoken_and_the_answer_follows(
        app: Flask, phone: Phone, double: OpenAIDouble, api: Api) -> None:
    api.routes["/slots"] = answer(200, SLOTS)
    double.chat(ToolCall("find_slots", '{"day": "tuesday"}', text="Let me check."),
                Text("Tuesday at 2pm is free.", tokens_per_second=10))
    c = phone().start()
    mark = len(c.heard)
    c.say("tuesday?")
    assert heard_since(app, double, c, mark) == "Let me check. Tuesday at 2pm is free."
    assert [seen.path for seen in api.seen] == ["/slots?day=tuesday"]
    # The first sentence was said while the rest was still coming; the continuation said it.
    said = [(e["text"], e["final"]) for e in events(app, c.call_sid, "call.response")]
    assert said == [("Let me check.", False), ("Tuesday at 2pm is free.", True)]
