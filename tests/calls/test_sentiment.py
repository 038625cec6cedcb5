"""The call service scores each caller utterance with VADER (offline) before the step reads it."""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.calls.sentiment import MAX_SCORED_CHARS, score
from engine.runtime.state import Heard
from tests.calls.conftest import Desk, call_sid, ringing
from tests.calls.fakes import reply


def test_scores_are_vaders_in_range_and_the_same_every_time() -> None:
    happy = score("Thank you so much, that is wonderful!")
    angry = score("This is ridiculous, I'm really angry and frustrated.")
    assert happy is not None and angry is not None
    assert 0.5 < happy <= 1.0 and -1.0 <= angry < -0.5
    assert score("This is ridiculous, I'm really angry and frustrated.") == angry
    assert score("   ") == 0.0


def test_other_languages_are_not_scored() -> None:
    assert score("Es terrible, estoy muy enfadado", "es-US") is None


def test_two_thousand_emoji_score_quickly_and_within_range() -> None:
    started = time.perf_counter()
    value = score("😡" * 2000 + " awful")
    assert value is not None and -1.0 <= value <= 1.0
    assert time.perf_counter() - started < 0.5  # only MAX_SCORED_CHARS are read
    assert len("😡" * 2000) > MAX_SCORED_CHARS


def test_the_service_records_the_score_of_what_the_caller_said(
        make_desk: Callable[..., Desk]) -> None:
    desk = make_desk()
    sid = call_sid(40)
    desk.service.incoming(ringing(sid), None, desk.key())
    desk.responder.script.append(reply("I'm sorry to hear that."))
    state = desk.store.get_state(sid)
    assert state is not None
    said = "This is terrible, nothing works and I'm furious."
    desk.service.advance(sid, Heard(desk.clock(), said, 0.9, ""), state.step, desk.key())
    [event] = desk.events(sid, "call.sentiment")
    assert event.data["score"] == score(said) and event.data["turn"] == 1
    [transcript] = desk.events(sid, "call.transcript")
    assert transcript.data["sentiment"] == score(said)
    after = desk.store.get_state(sid)
    assert after is not None and after.sentiments == (score(said),)
