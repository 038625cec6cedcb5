"""Deadlines: a model that hangs longer than the webhook's budget still gets the caller an answer
well inside Twilio's 15 s, and the call takes the network edge."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from flask import Flask

from tests.ai.conftest import FRONT_DESK, Phone, events, heard_text
from tests.doubles.openai_server import Audio, Hang, OpenAIDouble, Text

BUDGET, FIRST_SENTENCE = 2.0, 1.5
TWILIO_LIMIT = 15.0


@pytest.fixture
def app(tight_app: Callable[..., Flask]) -> Flask:
    """The app of these tests: a model with tighter deadlines than the defaults."""
    return tight_app(webhook_budget=BUDGET, first_sentence_budget=FIRST_SENTENCE)


def test_a_hanging_model_is_answered_in_time_and_takes_the_network_edge(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.default_chat(Hang(30))
    c = phone().start()
    mark = len(c.heard)
    started = time.monotonic()
    c.say("do you do whitening")
    took = time.monotonic() - started

    answer = c.exchanges[-1].answer
    assert answer.status == 200
    assert answer.seconds < TWILIO_LIMIT / 2
    assert took < BUDGET + 3.0  # the budget bounds the wait, whatever the SDK's timeout
    # ... and the model was given its time: the budget is real time, not the calls' clock
    # (which the tests hold still on a weekday morning).
    assert len(double.chat_requests) >= 1
    assert took >= FIRST_SENTENCE * 0.9
    errors = events(app, c.call_sid, "call.error")
    assert errors and {e["kind"] for e in errors} == {"network"}
    taken = [e for e in events(app, c.call_sid, "call.node") if e["edge"] == "error:network"
             and e["node"] == "apology"]
    assert taken, "the network edge to the apology was not taken"
    heard = heard_text(app, double, c)[mark:]
    assert heard[0].startswith("I'm sorry, I'm having trouble on my end right now.")
    assert c.waiting.kind == "dial" and c.dialed == [FRONT_DESK]


def test_a_model_slower_than_the_first_sentence_budget_but_inside_the_webhook_is_retried(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Hang(FIRST_SENTENCE + 3), Text("Yes, we do whitening."))
    c = phone().start()
    started = time.monotonic()
    c.say("do you do whitening")

    assert time.monotonic() - started < BUDGET + 3.0
    # Either the retry fitted in the budget and was heard, or the network edge was taken:
    # never silence, never Twilio's application error.
    assert c.waiting.kind in ("gather", "dial")
    assert all(e["kind"] == "network" for e in events(app, c.call_sid, "call.error"))


def test_hanging_speech_falls_back_to_twilio_in_time(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.default_speech(Hang(30, then=Audio()))
    double.chat(Text("Yes, we do whitening, and much more."))
    c = phone().start()
    mark = len(c.heard)
    started = time.monotonic()
    c.say("do you do whitening")

    assert time.monotonic() - started < TWILIO_LIMIT - 2
    assert [(h.text, h.voice) for h in c.heard[mark:]] == [
        ("Yes, we do whitening, and much more.", "Polly.Joanna-Neural")]
    assert [e["kind"] for e in events(app, c.call_sid, "call.error")] == ["tts_failure"]
