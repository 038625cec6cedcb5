"""Reasoning models (o-series, gpt-5) refuse `max_tokens` and any `temperature` but 1: whole
calls against the OpenAI double in its reasoning-model mode, which answers those with OpenAI's
own 400 bodies.

A known family gets `max_completion_tokens` and no temperature from the first request; a model
the rules cannot know by name (a deployment's own name) is learned from its refusals, once per
process, and the caller hears the reply either way.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest
from flask import Flask

from engine.ai.parameters import ModelParameters, reasoning_family, refused_parameter
from tests.ai.conftest import call_on, events, heard_text, wait_for_warmup
from tests.doubles.openai_server import OpenAIDouble, Status, Text
from tests.support import Clock

ANSWER = "We open at nine on weekdays."


def reasoning_app(make_app: Callable[..., Flask], double: OpenAIDouble, model: str) -> Flask:
    double.reasoning_models = re.compile(r"^(o\d|gpt-5)|reasoner")
    created = make_app(OPENAI_MODEL=model)
    wait_for_warmup(created)
    return created


def sent(request: Any) -> set[str]:
    return {key for key in ("max_tokens", "max_completion_tokens", "temperature")
            if request.get(key) is not None}


@pytest.mark.parametrize("model", ["o4-mini", "gpt-5-mini"])
def test_a_reasoning_family_gets_its_parameters_from_the_first_request(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock, model: str) -> None:
    app = reasoning_app(make_app, double, model)
    double.chat(Text(ANSWER))
    c = call_on(app, clock).start()
    mark = len(c.heard)
    c.say("when do you open")

    (request,) = double.chat_requests
    assert request.model == model
    assert sent(request) == {"max_completion_tokens"}
    assert request.max_completion_tokens > 0
    assert " ".join(heard_text(app, double, c)[mark:]).startswith(ANSWER)
    assert events(app, c.call_sid, "call.error") == []


def test_an_unknown_model_is_learned_from_its_refusals_once_per_process(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    model = f"acme-reasoner-{uuid.uuid4().hex[:8]}"  # a deployment name no rule knows
    app = reasoning_app(make_app, double, model)
    double.chat(Text(ANSWER), Text("Yes, we take walk-ins."))
    c = call_on(app, clock).start()
    mark = len(c.heard)
    c.say("when do you open")

    first, second, third = double.chat_requests
    assert sent(first) == {"max_tokens", "temperature"}
    assert isinstance(first.behaviour, Status) and first.behaviour.param == "max_tokens"
    assert sent(second) == {"max_completion_tokens", "temperature"}
    assert isinstance(second.behaviour, Status) and second.behaviour.param == "temperature"
    assert sent(third) == {"max_completion_tokens"}
    assert " ".join(heard_text(app, double, c)[mark:]).startswith(ANSWER)
    assert events(app, c.call_sid, "call.error") == []

    # Remembered: the next turn, and a call on another app of this process, ask once.
    c.say("do you take walk-ins")
    other = make_app(OPENAI_MODEL=model)
    wait_for_warmup(other)
    double.chat(Text(ANSWER))
    call_on(other, clock).start().say("when do you open")
    later = double.chat_requests[3:]
    assert [sent(request) for request in later] == [{"max_completion_tokens"}] * 2
    assert all(not isinstance(request.behaviour, Status) for request in later)


def test_a_refusal_of_what_cannot_go_is_the_flows_ai_failure(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    app = make_app()
    wait_for_warmup(app)
    double.chat(*[Status(400, "Unsupported parameter: 'tools' is not supported with this "
                              "model.", param="tools", error_code="unsupported_parameter")] * 4)
    c = call_on(app, clock).start()
    c.say("when do you open")
    assert "ai_failure" in [e["kind"] for e in events(app, c.call_sid, "call.error")]
    assert all(request.tools for request in double.chat_requests)  # never sent without them


# -- the rules on their own ---------------------------------------------------------------------

def test_families_by_name() -> None:
    for model in ("o1", "o1-mini", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini",
                  "gpt-5.1", "openai/o3-mini", "O3"):
        assert reasoning_family(model), model
    for model in ("gpt-4o-mini", "gpt-4.1", "llama3.1", "gemini-2.0-flash", "omni-moderation"):
        assert not reasoning_family(model), model


def test_a_refusal_read_from_the_body_or_the_message() -> None:
    def bad_request(body: object, message: str = "bad") -> openai.BadRequestError:
        response = httpx2.Response(400, request=httpx2.Request("POST", "http://x/v1"))
        return openai.BadRequestError(message, response=response, body=body)

    assert refused_parameter(bad_request({"param": "max_tokens",
                                          "code": "unsupported_parameter"})) == "max_tokens"
    assert refused_parameter(bad_request(
        None, "Unsupported value: 'temperature' does not support 0.8 with this model.")) \
        == "temperature"
    assert refused_parameter(bad_request({"param": "messages", "code": "invalid_value"})) is None
    rules = ModelParameters()
    request = {"model": "m", "max_tokens": 10, "temperature": 0.5, "stream": True}
    retry = rules.after_refusal("e", request, bad_request({"param": "max_tokens",
                                                           "code": "unsupported_parameter"}))
    assert retry == {"model": "m", "max_completion_tokens": 10, "temperature": 0.5,
                     "stream": True}
    assert rules.fit("e", request) == retry
    assert rules.fit("other-endpoint", request) == request
