"""Every bundled flow, end to end, as Twilio would call it: signed webhooks over real HTTP.

The simulator makes the calls (`call` fixture) against the app served on a local port, follows
the TwiML it gets back verb by verb, and the store is checked afterwards: the call's status,
duration and events. Also here: a restart mid-call, repeated and stale webhooks.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engine.flows.model import Flow, Registry
from engine.runtime.state import AskModel, CallState, Failed, Replied
from engine.simulator import HttpAnswer, SimulatedCall
from engine.store import CallStore
from tests.conftest import ROOT, LiveServer
from tests.support import Clock

pytestmark = pytest.mark.e2e

Call = Callable[..., SimulatedCall]

RECEPTIONIST = "+15550001000"
AFTER_HOURS = "+15550002000"
SUPPORT = "+15550003000"


def store_of(app: Flask) -> CallStore:
    found: CallStore = app.extensions["phoney"].store
    return found


def event_names(app: Flask, call_sid: str) -> list[str]:
    return [event.name for event in store_of(app).events_after(0, call_sid)]


def events(app: Flask, call_sid: str, name: str) -> list[dict[str, Any]]:
    return [dict(event.data) for event in store_of(app).events_after(0, call_sid)
            if event.name == name]


def state_of(app: Flask, call_sid: str) -> CallState:
    state = store_of(app).get_state(call_sid)
    assert state is not None
    return state


def heard_after(c: SimulatedCall, mark: int) -> list[str]:
    return [item.text for item in c.heard[mark:]]


def act(c: SimulatedCall, do: Callable[[], Any]) -> list[str]:
    """Do something on the call; what the caller heard because of it."""
    mark = len(c.heard)
    do()
    return heard_after(c, mark)


def resend(c: SimulatedCall, index: int = -1,
           headers: dict[str, str] | None = None) -> HttpAnswer:
    """Send exchange `index` again, byte for byte: same URL, same form, same signature."""
    exchange = c.exchanges[index]
    sent = {"X-Twilio-Signature": c.sign(exchange.url, exchange.params), **(headers or {})}
    return c.transport(exchange.url, exchange.params, sent)


# -- receptionist ------------------------------------------------------------------------------

def test_receptionist_answers_then_transfers_then_takes_a_message(call: Call,
                                                                  app: Flask) -> None:
    c = call(to=RECEPTIONIST).start()
    assert [item.text for item in c.heard] == [
        "Thanks for calling Acme Dental.",
        "This is the virtual receptionist. How can I help you today?"]
    assert c.waiting.kind == "gather" and c.waiting.verb is not None
    assert c.waiting.verb.get("input") == "speech dtmf"
    assert {item.voice for item in c.heard} == {"Polly.Joanna-Neural"}  # friendly's Twilio voice

    reply = act(c, lambda: c.say("Hi, are you open on Saturdays?"))
    assert len(reply) == 1 and reply[0].startswith("Good question!")  # the offline responder
    assert c.waiting.kind == "gather"

    assert act(c, lambda: c.say("Can I talk to an operator")) == [
        "Connecting you to the front desk now."]
    assert c.dialed == ["+15550001111"] and c.waiting.kind == "dial"
    assert c.waiting.verb is not None and c.waiting.verb.get("timeout") == "20"

    assert act(c, lambda: c.dial_ends("no-answer")) == [
        "Sorry, nobody at the front desk can pick up right now.",
        "Please leave your name, your phone number and a short message after the tone, and we "
        "will call you back as soon as we can. Press the pound key when you are done."]
    assert c.waiting.kind == "record" and c.waiting.verb is not None
    assert (c.waiting.verb.get("maxLength"), c.waiting.verb.get("transcribe")) == ("120", "true")

    assert act(c, lambda: c.record(10)) == ["Thanks for calling Acme Dental. Goodbye!"]
    assert c.ended
    assert state_of(app, c.call_sid).ended

    answer = c.hang_up(duration=95)
    assert answer.status == 200
    summary = store_of(app).get_call(c.call_sid)
    assert summary is not None
    assert (summary.status, summary.duration, summary.flow_id, summary.node) == (
        "completed", 95, "receptionist", "goodbye")
    assert summary.ended_at is not None

    names = event_names(app, c.call_sid)
    assert names[0] == "call.start" and names[-1] == "call.end"
    assert events(app, c.call_sid, "call.response")[0]["offline"] is True
    assert [e["status"] for e in events(app, c.call_sid, "call.transfer")] == [
        "dialing", "no-answer"]
    assert {e["to"] for e in events(app, c.call_sid, "call.transfer")} == {"+15550001111"}
    assert events(app, c.call_sid, "call.recording")[0]["duration"] == 10
    assert events(app, c.call_sid, "call.end") == [
        {"node": "goodbye", "status": "completed", "duration": 95}]
    path = state_of(app, c.call_sid).path
    assert path == ("greet", "assist", "front_desk", "missed", "voicemail", "goodbye")


def test_receptionist_press_zero_reaches_the_front_desk(call: Call) -> None:
    c = call(to=RECEPTIONIST).start().press("0")
    assert c.dialed == ["+15550001111"]
    assert act(c, lambda: c.dial_ends("completed", 120)) == []  # talked, then the call ends
    assert c.ended


def test_receptionist_silence_reprompts_twice_then_says_goodbye(call: Call, app: Flask) -> None:
    c = call(to=RECEPTIONIST).start()
    assert act(c, c.silence) == ["Are you still there?"]
    assert act(c, c.silence) == ["Sorry, I didn't catch that. How can I help you today?"]
    assert act(c, c.silence) == ["Thanks for calling Acme Dental. Goodbye!"]
    assert c.ended
    silent_turns = [e for e in events(app, c.call_sid, "call.transcript") if e.get("silence")]
    assert len(silent_turns) == 3
    assert events(app, c.call_sid, "call.node")[-1]["edge"] == "no_input"


def test_the_default_flow_answers_a_number_no_flow_claims(call: Call, app: Flask) -> None:
    c = call(to="+15559999999").start()
    assert c.heard[0].text == "Thanks for calling Acme Dental."
    assert state_of(app, c.call_sid).flow_id == "receptionist"


def test_flow_query_parameter_chooses_the_flow(call: Call, app: Flask) -> None:
    c = call(to=RECEPTIONIST).start("/api/incoming-call?flow=support_triage")
    assert c.heard[0].text == "Thanks for calling Brightwave Internet."
    assert state_of(app, c.call_sid).flow_id == "support_triage"


# -- after_hours -------------------------------------------------------------------------------

@pytest.mark.parametrize("moment", ["2025-01-15 11:00", "2025-01-17 16:59", "2025-01-18 09:30"])
def test_after_hours_in_business_hours_rings_the_office(call: Call, clock: Clock,
                                                        moment: str) -> None:
    clock.set(moment, "America/Chicago")  # Wednesday, Friday, Saturday morning
    c = call(to=AFTER_HOURS).start()
    assert [item.text for item in c.heard] == [
        "Thank you for calling Northside Plumbing and Heating.",
        "Please hold while I connect you with our office."]
    assert c.dialed == ["+15550002111"]
    c.dial_ends("completed", 200)
    assert c.ended


def test_after_hours_office_busy_goes_to_voicemail(call: Call, clock: Clock,
                                                   app: Flask) -> None:
    clock.set("2025-01-15 11:00", "America/Chicago")
    c = call(to=AFTER_HOURS).start()
    heard = act(c, lambda: c.dial_ends("busy"))
    assert heard[0] == "Everyone in the office is helping other customers right now."
    assert c.waiting.kind == "record"
    assert act(c, lambda: c.record(30)) == [
        "Thank you for calling Northside Plumbing and Heating. Goodbye."]
    assert state_of(app, c.call_sid).path[-3:] == ("office_busy", "voicemail", "goodbye")


@pytest.mark.parametrize("moment", ["2025-01-15 18:30", "2025-01-15 08:59", "2025-01-18 12:00",
                                    "2025-01-19 10:00"])
def test_after_hours_when_closed_offers_the_menu(call: Call, clock: Clock, moment: str) -> None:
    clock.set(moment, "America/Chicago")
    c = call(to=AFTER_HOURS).start()
    assert c.heard[1].text.startswith("Our office is closed right now.")
    assert c.waiting.kind == "gather" and c.dialed == []


@pytest.mark.parametrize("answer", [("press", "1"), ("say", "I have a burst pipe")])
def test_after_hours_emergency_reaches_on_call_then_its_voicemail(
        call: Call, clock: Clock, app: Flask, answer: tuple[str, str]) -> None:
    clock.set("2025-01-15 22:00", "America/Chicago")
    c = call(to=AFTER_HOURS).start()
    how, what = answer
    heard = act(c, lambda: c.press(what) if how == "press" else c.say(what))
    assert heard == ["Connecting you to our on-call technician. Please stay on the line."]
    assert c.dialed == ["+15550002999"]

    heard = act(c, lambda: c.dial_ends("no-answer"))
    assert heard[0].startswith("Sorry, the on-call technician could not pick up.")
    assert c.waiting.verb is not None and c.waiting.verb.get("maxLength") == "180"
    c.record(45)
    assert c.ended
    assert state_of(app, c.call_sid).path == (
        "welcome", "check_hours", "closed", "on_call", "on_call_missed", "emergency_voicemail",
        "goodbye")


@pytest.mark.parametrize("answer", [("press", "2"), ("say", "I'd like to leave a message"),
                                    ("say", "just wondering about prices")])
def test_after_hours_message_path(call: Call, clock: Clock, app: Flask,
                                  answer: tuple[str, str]) -> None:
    clock.set("2025-01-19 10:00", "America/Chicago")
    c = call(to=AFTER_HOURS).start()
    how, what = answer
    heard = act(c, lambda: c.press(what) if how == "press" else c.say(what))
    assert heard[0].startswith("Please leave your name, your phone number")
    assert c.waiting.kind == "record" and c.dialed == []
    c.record(20)
    assert c.ended and state_of(app, c.call_sid).node == "goodbye"


def test_after_hours_silence_repeats_the_choice_once_then_takes_a_message(
        call: Call, clock: Clock) -> None:
    clock.set("2025-01-15 22:00", "America/Chicago")
    c = call(to=AFTER_HOURS).start()
    assert act(c, c.silence) == ["Press 1 for an emergency, or press 2 to leave a message."]
    heard = act(c, c.silence)
    assert heard[0].startswith("Please leave your name") and c.waiting.kind == "record"


# -- support_triage ----------------------------------------------------------------------------

MENU_PROMPT_START = "For billing, say billing or press 1."


@pytest.mark.parametrize(("how", "what", "announce", "target"), [
    ("say", "I have a question about my bill", "Connecting you to our billing team.",
     "+15550003100"),
    ("press", "1", "Connecting you to our billing team.", "+15550003100"),
    ("say", "my internet is down", "Connecting you to technical support. Please stay on the "
     "line.", "sip:support@pbx.example.com"),
    ("press", "2", "Connecting you to technical support. Please stay on the line.",
     "sip:support@pbx.example.com"),
    ("say", "I want to upgrade", "Connecting you to our sales team.", "+15550003300"),
    ("press", "3", "Connecting you to our sales team.", "+15550003300"),
])
def test_support_menu_by_speech_and_digits(call: Call, how: str, what: str, announce: str,
                                           target: str) -> None:
    c = call(to=SUPPORT).start()
    assert c.heard[0].text == "Thanks for calling Brightwave Internet."
    assert c.heard[1].text.startswith(MENU_PROMPT_START)
    assert act(c, lambda: c.press(what) if how == "press" else c.say(what)) == [announce]
    assert c.dialed == [target] and c.waiting.kind == "dial"
    c.dial_ends("completed", 300)
    assert c.ended


def test_support_billing_busy_goes_to_voicemail(call: Call, app: Flask) -> None:
    c = call(to=SUPPORT).start().press("1")
    heard = act(c, lambda: c.dial_ends("busy"))
    assert heard[0] == "Sorry, everyone on that team is helping other customers right now."
    assert c.waiting.kind == "record"
    assert act(c, lambda: c.record(15)) == ["Thanks for calling Brightwave Internet. Have a "
                                            "great day!"]
    assert state_of(app, c.call_sid).path[-4:] == ("billing", "all_busy", "voicemail",
                                                   "goodbye")


def test_support_billing_out_of_hours_explains_and_takes_a_message(call: Call,
                                                                  clock: Clock) -> None:
    clock.set("2025-01-15 19:00", "America/New_York")
    c = call(to=SUPPORT).start()
    heard = act(c, lambda: c.say("billing"))
    assert heard[0].startswith("Our billing team is available Monday to Friday")
    assert c.dialed == [] and c.waiting.kind == "record"


def test_support_tech_support_falls_back_from_sip_to_the_phone_line(call: Call,
                                                                    app: Flask) -> None:
    c = call(to=SUPPORT).start().press("2")
    heard = act(c, lambda: c.dial_ends("failed"))
    assert heard == ["Still trying to reach a technician, please hold."]
    assert c.dialed == ["sip:support@pbx.example.com", "+15550003200"]
    heard = act(c, lambda: c.dial_ends("no-answer"))
    assert heard[0] == "Sorry, everyone on that team is helping other customers right now."
    assert c.waiting.kind == "record"
    transfers = events(app, c.call_sid, "call.transfer")
    assert [(e["to"], e["status"]) for e in transfers] == [
        ("sip:support@pbx.example.com", "dialing"), ("sip:support@pbx.example.com", "failed"),
        ("+15550003200", "dialing"), ("+15550003200", "no-answer")]


def test_support_sales_busy_goes_to_voicemail(call: Call) -> None:
    c = call(to=SUPPORT).start().say("sales please")
    assert c.dialed == ["+15550003300"]
    c.dial_ends("busy")
    assert c.waiting.kind == "record"


def test_support_no_input_reprompts_then_hangs_up(call: Call, app: Flask) -> None:
    c = call(to=SUPPORT).start()
    assert act(c, c.silence) == [
        "Sorry, I didn't hear anything. Say billing, support or sales, or press 1, 2 or 3."]
    assert act(c, c.silence) == [
        "You can also press 2 for technical support if your internet is down."]
    assert act(c, c.silence) == [
        "I still can't hear you, so I'll end the call here. Please call us back any time. "
        "Goodbye."]
    assert c.ended and state_of(app, c.call_sid).node == "no_answer"


def test_support_anything_else_goes_to_the_assistant_which_takes_an_exit(call: Call,
                                                                         app: Flask) -> None:
    c = call(to=SUPPORT).start()
    assert act(c, lambda: c.say("I have a question")) == [
        "Okay, let's find the right person for you. What can I help you with today?"]
    assert c.waiting.kind == "gather"
    heard = act(c, lambda: c.say("my email is not working"))
    assert heard == ["Of course, one moment.",
                     "Connecting you to technical support. Please stay on the line."]
    assert c.dialed == ["sip:support@pbx.example.com"]
    edges = [(e["source"], e["edge"], e["node"]) for e in events(app, c.call_sid, "call.node")]
    assert ("assistant", "exit", "tech_support") in edges


def test_support_assistant_route_back_to_the_menu(call: Call) -> None:
    c = call(to=SUPPORT).start().say("something else entirely")
    heard = act(c, lambda: c.say("take me to the main menu"))
    assert heard[0].startswith(MENU_PROMPT_START)
    assert act(c, lambda: c.press("3")) == ["Connecting you to our sales team."]


# -- status callback ---------------------------------------------------------------------------

def test_a_status_callback_in_the_middle_of_a_call_does_not_drop_the_callers_answer(
        call: Call, app: Flask) -> None:
    c = call(to=RECEPTIONIST).start()
    step_before = state_of(app, c.call_sid).step
    assert c.post("/api/call-status", {"CallStatus": "in-progress"}).status == 200
    assert state_of(app, c.call_sid).step == step_before

    c.say("operator")  # the gather's ?step= is still current
    assert c.dialed == ["+15550001111"]


@pytest.mark.parametrize("status", ["busy", "no-answer", "canceled", "failed"])
def test_a_final_status_closes_the_call(call: Call, app: Flask, status: str) -> None:
    c = call(to=RECEPTIONIST).start()
    assert c.hang_up(status, 0).status == 200
    summary = store_of(app).get_call(c.call_sid)
    assert summary is not None and summary.status == status
    assert state_of(app, c.call_sid).ended


# -- restarts and reloads ----------------------------------------------------------------------

def test_a_server_restart_mid_call_loses_nothing(call: Call, app: Flask,
                                                 live_server: LiveServer,
                                                 make_app: Callable[..., Flask]) -> None:
    c = call(to=RECEPTIONIST).start().say("Hi, are you open on Saturdays?")
    before = state_of(app, c.call_sid)
    store_of(app).close()

    restarted = make_app()  # same SQLite file, nothing shared in memory
    live_server.swap(restarted)
    assert act(c, lambda: c.say("I want a person")) == ["Connecting you to the front desk now."]
    c.dial_ends("busy")
    c.record(5)
    assert c.ended
    c.hang_up(duration=70)

    summary = store_of(restarted).get_call(c.call_sid)
    assert summary is not None and (summary.status, summary.duration) == ("completed", 70)
    after = state_of(restarted, c.call_sid)
    assert after.flow_version == before.flow_version
    assert after.history[:len(before.history)] == before.history
    names = event_names(restarted, c.call_sid)
    assert names.count("call.start") == 1 and names[-1] == "call.end"


def test_a_running_call_finishes_on_the_flow_version_it_started_with(
        tmp_path: Path, live_server: LiveServer, call: Call,
        make_app: Callable[..., Flask]) -> None:
    project = tmp_path / "project"
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, project / folder)
    old = make_app(PROJECT_ROOT=str(project))
    live_server.swap(old)
    first = call(to=RECEPTIONIST).start()

    flow_file = project / "flows" / "receptionist.yaml"
    flow_file.write_text(flow_file.read_text().replace(
        "text: Thanks for calling {{ vars.business }}. Goodbye!",
        "text: Bye from the new version!"))
    new = make_app(PROJECT_ROOT=str(project))  # a deploy: another process, the edited files
    live_server.swap(new)
    second = call(to=RECEPTIONIST).start()

    for c in (first, second):
        c.silence().silence().silence()
    assert first.heard[-1].text == "Thanks for calling Acme Dental. Goodbye!"
    assert second.heard[-1].text == "Bye from the new version!"
    versions = {state_of(new, c.call_sid).flow_version for c in (first, second)}
    assert len(versions) == 2


# -- repeated and stale webhooks ---------------------------------------------------------------

def test_a_repeated_webhook_gets_the_same_answer_and_steps_nothing(call: Call,
                                                                  app: Flask) -> None:
    c = call(to=SUPPORT).start()
    first_answer = c.exchanges[-1].answer.body
    c.say("I have a question")
    state = state_of(app, c.call_sid)
    count = len(event_names(app, c.call_sid))

    again = resend(c)
    assert again.status == 200 and again.body == c.exchanges[-1].answer.body
    incoming_again = resend(c, 0)
    assert incoming_again.body == first_answer
    assert state_of(app, c.call_sid) == state
    assert len(event_names(app, c.call_sid)) == count


def test_a_repeated_webhook_with_an_idempotency_token_steps_nothing(call: Call,
                                                                    app: Flask) -> None:
    c = call(to=SUPPORT).start()
    assert c.waiting.kind == "gather"
    token = {"I-Twilio-Idempotency-Token": "a6f1c2e0-5b0e-4c1e-9d2f-0123456789ab"}
    first = c.post(c.waiting.action, {"Digits": "3"}, headers=token)
    state = state_of(app, c.call_sid)
    count = len(event_names(app, c.call_sid))
    assert state.node == "sales"

    again = resend(c, headers=token)
    assert again.status == 200 and again.body == first.body
    assert state_of(app, c.call_sid) == state
    assert len(event_names(app, c.call_sid)) == count


def test_concurrent_duplicates_step_the_call_once(call: Call, app: Flask) -> None:
    c = call(to=SUPPORT).start()
    url = c.waiting.action
    params = {**c.params, "Digits": "2"}
    headers = {"X-Twilio-Signature": c.sign(url, params)}
    answers: list[HttpAnswer] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        barrier.wait()
        answers.append(c.transport(url, params, headers))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(answers) == 8 and {answer.status for answer in answers} == {200}
    assert len({answer.body for answer in answers}) == 1
    assert "sip:support@pbx.example.com" in answers[0].body
    assert len(events(app, c.call_sid, "call.transcript")) == 1
    assert state_of(app, c.call_sid).step == 2


def test_a_stale_step_does_not_advance_the_call_twice(call: Call, app: Flask) -> None:
    c = call(to=SUPPORT).start()
    menu_action = c.waiting.action
    assert "step=1" in menu_action
    c.press("2")
    state = state_of(app, c.call_sid)
    assert state.node == "tech_support"

    late = c.post(menu_action, {"Digits": "3"})  # an answer to the menu, which is long gone
    assert late.status == 200
    assert "+15550003300" not in late.body  # not to sales: the call says where it is now
    assert "sip:support@pbx.example.com" in late.body
    after = state_of(app, c.call_sid)
    assert (after.node, after.path) == ("tech_support", state.path)
    assert len(events(app, c.call_sid, "call.transcript")) == 1  # the late answer is not heard


# -- the model on hold -------------------------------------------------------------------------

class RateLimitedThenFine:
    """A responder that is rate limited `failures` times, then answers; records what it saw."""

    offline = True

    def __init__(self, failures: int, clock: Clock) -> None:
        self.failures = failures
        self.clock = clock
        self.asked: list[str | None] = []

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               now: float) -> Replied | Failed:
        self.asked.append(state.pending)
        if len(self.asked) <= self.failures:
            self.clock.advance(2)  # the caller's hold plays while time passes
            return Failed(now, "rate_limit", "429 Too Many Requests")
        return Replied(now, f"You asked: {state.pending}", personality=ask.personality)


def test_a_long_rate_limit_keeps_the_caller_on_hold_until_the_model_answers(
        call: Call, live_server: LiveServer, make_app: Callable[..., Flask],
        clock: Clock) -> None:
    responder = RateLimitedThenFine(failures=8, clock=clock)
    app = make_app(ports={"responder": responder})
    live_server.swap(app)
    c = call(to=RECEPTIONIST).start()
    heard = act(c, lambda: c.say("do you do whitening"))

    assert c.waiting.kind == "gather" and not c.ended  # never dropped mid-hold
    assert heard[-1] == "You asked: do you do whitening"
    assert "One moment please." in heard
    assert responder.asked == ["do you do whitening"] * 9  # the same utterance every time
    assert state_of(app, c.call_sid).pending is None
    assert len(events(app, c.call_sid, "call.response")) == 1
