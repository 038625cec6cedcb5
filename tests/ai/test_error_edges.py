"""The error edges of the bundled receptionist, one whole call each, against the OpenAI double.

network: retried with backoff, then the apology edge to the front desk; rate_limit: the hold node,
then the same utterance again, answered once; ai_failure: the fallback personality once, then the
apology; tts_failure: the same words with the personality's Twilio voice. Every failure is a
`call.error` event with its kind.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from flask import Flask

from tests.ai.conftest import (
    FRONT_DESK,
    Phone,
    call_on,
    events,
    heard_text,
    last_user_message,
)
from tests.doubles.openai_server import (
    Cut,
    Empty,
    Hang,
    Malformed,
    OpenAIDouble,
    Status,
    Text,
)
from tests.support import Clock

APOLOGY = "I'm sorry, I'm having trouble on my end right now. Let me connect you to our front desk."
ANNOUNCE = "Connecting you to the front desk now."
ANSWER = "Yes, we do whitening, and the front desk can book you in."


def error_kinds(app: Flask, call_sid: str) -> list[str]:
    return [e["kind"] for e in events(app, call_sid, "call.error")]


def responses(app: Flask, call_sid: str) -> list[str]:
    return [e["text"] for e in events(app, call_sid, "call.response")]


# -- network -----------------------------------------------------------------------------------

def test_network_errors_within_the_retries_are_retried_and_the_reply_heard(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Status(500), Status(503), Text(ANSWER))
    c = phone().start()
    mark = len(c.heard)
    c.say("do you do whitening")

    assert heard_text(app, double, c)[mark:] == [ANSWER]
    assert c.waiting.kind == "gather"
    assert error_kinds(app, c.call_sid) == ["network", "network"]
    assert [last_user_message(r.messages) for r in double.chat_requests] == \
        ["do you do whitening"] * 3
    assert responses(app, c.call_sid) == [ANSWER]


@pytest.mark.parametrize("failure", [Status(500), Status(502), Cut("Hello there", keep=0)],
                         ids=["500", "502", "cut"])
def test_persistent_network_errors_take_the_apology_edge_to_the_front_desk(
        app: Flask, phone: Phone, double: OpenAIDouble, failure: Status | Cut) -> None:
    double.default_chat(failure)
    c = phone().start()
    mark = len(c.heard)
    c.say("do you do whitening")

    assert len(double.chat_requests) == 4  # the first try and `retry: 3`
    assert error_kinds(app, c.call_sid) == ["network"] * 4
    assert heard_text(app, double, c)[mark:] == [APOLOGY, ANNOUNCE]
    assert c.waiting.kind == "dial" and c.dialed == [FRONT_DESK]
    edges = [(e["edge"], e["node"]) for e in events(app, c.call_sid, "call.node")]
    assert ("error:network", "apology") in edges


def test_persistent_timeouts_take_the_apology_edge(tight_app: Callable[..., Flask],
                                                   clock: Clock, double: OpenAIDouble) -> None:
    app = tight_app(webhook_budget=2.0, first_sentence_budget=0.6)
    double.default_chat(Hang(20))
    c = call_on(app, clock).start()
    mark = len(c.heard)
    c.say("do you do whitening")

    assert set(error_kinds(app, c.call_sid)) == {"network"}
    assert len(double.chat_requests) >= 2  # retried while the webhook had time for it
    assert heard_text(app, double, c)[mark:] == [APOLOGY, ANNOUNCE]
    assert c.dialed == [FRONT_DESK]


# -- rate_limit --------------------------------------------------------------------------------

def test_a_rate_limit_holds_then_retries_the_same_utterance_and_answers_it_once(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Status(429, headers={"retry-after": "3"}), Text(ANSWER))
    c = phone().start()
    mark = len(c.exchanges)
    heard_mark = len(c.heard)
    c.say("do you do whitening")

    assert heard_text(app, double, c)[heard_mark:] == ["One moment please.", ANSWER]
    bodies = [exchange.answer.body for exchange in c.exchanges[mark:]]
    assert "<Pause" in bodies[0] and "/api/voice/resume" in bodies[0]  # hold, then come back
    assert [urlsplit_path(e.url) for e in c.exchanges[mark + 1:]] == \
        ["/api/voice/resume"] * (len(bodies) - 1)
    first, retried = double.chat_requests
    assert last_user_message(first.messages) == "do you do whitening"
    assert retried.messages == first.messages  # the same question, the hold line left out
    assert error_kinds(app, c.call_sid) == ["rate_limit"]
    assert responses(app, c.call_sid) == [ANSWER]  # answered once, not twice
    edges = [(e["edge"], e["node"]) for e in events(app, c.call_sid, "call.node")]
    assert ("error:rate_limit", "hold") in edges
    assert c.waiting.kind == "gather"


def test_a_short_rate_limit_is_retried_in_the_same_webhook(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Status(429, headers={"retry-after": "0.2"}), Text(ANSWER))
    c = phone().start()
    mark = len(c.heard)
    c.say("do you do whitening")

    assert heard_text(app, double, c)[mark:] == [ANSWER]
    assert error_kinds(app, c.call_sid) == ["rate_limit"]
    assert len(double.chat_requests) == 2


def urlsplit_path(url: str) -> str:
    return urlsplit(url).path


# -- ai_failure --------------------------------------------------------------------------------

@pytest.mark.parametrize("failure", [Status(400), Malformed(), Empty()],
                         ids=["400", "malformed", "empty"])
def test_an_unusable_answer_is_answered_by_the_fallback_personality(
        app: Flask, phone: Phone, double: OpenAIDouble,
        failure: Status | Malformed | Empty) -> None:
    double.chat(failure, Text(ANSWER))
    c = phone().start()
    mark = len(c.heard)
    c.say("do you do whitening")

    assert heard_text(app, double, c)[mark:] == [ANSWER]
    first, second = double.chat_requests
    assert "friendly voice" in first.messages[0]["content"]
    assert "professional voice" in second.messages[0]["content"]
    assert last_user_message(second.messages) == "do you do whitening"
    assert error_kinds(app, c.call_sid) == ["ai_failure"]
    (response,) = events(app, c.call_sid, "call.response")
    assert response["personality"] == "professional"
    # The fallback is for that turn only: the next one is the friendly personality again.
    c.say("thanks, and where are you")
    assert "friendly voice" in double.chat_requests[2].messages[0]["content"]


@pytest.mark.parametrize("failures", [(Status(400), Malformed()), (Empty(), Empty())],
                         ids=["400-then-malformed", "empty-twice"])
def test_when_the_fallback_fails_too_the_call_takes_the_apology_edge(
        app: Flask, phone: Phone, double: OpenAIDouble,
        failures: tuple[Status | Malformed | Empty, ...]) -> None:
    double.chat(*failures)
    c = phone().start()
    mark = len(c.heard)
    c.say("do you do whitening")

    assert len(double.chat_requests) == 2
    assert error_kinds(app, c.call_sid) == ["ai_failure", "ai_failure"]
    assert heard_text(app, double, c)[mark:] == [APOLOGY, ANNOUNCE]
    assert c.dialed == [FRONT_DESK]


# -- tts_failure -------------------------------------------------------------------------------

def test_a_speech_failure_speaks_the_same_words_with_the_twilio_voice(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    c = phone().start()
    double.chat(Text(ANSWER))
    double.default_speech(Status(500))
    mark = len(c.heard)
    c.say("do you do whitening")

    assert [(h.text, h.voice, h.audio_url) for h in c.heard[mark:]] == \
        [(ANSWER, "Polly.Joanna-Neural", "")]
    (error,) = events(app, c.call_sid, "call.error")
    assert error["kind"] == "tts_failure" and error["node"] == "assist"
    assert [e for e in events(app, c.call_sid, "call.node")
            if e["edge"] == "error:tts_failure"]
    assert c.waiting.kind == "gather"  # the call goes on
    # Static prompts were warmed before the outage: they still play OpenAI audio.
    assert c.heard[0].audio_url


def test_speech_that_is_not_audio_is_a_tts_failure(app: Flask, phone: Phone,
                                                   double: OpenAIDouble) -> None:
    c = phone().start()
    double.chat(Text(ANSWER))
    double.default_speech(Malformed(b"<html>oops</html>"))
    c.say("do you do whitening")

    assert (c.heard[-1].text, c.heard[-1].voice) == (ANSWER, "Polly.Joanna-Neural")
    assert error_kinds(app, c.call_sid) == ["tts_failure"]
