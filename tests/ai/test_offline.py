"""With no OPENAI_API_KEY the offline responder answers, Twilio voices speak, and every reply is
marked offline in the events."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask

from engine.ai.responder import OfflineResponder
from tests.ai.conftest import FRONT_DESK, call_on, events
from tests.doubles.openai_server import OpenAIDouble
from tests.support import Clock


@pytest.fixture
def offline_app(make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> Flask:
    with caplog.at_level(logging.WARNING, logger="engine.web.app"):
        created = make_app(OPENAI_API_KEY="", OPENAI_BASE_URL="")
    assert "OPENAI_API_KEY is not set" in caplog.text  # says so in the log
    return created


def test_the_offline_responder_answers_from_the_personality_and_marks_it(
        offline_app: Flask, clock: Clock, double: OpenAIDouble) -> None:
    assert isinstance(offline_app.extensions["phoney"].call_service.responder,
                      OfflineResponder)
    assert offline_app.extensions["phoney"].warmup is None
    c = call_on(offline_app, clock).start()
    c.say("are you open on saturdays")

    reply = c.heard[-1]
    assert reply.voice == "Polly.Joanna-Neural" and not reply.audio_url
    assert reply.text.startswith("Good question!")  # friendly's example
    (response,) = events(offline_app, c.call_sid, "call.response")
    assert response["offline"] is True
    (timing,) = events(offline_app, c.call_sid, "call.timing")
    assert timing["offline"] is True
    state = offline_app.extensions["phoney"].store.get_state(c.call_sid)
    assert state is not None and state.offline is True
    assert double.requests == []  # nothing went to any model or speech endpoint


def test_the_offline_responder_takes_exits_by_their_words(offline_app: Flask,
                                                          clock: Clock) -> None:
    c = call_on(offline_app, clock).start()
    c.say("I would rather leave a message")
    assert c.waiting.kind == "record"
    c2 = call_on(offline_app, clock).start()
    c2.say("I need to book an appointment please")
    assert c2.dialed == [FRONT_DESK]


def test_the_offline_responder_says_something_sensible_to_nonsense(offline_app: Flask,
                                                                  clock: Clock) -> None:
    c = call_on(offline_app, clock).start()
    c.say("blorp zibble")
    assert "ask for a person" in c.heard[-1].text
    assert c.waiting.kind == "gather"
