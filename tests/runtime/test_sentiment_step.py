"""The caller's mood in the pure step: scores come in on `Heard` as data, and routes, templates
and the `call.sentiment` event read them; the step scores nothing itself."""

from __future__ import annotations

from typing import Any

from engine.flows.compile import compile_flow
from engine.flows.model import Flow
from engine.runtime.context import sentiment_values
from engine.runtime.state import Caller, CallStarted, CallState, Emit, Heard, Say
from engine.runtime.step import MAX_SENTIMENTS, start_state, step

SID = "CA" + "5" * 32


def flow() -> Flow:
    data: dict[str, Any] = {
        "flow": "mood", "personality": "p", "start": "talk",
        "defaults": {"no_input": {"retries": 1, "then": "bye"},
                     "on_error": {"network": {"then": "bye"}, "rate_limit": {"then": "bye"},
                                  "ai_failure": {"then": "bye"}}},
        "nodes": {
            "talk": {"type": "ai", "instructions": "Help.", "exits": {"bye": "Done."},
                     "routes": [{"when": "sentiment_trend < -0.5 and sentiment < 0",
                                 "to": "person"}]},
            "person": {"type": "say",
                       "text": "Mood {{ sentiment }}, average {{ sentiment_avg }}.",
                       "next": "bye"},
            "bye": {"type": "hangup", "text": "Bye."}}}
    return compile_flow(data).flow


def started() -> tuple[Flow, CallState]:
    compiled = flow()
    state = start_state(compiled, "v1", SID, Caller(), "+15550001000", 0.0)
    state, _ = step(compiled, state, CallStarted(0.0))
    return compiled, state


def emitted(actions: list[Any], name: str) -> list[dict[str, Any]]:
    return [dict(a.data) for a in actions if isinstance(a, Emit) and a.name == name]


def test_no_utterance_yet_reads_as_neutral() -> None:
    assert sentiment_values(()) == {"sentiment": 0.0, "sentiment_avg": 0.0,
                                    "sentiment_trend": 0.0}


def test_the_trend_is_the_change_over_the_last_three_utterances() -> None:
    assert sentiment_values((0.9, 0.5, 0.0, -0.6)) == {
        "sentiment": -0.6, "sentiment_avg": 0.2, "sentiment_trend": -1.1}
    assert sentiment_values((0.4,))["sentiment_trend"] == 0.0
    assert sentiment_values((0.4, -0.2))["sentiment_trend"] == -0.6


def test_each_scored_utterance_is_on_its_transcript_and_a_call_sentiment_event() -> None:
    compiled, state = started()
    state, actions = step(compiled, state, Heard(1.0, "Thanks so much!", 0.9, "", 0.5))
    assert emitted(actions, "call.transcript")[0]["sentiment"] == 0.5
    assert emitted(actions, "call.sentiment") == [
        {"node": "talk", "turn": 1, "score": 0.5, "avg": 0.5, "trend": 0.0}]
    assert state.sentiments == (0.5,)


def test_a_falling_mood_takes_the_route_and_templates_read_it() -> None:
    compiled, state = started()
    for score in (0.6, 0.2):
        state, actions = step(compiled, state, Heard(1.0, "words", 0.9, "", score))
        assert state.node == "talk"  # not falling enough yet: the model answers
    state, actions = step(compiled, state, Heard(2.0, "This is awful.", 0.9, "", -0.8))
    assert state.path[-2:] == ("person", "bye")
    said = [a.text for a in actions if isinstance(a, Say)]
    assert said[0] == "Mood -0.8, average 0.0."


def test_digits_and_unscored_speech_leave_the_mood_as_it_was() -> None:
    compiled, state = started()
    state, actions = step(compiled, state, Heard(1.0, "", 0.0, "5"))
    state, more = step(compiled, state, Heard(1.0, "hola", 0.9, "", None))
    assert state.sentiments == ()
    assert emitted(actions + more, "call.sentiment") == []
    assert "sentiment" not in emitted(more, "call.transcript")[0]


def test_the_state_keeps_a_bounded_number_of_scores() -> None:
    compiled, state = started()
    for turn in range(MAX_SENTIMENTS + 5):
        state, _ = step(compiled, state, Heard(1.0, "fine", 0.9, "", 0.1 if turn else 0.9))
        state = state.__class__(**{**state.__dict__, "turn": 0, "pending": None})
    assert len(state.sentiments) == MAX_SENTIMENTS and 0.9 not in state.sentiments
