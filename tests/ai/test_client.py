"""One OpenAI client per process, configured by OPENAI_API_KEY and OPENAI_BASE_URL; the model
comes from the personality, else OPENAI_MODEL."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from engine.ai.model import ModelResponder, shared_client
from tests.ai.conftest import Phone, call_on, events, wait_for_warmup
from tests.doubles.openai_server import OpenAIDouble, Status
from tests.support import Clock


def test_model_and_speech_requests_carry_the_configured_key_to_the_configured_endpoint(
        phone: Phone, double: OpenAIDouble) -> None:
    c = phone().start()
    c.say("do you do whitening")

    chat = double.chat_requests
    assert len(chat) == 1
    assert chat[0].headers["authorization"] == "Bearer test-key"
    assert chat[0].stream is True
    assert double.speech_requests, "the reply was not spoken with OpenAI speech"
    assert {r.headers["authorization"] for r in double.speech_requests} == {"Bearer test-key"}


def test_one_client_per_process_shared_by_the_model_and_speech(
        app: Flask, make_app: Callable[..., Flask], double: OpenAIDouble) -> None:
    responder = app.extensions["phoney"].call_service.responder
    assert isinstance(responder, ModelResponder)
    warmup = app.extensions["phoney"].warmup
    assert warmup.synthesizer.client is responder.client
    assert shared_client("test-key", double.base_url) is responder.client
    # Another app in the same process (a test, a CLI command) reuses the pooled client.
    other = make_app().extensions["phoney"].call_service.responder
    assert other.client is responder.client
    # The SDK's 600 s default and its own retries are off: the call path decides both.
    assert responder.client.max_retries == 0


def test_the_model_is_the_configured_default_unless_the_personality_names_one(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    app = make_app(OPENAI_MODEL="gpt-house-default")
    wait_for_warmup(app)
    c = call_on(app, clock).start()
    # friendly (no model of its own) answers first; a 400 sends the turn to the fallback
    # personality, professional, whose file says `model: gpt-4o-mini`.
    double.chat(Status(400))
    c.say("do you take walk-ins")

    models = [r.model for r in double.chat_requests]
    assert models == ["gpt-house-default", "gpt-4o-mini"]
    assert {e["personality"] for e in events(app, c.call_sid, "call.response")} == \
        {"professional"}
