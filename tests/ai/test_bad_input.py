"""Callers and models that misbehave: the caller hears something short and sensible, and the flow
stays in control."""

from __future__ import annotations

from flask import Flask

from tests.ai.conftest import Phone, events, heard_since, heard_text, last_user_message
from tests.doubles.openai_server import OpenAIDouble, Text

ANSWER = "Sorry, I didn't quite get that. Could you say it another way?"


def test_a_caller_who_says_nothing_useful_gets_a_short_answer(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Text(ANSWER))
    c = phone().start()
    mark = len(c.heard)
    c.say("um")

    assert heard_since(app, double, c, mark) == ANSWER
    assert c.waiting.kind == "gather"


def test_silence_reprompts_without_asking_the_model(app: Flask, phone: Phone,
                                                    double: OpenAIDouble) -> None:
    c = phone().start()
    mark = len(c.heard)
    c.silence()

    assert heard_text(app, double, c)[mark:] == ["Are you still there?"]
    assert double.chat_requests == []


def test_a_2000_word_utterance_reaches_the_model_bounded_and_is_answered_briefly(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Text("That's a lot! In short, how can I help you today? "
                     "I am here to help with all of it, one thing at a time, really."))
    c = phone().start()
    mark = len(c.heard)
    c.say(" ".join(["blah"] * 2000))

    sent = last_user_message(double.chat_requests[0].messages)
    assert 0 < len(sent) <= 2000
    assert sum(len(m["content"]) for m in double.chat_requests[0].messages) < 20_000
    heard = heard_since(app, double, c, mark)
    assert heard.startswith("That's a lot!") and len(heard) <= 600
    assert c.waiting.kind == "gather"
    assert [e["kind"] for e in events(app, c.call_sid, "call.error")] == []
