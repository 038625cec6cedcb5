"""The call's mood in `GET /api/calls/<CallSid>`: each caller line of the transcript has its
speech's sentiment (VADER's score, the same every time), and the call.sentiment events are
among the call's events."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from engine.calls.sentiment import score
from tests.events.conftest import logged_in, simulated_call

UPSET = "This is terrible, I'm really angry."


def test_caller_lines_carry_their_sentiment(new_app: Callable[..., Flask]) -> None:
    app = new_app()
    call = simulated_call(app).start()
    call.say(UPSET)
    call.press("1")
    call.hang_up()
    detail = logged_in(app).get(f"/api/calls/{call.call_sid}").get_json()
    callers = [line for line in detail["transcript"] if line["role"] == "caller"]
    assert [line["sentiment"] for line in callers] == [score(UPSET), None]  # keys: no speech
    moods = [event["data"] for event in detail["events"] if event["name"] == "call.sentiment"]
    assert [mood["score"] for mood in moods] == [score(UPSET)]
    assert score(UPSET) is not None and score(UPSET) < -0.5  # type: ignore[operator]
