"""MODEL_CALLS_PER_HOUR through whole calls of the bundled receptionist, against the OpenAI double.

A request over the budget is never sent: the turn takes the model-failure path of the flow (the
fallback personality, refused too, then the apology edge to the front desk), with a `call.error`
of kind `model_budget`, and the caller never hears an application error.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from tests.ai.conftest import FRONT_DESK, call_on, events, heard_text, wait_for_warmup
from tests.doubles.openai_server import OpenAIDouble, Text
from tests.support import Clock

APOLOGY = "I'm sorry, I'm having trouble on my end right now. Let me connect you to our front desk."
ANNOUNCE = "Connecting you to the front desk now."
ANSWER = "Yes, we do whitening, and the front desk can book you in."


def error_kinds(app: Flask, call_sid: str) -> list[str]:
    return [e["kind"] for e in events(app, call_sid, "call.error")]


def test_a_turn_over_the_budget_sends_nothing_and_takes_the_apology_edge(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    app = make_app(MODEL_CALLS_PER_HOUR="1")
    wait_for_warmup(app)
    double.default_chat(Text(ANSWER))
    c = call_on(app, clock).start()
    c.say("do you do whitening")
    assert len(double.chat_requests) == 1
    mark = len(c.heard)

    c.say("and cleanings")

    assert len(double.chat_requests) == 1  # neither the turn nor its fallback was sent
    assert heard_text(app, double, c)[mark:] == [APOLOGY, ANNOUNCE]
    assert c.dialed == [FRONT_DESK]
    assert error_kinds(app, c.call_sid) == ["model_budget", "ai_failure", "ai_failure"]
    (budget,) = [e for e in events(app, c.call_sid, "call.error") if e["kind"] == "model_budget"]
    assert (budget["limit"], budget["requests"], budget["node"]) == (1, 2, "assist")
    assert all(answer.status == 200 for answer in [x.answer for x in c.exchanges])


def test_the_budget_is_shared_by_the_calls_of_every_process(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    one, two = make_app(MODEL_CALLS_PER_HOUR="2"), make_app(MODEL_CALLS_PER_HOUR="2")
    wait_for_warmup(one)
    wait_for_warmup(two)
    double.default_chat(Text(ANSWER))
    first = call_on(one, clock).start()
    second = call_on(two, clock, from_="+15550009999").start()
    first.say("do you do whitening")
    second.say("do you do whitening")
    assert len(double.chat_requests) == 2

    first.say("and cleanings")

    assert len(double.chat_requests) == 2
    assert "model_budget" in error_kinds(one, first.call_sid)
    assert first.dialed == [FRONT_DESK]


def test_off_sends_every_request(make_app: Callable[..., Flask], double: OpenAIDouble,
                                 clock: Clock) -> None:
    app = make_app(MODEL_CALLS_PER_HOUR="off")
    wait_for_warmup(app)
    double.default_chat(Text(ANSWER))
    c = call_on(app, clock).start()
    for _ in range(3):
        c.say("do you do whitening")
    assert len(double.chat_requests) == 3
    assert error_kinds(app, c.call_sid) == []
