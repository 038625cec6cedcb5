"""The analysis lane of a running app: when a call of a flow with `analysis` ends, the model
(the local OpenAI double, through the real SDK) fills it off the call path, the result is the
call's `call.analysis` event and `analysis` in `GET /api/calls/<CallSid>`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from flask import Flask

from engine.events.analysis_sink import ANALYSIS_EVENT
from engine.web.after_call import EXTENSION, AnalysisLane
from tests.ai.conftest import call_on, events, wait_for_warmup
from tests.doubles.openai_server import Hang, OpenAIDouble, Text
from tests.support import Clock

TRIAGE = "+15550003000"
FAST = {"poll_interval": 0.02}
ANSWER = {"summary": "The caller asked about their bill and was sent to billing.",
          "reason": "billing", "resolved": False, "callback_requested": False}


def wait_until(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def lane_of(app: Flask) -> AnalysisLane:
    found: AnalysisLane = app.extensions[EXTENSION]
    return found


def login(app: Flask) -> object:
    client = app.test_client()
    assert client.post("/login", data={"password": "test-password"}).status_code == 302
    return client


def test_an_ended_call_is_analysed_and_its_analysis_served(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    app = make_app(ANALYSIS=True, ANALYSIS_OPTIONS=FAST)
    wait_for_warmup(app)
    try:
        call = call_on(app, clock, to=TRIAGE)
        call.start()
        double.chat(Text(json.dumps(ANSWER)))
        call.say("I have a question about my bill.")
        call.hang_up()
        assert wait_until(lambda: bool(events(app, call.call_sid, ANALYSIS_EVENT)))
        [analysis] = events(app, call.call_sid, ANALYSIS_EVENT)
        assert analysis["status"] == "ok"
        assert analysis["fields"] == {key: ANSWER[key] for key in
                                      ("reason", "resolved", "callback_requested")}
        [request] = [r for r in double.chat_requests if r.get("response_format")]
        assert "Caller: I have a question about my bill." in request.get("messages")[-1]["content"]
        body = login(app).get(f"/api/calls/{call.call_sid}").get_json()  # type: ignore[attr-defined]
        assert body["analysis"]["summary"] == ANSWER["summary"]
        assert body["analysis"]["status"] == "ok"
    finally:
        lane_of(app).stop()


def test_a_slow_model_never_holds_up_a_call(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    app = make_app(ANALYSIS=True, ANALYSIS_OPTIONS=FAST)
    wait_for_warmup(app)
    try:
        double.default_chat(Hang(20.0))  # every analysis request: the model takes its time
        first = call_on(app, clock, to=TRIAGE)
        first.start()
        first.say("Billing please.")
        started = time.monotonic()
        first.hang_up()
        assert wait_until(lambda: any(r.get("response_format") for r in double.chat_requests))
        second = call_on(app, clock, to=TRIAGE)
        second.start()
        second.say("Sales please.")
        second.hang_up()
        # Analysing on the call path would hold each hang-up for the model's 20 s.
        assert time.monotonic() - started < 5.0
        assert events(app, first.call_sid, ANALYSIS_EVENT) == []
    finally:
        double.close()  # cut the hanging answer short
        lane_of(app).stop()


def test_a_call_of_a_flow_without_analysis_is_left_alone(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    app = make_app(ANALYSIS=True, ANALYSIS_OPTIONS=FAST)
    wait_for_warmup(app)
    try:
        call = call_on(app, clock)  # the receptionist declares no analysis
        call.start()
        call.hang_up()
        lane = lane_of(app)
        assert wait_until(lambda: lane.publisher.caught_up())
        assert events(app, call.call_sid, ANALYSIS_EVENT) == []
        assert not any(r.get("response_format") for r in double.chat_requests)
        body = login(app).get(f"/api/calls/{call.call_sid}").get_json()  # type: ignore[attr-defined]
        assert body["analysis"] is None
    finally:
        lane_of(app).stop()


def test_offline_the_call_gets_a_plain_summary_and_null_fields(
        make_app: Callable[..., Flask], clock: Clock) -> None:
    app = make_app(ANALYSIS=True, ANALYSIS_OPTIONS=FAST, OPENAI_API_KEY="")
    try:
        call = call_on(app, clock, to=TRIAGE)
        call.start()
        call.hang_up()  # before the caller said anything
        assert wait_until(lambda: bool(events(app, call.call_sid, ANALYSIS_EVENT)))
        [analysis] = events(app, call.call_sid, ANALYSIS_EVENT)
        assert analysis["status"] == "empty"
        assert analysis["summary"].startswith("A ")
        assert "the caller said nothing" in analysis["summary"]
        assert set(analysis["fields"].values()) == {None}
    finally:
        lane_of(app).stop()
