"""The call service on its own: no Flask, no HTTP, its ports faked (tests/calls/fakes.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.calls.limits import CALLER_REFUSED, LIMIT_GOODBYE
from engine.calls.service import EMPTY_ANSWER, UNKNOWN_CALL
from engine.runtime.state import Heard, Silence
from tests.calls.conftest import CALLER, Desk, call_sid, ringing
from tests.calls.fakes import elements, fail, reply, spoken


def answered(desk: Desk, sid: str) -> str:
    return desk.service.incoming(ringing(sid), None, desk.key())


def say(desk: Desk, sid: str, text: str = "", digits: str = "") -> str:
    state = desk.store.get_state(sid)
    assert state is not None
    return desk.service.advance(sid, Heard(desk.clock(), text, 0.9, digits), state.step,
                                desk.key())


# -- incoming calls ------------------------------------------------------------------------------

def test_an_incoming_call_is_greeted_and_listened_to(desk: Desk) -> None:
    sid = call_sid(1)
    twiml = answered(desk, sid)
    assert spoken(twiml) == ["Welcome to the desk."]
    assert "Gather" in elements(twiml)
    assert 'action="/api/voice/input?step=1"' in twiml
    state = desk.store.get_state(sid)
    assert state is not None and (state.node, state.step, state.flow_id) == ("talk", 1, "desk")
    names = [event.name for event in desk.events(sid)]
    assert names == ["call.start", "call.say", "call.node"]
    # The recorder's observers heard of exactly what was stored, once.
    assert [event.name for event in desk.observed] == names


def test_callback_urls_carry_the_public_base_url(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(public_base_url="https://phone.example.com/")
    twiml = answered(desk, call_sid(1))
    assert 'action="https://phone.example.com/api/voice/input?step=1"' in twiml


def test_a_repeated_webhook_gets_the_stored_answer_and_steps_nothing(desk: Desk) -> None:
    sid = call_sid(2)
    first = desk.service.incoming(ringing(sid), None, "same")
    events = desk.events(sid)
    again = desk.service.incoming(ringing(sid), None, "same")
    assert again == first
    assert desk.events(sid) == events
    state = desk.store.get_state(sid)
    assert state is not None and state.step == 1


def test_concurrent_duplicates_step_the_call_once(desk: Desk) -> None:
    sid = call_sid(3)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: desk.service.incoming(ringing(sid), None, "dup"),
                                range(8)))
    assert len(set(answers)) == 1
    assert len(desk.events(sid, "call.start")) == 1
    state = desk.store.get_state(sid)
    assert state is not None and state.step == 1


def test_concurrent_different_answers_to_one_question_step_once(desk: Desk) -> None:
    sid = call_sid(4)
    answered(desk, sid)
    desk.responder.script.extend(reply("Sure.") for _ in range(4))
    gate = threading.Event()
    desk.responder.gate = gate

    def answer(index: int) -> str:
        return desk.service.advance(sid, Heard(desk.clock(), f"question {index}", 0.9), 1,
                                    f"key-{index}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(answer, index) for index in range(4)]
        # All four have read the call at step 1 and wait on the model: now let them race.
        deadline = time.monotonic() + 30
        while len(desk.responder.asked) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        answers = [future.result() for future in futures]
    assert len(desk.events(sid, "call.transcript")) == 1
    assert len(desk.events(sid, "call.response")) == 1
    state = desk.store.get_state(sid)
    assert state is not None
    # One question heard and answered, whichever won: greeting, question, reply.
    assert [(line.role, line.text.startswith("question")) for line in state.history] == [
        ("agent", False), ("caller", True), ("agent", False)]
    # The losers are told to come back, and then hear where the call is.
    assert sum("Sure." in text for text in answers) == 1
    assert all("Redirect" in elements(text) for text in answers if "Sure." not in text)


def test_an_unknown_call_gets_a_safe_goodbye(desk: Desk) -> None:
    twiml = desk.service.advance(call_sid(5), Silence(desk.clock()), 1, desk.key())
    assert spoken(twiml) == [UNKNOWN_CALL]
    assert "Hangup" in elements(twiml)


def test_a_call_to_no_flow_is_apologised_to_and_recorded(make_desk: Callable[..., Desk]
                                                         ) -> None:
    desk = make_desk()
    sid = call_sid(6)
    twiml = desk.service.incoming(ringing(sid), "nosuchflow", desk.key())
    assert "Hangup" in elements(twiml)
    [error] = desk.events(sid, "call.error")
    assert error.data["kind"] == "flow"
    assert [event.name for event in desk.observed] == ["call.error"]


# -- stale steps ---------------------------------------------------------------------------------

def test_an_answer_to_a_question_the_call_moved_past_is_not_heard(desk: Desk) -> None:
    sid = call_sid(7)
    answered(desk, sid)
    desk.responder.script.append(reply("Happy to help."))
    say(desk, sid, "hello")  # step 2 now
    late = desk.service.advance(sid, Heard(desk.clock(), "stale words", 0.9), 1, desk.key())
    assert "Gather" in elements(late)
    transcripts = [event.data["speech"] for event in desk.events(sid, "call.transcript")]
    assert transcripts == ["hello"]
    assert [pending for _, pending in desk.responder.asked] == ["hello"]


# -- model rounds --------------------------------------------------------------------------------

def test_a_reply_is_spoken_inside_the_next_gather(desk: Desk) -> None:
    sid = call_sid(8)
    answered(desk, sid)
    desk.responder.script.append(reply("We open at nine."))
    twiml = say(desk, sid, "when do you open")
    assert spoken(twiml) == ["We open at nine."]
    assert elements(twiml)[:3] == ["Response", "Gather", "Say"]
    [response] = desk.events(sid, "call.response")
    assert response.data["text"] == "We open at nine."


def test_a_network_failure_is_retried_in_the_same_webhook(desk: Desk) -> None:
    sid = call_sid(9)
    answered(desk, sid)
    desk.responder.script.extend([fail("network"), reply("Here I am.")])
    twiml = say(desk, sid, "hello?")
    assert spoken(twiml) == ["Here I am."]
    assert [pending for _, pending in desk.responder.asked] == ["hello?", "hello?"]
    [retry] = [event for event in desk.events(sid, "call.node")
               if event.data["edge"] == "error:network"]
    assert retry.data["strategy"] == "retry 1"


def test_failures_past_the_retries_take_the_error_edge(desk: Desk) -> None:
    sid = call_sid(10)
    answered(desk, sid)
    desk.responder.script.extend([fail("network"), fail("network")])
    twiml = say(desk, sid, "hello?")
    assert spoken(twiml) == ["Sorry about that.", "Goodbye."]
    assert "Hangup" in elements(twiml)
    state = desk.store.get_state(sid)
    assert state is not None and state.ended and state.node == "bye"


def test_a_model_exit_leaves_by_its_edge(desk: Desk) -> None:
    sid = call_sid(11)
    answered(desk, sid)
    desk.responder.script.append(reply("Take care.", exit="bye"))
    twiml = say(desk, sid, "that's all")
    assert spoken(twiml) == ["Take care.", "Goodbye."]
    exits = [event.data for event in desk.events(sid, "call.node") if event.data["edge"] == "exit"]
    assert [(data["source"], data["node"]) for data in exits] == [("talk", "bye")]


def test_routes_come_before_the_model(desk: Desk) -> None:
    sid = call_sid(12)
    answered(desk, sid)
    twiml = say(desk, sid, digits="0")
    assert spoken(twiml) == ["Goodbye."]
    assert desk.responder.asked == []


# -- speech failures -----------------------------------------------------------------------------

def test_a_speech_failure_is_spoken_by_twilio_and_charged_to_its_node(desk: Desk) -> None:
    desk.failing.add("Welcome to the desk.")
    sid = call_sid(13)
    twiml = answered(desk, sid)
    assert spoken(twiml) == ["Welcome to the desk."]
    [error] = desk.events(sid, "call.error")
    assert (error.data["kind"], error.data["node"], error.data["cause"]) == \
        ("tts_failure", "hello", "network")
    # A say node declares no tts_failure edge: nothing is taken.
    assert all(event.data["edge"] != "error:tts_failure" for event in desk.events(sid, "call.node"))
    state = desk.store.get_state(sid)
    assert state is not None and state.step == 1  # news, not a move


def test_a_speech_failure_on_an_ai_node_takes_its_tts_failure_edge(desk: Desk) -> None:
    sid = call_sid(14)
    answered(desk, sid)
    desk.failing.add("Let me check.")
    desk.responder.script.append(reply("Let me check."))
    twiml = say(desk, sid, "is it open")
    assert spoken(twiml) == ["Let me check."]
    [edge] = [event for event in desk.events(sid, "call.node")
              if event.data["edge"] == "error:tts_failure"]
    assert (edge.data["source"], edge.data["node"], edge.data["strategy"]) == \
        ("talk", "talk", "voice twilio")
    assert [event.data["kind"] for event in desk.observed if event.name == "call.error"] == \
        ["tts_failure"]


# -- ceilings and limits -------------------------------------------------------------------------

def test_the_server_wide_turn_ceiling_says_goodbye(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(max_call_turns=2)
    sid = call_sid(15)
    answered(desk, sid)
    desk.responder.script.extend([reply("One."), reply("Two.")])
    say(desk, sid, "first")
    say(desk, sid, "second")
    twiml = say(desk, sid, "third")
    assert spoken(twiml) == [LIMIT_GOODBYE]
    assert "Hangup" in elements(twiml)
    assert len(desk.responder.asked) == 2  # the model is not asked past the ceiling
    [limit] = [event for event in desk.events(sid, "call.node") if event.data["edge"] == "limit"]
    assert limit.data["by"] == "server"


def test_a_caller_over_the_call_limit_is_refused(make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(caller_call_limit="1/hour")
    answered(desk, call_sid(16))
    twiml = answered(desk, call_sid(17))
    assert spoken(twiml) == [CALLER_REFUSED]
    assert desk.store.get_state(call_sid(17)) is None
    [refusal] = desk.events(call_sid(17), "call.error")
    assert refusal.data["kind"] == "rate_limit_caller"
    assert refusal.data["caller"] == CALLER
    assert "call.error" in [event.name for event in desk.observed]


def test_no_input_reprompts_then_takes_its_edge(desk: Desk) -> None:
    sid = call_sid(18)
    answered(desk, sid)
    first = desk.service.advance(sid, Silence(desk.clock()), 1, desk.key())
    assert spoken(first) == ["Still there?"]
    second = desk.service.advance(sid, Silence(desk.clock()), 2, desk.key())
    assert spoken(second) == ["Goodbye."]


# -- the end of a call ---------------------------------------------------------------------------

def test_a_final_status_ends_and_closes_the_call(desk: Desk) -> None:
    sid = call_sid(19)
    answered(desk, sid)
    desk.clock.advance(42)
    assert desk.service.status_changed(sid, "completed", 42, desk.key()) == EMPTY_ANSWER
    [end] = desk.events(sid, "call.end")
    assert (end.data["status"], end.data["duration"]) == ("completed", 42)
    summary = desk.store.get_call(sid)
    assert summary is not None and summary.status == "completed"


def test_an_internal_error_is_recorded_and_observed(desk: Desk) -> None:
    sid = call_sid(20)
    desk.service.internal_error(sid, "RuntimeError in /api/voice/input")
    [error] = desk.events(sid, "call.error")
    assert error.data == {"kind": "internal", "detail": "RuntimeError in /api/voice/input"}
    assert [event.name for event in desk.observed] == ["call.error"]


def test_a_call_counted_elsewhere_while_this_one_was_made_is_refused(
        make_desk: Callable[..., Desk]) -> None:
    desk = make_desk(caller_call_limit="1/hour")

    def another_server_takes_a_call_meanwhile() -> None:
        # Runs between the webhook's read of the caller's count and its write.
        desk.store.incr_window(f"caller:{CALLER}", 3600)

    desk.on_voicing.append(another_server_takes_a_call_meanwhile)
    twiml = answered(desk, call_sid(21))
    assert spoken(twiml) == [CALLER_REFUSED]
    assert desk.store.get_state(call_sid(21)) is None
    [refusal] = desk.events(call_sid(21), "call.error")
    assert (refusal.data["kind"], refusal.data["calls"]) == ("rate_limit_caller", 2)


def test_each_webhook_reads_and_writes_the_store_once(desk: Desk,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("lookup", "get_state", "stored_response", "commit_step", "commit_new_call",
                 "incr_window", "record_events", "close_call"):
        method = getattr(desk.store, name)
        monkeypatch.setattr(desk.store, name,
                            lambda *a, _name=name, _method=method, **k: (calls.append(_name),
                                                                        _method(*a, **k))[1])
    answered(desk, call_sid(22))
    assert calls == ["lookup", "commit_step"]
    calls.clear()
    desk.service.advance(call_sid(22), Silence(desk.clock()), 1, desk.key())
    assert calls == ["lookup", "commit_step"]
    calls.clear()
    desk.service.status_changed(call_sid(22), "completed", 30, desk.key())
    assert calls == ["lookup", "commit_step", "close_call"]
