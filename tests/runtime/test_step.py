"""The pure interpreter: `step(flow, state, event) -> (state, actions)` with plain values.

Each test compiles a small flow from a dict, starts a call and feeds it events, then asserts the
exact actions the shell is asked to carry out and the state it is left in. No Flask, no store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from engine.flows.compile import compile_flow
from engine.flows.model import Flow
from engine.runtime.state import (
    Action,
    AskModel,
    Caller,
    CallStarted,
    CallState,
    Continue,
    Dial,
    DialEnded,
    Emit,
    Event,
    Failed,
    Hangup,
    Heard,
    Listen,
    Pause,
    Record,
    RecordingDone,
    Replied,
    Resume,
    Say,
    Silence,
    SpeechFailed,
    StatusChanged,
    state_from_dict,
    state_to_dict,
)
from engine.runtime.step import MAX_HOPS, SAFE_GOODBYE, start_state, step
from tests.support import epoch

T0 = epoch("2025-01-15 10:00", "America/New_York")  # a Wednesday morning
SID = "CA" + "0" * 32
LANG = "en-US"


# -- helpers -----------------------------------------------------------------------------------

def flow_of(nodes: dict[str, Any], **top: Any) -> Flow:
    """Compile a flow with personality `p`, starting at the first node given."""
    data = {"flow": "t", "personality": "p", "start": next(iter(nodes)),
            "vars": {"business": "Acme", "desk": "+15550001111"}, "nodes": nodes, **top}
    return compile_flow(data).flow


def begin(flow: Flow, now: float = T0) -> tuple[CallState, list[Action]]:
    state = start_state(flow, "v1", SID, Caller(number="+15551230000", city="SPRINGFIELD"),
                        "+15550001000", now)
    return step(flow, state, CallStarted(now))


def run(flow: Flow, state: CallState, *events: Event) -> tuple[CallState, list[Action]]:
    """Step through `events`; the actions of the last one."""
    actions: list[Action] = []
    for event in events:
        state, actions = step(flow, state, event)
    return state, actions


def shell(actions: Sequence[Action]) -> list[Action]:
    """What reaches TwiML: everything but the recorded events."""
    return [action for action in actions if not isinstance(action, Emit)]


def emitted(actions: Sequence[Action], name: str) -> list[Mapping[str, Any]]:
    return [action.data for action in actions if isinstance(action, Emit) and action.name == name]


def said(text: str, personality: str = "p") -> Say:
    return Say(text, personality, LANG)


def listen(*kinds: str, **options: Any) -> Listen:
    return Listen(input=kinds or ("speech",), language=LANG, **options)  # type: ignore[arg-type]


BYE = {"type": "hangup", "text": "Goodbye."}


# -- say, gather, switch -----------------------------------------------------------------------

def test_say_nodes_chain_to_the_next_within_one_step() -> None:
    flow = flow_of({
        "hello": {"type": "say", "text": "Thanks for calling {{ vars.business }}.",
                  "next": "notice"},
        "notice": {"type": "say", "text": "Calls are recorded.", "pause": 1, "next": "ask"},
        "ask": {"type": "gather", "prompt": "How can we help?", "hints": ["billing"]},
    })
    state, actions = begin(flow)

    assert shell(actions) == [said("Thanks for calling Acme."), said("Calls are recorded."),
                              Pause(1), said("How can we help?"),
                              listen("speech", hints=("billing",))]
    assert (state.node, state.step, state.turn) == ("ask", 1, 0)
    assert state.path == ("hello", "notice", "ask")
    assert emitted(actions, "call.start") == [{
        "node": "hello", "flow": "t", "caller": "+15551230000", "called": "+15550001000",
        "personality": "p"}]
    assert emitted(actions, "call.node") == [
        {"node": "notice", "source": "hello", "edge": "next", "edge_id": "hello/next"},
        {"node": "ask", "source": "notice", "edge": "next", "edge_id": "notice/next"}]
    assert [(m.role, m.text) for m in state.history] == [
        ("agent", "Thanks for calling Acme."), ("agent", "Calls are recorded."),
        ("agent", "How can we help?")]


MENU = {
    "menu": {"type": "gather", "prompt": "Say billing or sales, or press 1 or 2.",
             "input": ["speech", "dtmf"], "num_digits": 1,
             "routes": [{"when": "said_any('billing', 'bill') or digits == '1'", "to": "billing"},
                        {"when": "said_any('sales', 'new service') or digits == '2'",
                         "to": "sales"}],
             "next": "other"},
    "billing": {"type": "hangup", "text": "Billing."},
    "sales": {"type": "hangup", "text": "Sales."},
    "other": {"type": "hangup", "text": "Other."},
}


def test_gather_listens_for_what_the_node_asks() -> None:
    state, actions = begin(flow_of(MENU))
    assert shell(actions) == [said("Say billing or sales, or press 1 or 2."),
                              listen("speech", "dtmf", num_digits=1)]
    assert state.node == "menu" and not state.ended


@pytest.mark.parametrize(("heard", "target", "edge"), [
    (Heard(T0, speech="I have a question about my bill", confidence=0.9), "billing", "route"),
    (Heard(T0, speech="BILLING please"), "billing", "route"),
    (Heard(T0, digits="1"), "billing", "route"),
    (Heard(T0, speech="I'd like new service"), "sales", "route"),
    (Heard(T0, digits="2"), "sales", "route"),
    (Heard(T0, speech="billingsgate"), "other", "next"),  # whole words only
    (Heard(T0, speech="my router is blinking"), "other", "next"),
    (Heard(T0, digits="9"), "other", "next"),
])
def test_gather_routes_on_speech_and_digits_and_takes_next_for_anything_else(
        heard: Heard, target: str, edge: str) -> None:
    flow = flow_of(MENU)
    state, actions = run(flow, begin(flow)[0], heard)

    assert state.node == target
    assert shell(actions) == [said(target.capitalize() + "."), Hangup()]
    assert state.ended and state.turn == 1
    node_events = emitted(actions, "call.node")
    assert node_events[0]["source"] == "menu" and node_events[0]["edge"] == edge
    assert emitted(actions, "call.transcript") == [{
        "node": "menu", "speech": heard.speech, "digits": heard.digits,
        "confidence": heard.confidence, "turn": 1}]


def test_no_input_reprompts_then_takes_the_no_input_edge() -> None:
    flow = flow_of({
        "ask": {"type": "gather", "prompt": "What do you need?",
                "no_input": {"retries": 2, "reprompt": ["Are you there?", "Last try: what?"],
                             "then": "bye"}},
        "bye": BYE,
    })
    state, _ = begin(flow)

    state, actions = step(flow, state, Silence(T0 + 5))
    assert shell(actions) == [said("Are you there?"), listen()]
    assert (state.node, state.silences, state.turn) == ("ask", 1, 1)

    state, actions = step(flow, state, Silence(T0 + 10))
    assert shell(actions) == [said("Last try: what?"), listen()]
    assert state.silences == 2

    state, actions = step(flow, state, Silence(T0 + 15))
    assert shell(actions) == [said("Goodbye."), Hangup()]
    assert state.node == "bye" and state.ended
    assert emitted(actions, "call.node") == [
        {"node": "bye", "source": "ask", "edge": "no_input", "edge_id": "ask/no_input",
         "retries": 2}]


def test_no_input_without_reprompts_repeats_the_prompt_and_an_answer_resets_the_count() -> None:
    flow = flow_of({
        "ask": {"type": "gather", "prompt": "Name please?", "next": "ask",
                "no_input": {"retries": 1, "then": "bye"}},
        "bye": BYE,
    })
    state, actions = run(flow, begin(flow)[0], Silence(T0))
    assert shell(actions) == [said("Name please?"), listen()]

    state, _ = step(flow, state, Heard(T0, speech="Ada"))  # next: ask again, count reset
    assert state.silences == 0
    state, actions = step(flow, state, Silence(T0))
    assert shell(actions) == [said("Name please?"), listen()]
    state, actions = step(flow, state, Silence(T0))
    assert state.node == "bye" and shell(actions)[-1] == Hangup()


LOOP = {
    "ask": {"type": "gather", "prompt": "Again?", "next": "ask",
            "no_input": {"retries": 5, "then": "bye"}},
    "bye": BYE,
}


def test_max_turns_takes_the_limit_edge_counting_silences_too() -> None:
    flow = flow_of(LOOP, limits={"max_turns": 3, "then": "bye"})
    state, _ = begin(flow)
    state, actions = run(flow, state, Heard(T0, speech="one"), Silence(T0),
                         Heard(T0, speech="three"))
    assert state.node == "ask" and state.turn == 3
    assert shell(actions) == [said("Again?"), listen()]

    state, actions = step(flow, state, Heard(T0, speech="four"))
    assert shell(actions) == [said("Goodbye."), Hangup()]
    assert state.node == "bye" and state.ended
    assert emitted(actions, "call.node") == [
        {"node": "bye", "source": "ask", "edge": "limit", "edge_id": "ask/limit",
         "reason": "max_turns"}]


@pytest.mark.parametrize("event", [Heard(T0 + 61, speech="hello"), Silence(T0 + 61)])
def test_max_seconds_takes_the_limit_edge(event: Event) -> None:
    flow = flow_of(LOOP, limits={"max_seconds": 60, "then": "bye"})
    state, _ = begin(flow)
    state, actions = step(flow, state, Heard(T0 + 59, speech="still in time"))
    assert state.node == "ask"

    state, actions = step(flow, state, event)
    assert state.node == "bye" and shell(actions) == [said("Goodbye."), Hangup()]
    assert emitted(actions, "call.node")[0] == {
        "node": "bye", "source": "ask", "edge": "limit", "edge_id": "ask/limit",
        "reason": "max_seconds"}


HOURS = {
    "check": {"type": "switch",
              "routes": [{"when": "open_between('09:00', '17:00', days='Mon-Fri')", "to": "open"},
                         {"when": "open_between('10:00', '12:00', days='Sat')", "to": "open"}],
              "next": "closed"},
    "open": {"type": "hangup", "text": "We are open."},
    "closed": {"type": "hangup", "text": "We are closed."},
}


@pytest.mark.parametrize(("moment", "zone", "node"), [
    ("2025-01-15 10:00", "America/New_York", "open"),     # Wednesday
    ("2025-01-17 16:59", "America/New_York", "open"),     # Friday, last minute
    ("2025-01-15 17:00", "America/New_York", "closed"),   # the end is exclusive
    ("2025-01-15 08:59", "America/New_York", "closed"),
    ("2025-01-18 11:00", "America/New_York", "open"),     # Saturday morning
    ("2025-01-18 12:30", "America/New_York", "closed"),
    ("2025-01-19 10:00", "America/New_York", "closed"),   # Sunday
    ("2025-01-15 10:00", "UTC", "closed"),                # 05:00 in New York
    ("2025-01-15 20:00", "UTC", "open"),                  # 15:00 in New York
])
def test_switch_on_open_between_reads_now_in_the_flows_timezone(moment: str, zone: str,
                                                               node: str) -> None:
    flow = flow_of(HOURS, timezone="America/New_York")
    state, actions = begin(flow, now=epoch(moment, zone))
    assert state.node == node
    assert shell(actions) == [said(f"We are {node}."), Hangup()]
    assert emitted(actions, "call.node")[0]["edge"] == ("route" if node == "open" else "next")


def test_limits_bound_only_the_nodes_the_graph_draws_a_limit_edge_from() -> None:
    flow = flow_of({"desk": {"type": "transfer", "to": "{{ vars.desk }}", "on_fail": "bye"},
                    "bye": BYE}, limits={"max_seconds": 60, "then": "bye"})
    assert flow.edge("desk/limit") is None  # a transfer does not listen
    state, _ = begin(flow)
    # A late webhook past max_seconds on the transfer: no edge the graph lacks is taken.
    state, actions = step(flow, state, Resume(T0 + 61))
    assert emitted(actions, "call.node") == [] and emitted(actions, "call.error") == []
    assert state.node == "desk" and not state.ended


# -- transfer, record, hangup ------------------------------------------------------------------

def transfer_flow(**transfer: Any) -> Flow:
    return flow_of({
        "desk": {"type": "transfer", "to": "{{ vars.desk }}", "announce": "Connecting you.",
                 "timeout": 20, "on_fail": "voicemail", **transfer},
        "voicemail": {"type": "record", "prompt": "Leave a message.", "max_seconds": 60,
                      "transcribe": True, "next": "bye"},
        "back": {"type": "say", "text": "Welcome back.", "next": "bye"},
        "bye": BYE,
    })


def test_transfer_dials_the_rendered_target() -> None:
    state, actions = begin(transfer_flow())
    assert shell(actions) == [said("Connecting you."), Dial("+15550001111", 20, None)]
    assert emitted(actions, "call.transfer") == [
        {"node": "desk", "to": "+15550001111", "status": "dialing"}]
    assert state.node == "desk" and not state.ended


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_transfer_that_nobody_answers_takes_on_fail(status: str) -> None:
    flow = transfer_flow()
    state, actions = run(flow, begin(flow)[0], DialEnded(T0 + 20, status))
    assert state.node == "voicemail"
    assert shell(actions) == [said("Leave a message."), Record(60, "#", True)]
    assert emitted(actions, "call.transfer") == [
        {"node": "desk", "to": "+15550001111", "status": status, "duration": 0}]
    assert emitted(actions, "call.node") == [
        {"node": "voicemail", "source": "desk", "edge": "transfer_failed",
         "edge_id": "desk/transfer_failed", "status": status}]


@pytest.mark.parametrize("status", ["completed", "answered"])
def test_completed_transfer_takes_next(status: str) -> None:
    flow = transfer_flow(next="back")
    state, actions = run(flow, begin(flow)[0], DialEnded(T0 + 90, status, duration=75))
    assert shell(actions) == [said("Welcome back."), said("Goodbye."), Hangup()]
    assert state.node == "bye" and state.ended
    assert emitted(actions, "call.transfer")[0]["duration"] == 75


def test_completed_transfer_without_next_hangs_up() -> None:
    flow = transfer_flow()
    state, actions = run(flow, begin(flow)[0], DialEnded(T0 + 90, "completed", duration=75))
    assert shell(actions) == [Hangup()]
    assert state.node == "desk" and state.ended


def test_record_then_recording_done_goes_to_next() -> None:
    flow = transfer_flow()
    state, _ = run(flow, begin(flow)[0], DialEnded(T0, "busy"))
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    state, actions = step(flow, state, RecordingDone(T0 + 30, url, 14))
    assert shell(actions) == [said("Goodbye."), Hangup()]
    assert state.node == "bye" and state.ended
    assert emitted(actions, "call.recording") == [{"node": "voicemail", "url": url,
                                                   "duration": 14}]


def test_hangup_ends_the_call_and_every_later_event_answers_hangup() -> None:
    flow = flow_of({"hello": {"type": "say", "text": "Hi.", "next": "bye"}, "bye": BYE})
    state, actions = begin(flow)
    assert shell(actions) == [said("Hi."), said("Goodbye."), Hangup()]
    assert state.ended and state.status == "in-progress"

    later: list[Event] = [Heard(T0, speech="hello?"), Silence(T0), Resume(T0),
                          DialEnded(T0, "completed"), RecordingDone(T0), Replied(T0, "Hi")]
    for event in later:
        after, actions = step(flow, state, event)
        assert actions == [Hangup()], event
        assert (after.node, after.ended, after.history) == (state.node, True, state.history)


def test_status_callback_closes_the_call_and_other_statuses_change_nothing() -> None:
    flow = flow_of(MENU)
    state, _ = begin(flow)

    same, actions = step(flow, state, StatusChanged(T0, "in-progress"))
    assert same == state and actions == []  # the caller's open question stays current

    state, actions = step(flow, state, StatusChanged(T0 + 30, "completed", duration=30))
    assert state.ended and state.status == "completed"
    assert emitted(actions, "call.end") == [{"node": "menu", "status": "completed",
                                             "duration": 30}]
    assert shell(actions) == []


# -- ai nodes ----------------------------------------------------------------------------------

AI = {
    "assist": {
        "type": "ai", "opening": "How can I help?", "instructions": "Help.",
        "routes": [{"when": "said_any('operator') or digits == '0'", "to": "desk"}],
        "exits": {"desk": "The caller wants a person.", "bye": "The caller is done."},
        "no_input": {"retries": 1, "reprompt": "Still there?", "then": "bye"},
        "on_error": {"network": {"retry": 2, "then": "sorry"},
                     "rate_limit": {"then": "hold"},
                     "ai_failure": {"personality": "calm", "then": "sorry"}},
    },
    "hold": {"type": "say", "text": "One moment.", "pause": 2, "next": "assist"},
    "sorry": {"type": "say", "text": "Sorry, trouble on my side.", "next": "bye"},
    "desk": {"type": "transfer", "to": "{{ vars.desk }}", "on_fail": "bye"},
    "bye": BYE,
}
QUESTION = "what are your hours"


def asked(flow: Flow) -> CallState:
    """A call on the ai node with QUESTION pending."""
    state, actions = run(flow, begin(flow)[0], Heard(T0, speech=QUESTION, confidence=0.9))
    assert shell(actions) == [AskModel("assist", "p", 0)]
    return state


def test_ai_node_opens_and_listens() -> None:
    state, actions = begin(flow_of(AI))
    assert shell(actions) == [said("How can I help?"), listen()]
    assert state.node == "assist" and state.pending is None


def test_ai_routes_are_checked_before_the_model() -> None:
    flow = flow_of(AI)
    for heard in (Heard(T0, speech="operator please"), Heard(T0, digits="0")):
        state, actions = run(flow, begin(flow)[0], heard)
        assert shell(actions) == [Dial("+15550001111", 30, None)]
        assert state.node == "desk" and state.pending is None


def test_heard_without_a_route_asks_the_model_and_keeps_the_utterance_pending() -> None:
    flow = flow_of(AI)
    state = asked(flow)
    assert state.pending == QUESTION and state.node == "assist"
    assert state.history[-1].role == "caller" and state.history[-1].text == QUESTION

    state, actions = run(flow, begin(flow)[0], Heard(T0, digits="5"))
    assert shell(actions) == [AskModel("assist", "p", 0)]
    assert (state.pending, state.pending_digits) == ("(pressed 5)", "5")


def test_replied_is_spoken_inside_the_next_listen_and_clears_pending() -> None:
    flow = flow_of(AI)
    state, actions = step(flow, asked(flow), Replied(T0 + 1, "We open at nine.",
                                                      personality="p", offline=True))
    assert shell(actions) == [said("We open at nine."), listen()]
    assert state.pending is None and state.node == "assist" and state.offline
    assert emitted(actions, "call.response")[0]["text"] == "We open at nine."
    assert state.history[-1].role == "agent"


def test_replied_with_a_declared_exit_follows_it() -> None:
    flow = flow_of(AI)
    state, actions = step(flow, asked(flow), Replied(T0, "Glad to help.", exit="bye"))
    assert shell(actions) == [said("Glad to help."), said("Goodbye."), Hangup()]
    assert state.node == "bye" and state.ended and state.pending is None
    assert emitted(actions, "call.node") == [{"node": "bye", "source": "assist", "edge": "exit",
                                              "edge_id": "assist/exit/bye"}]


def test_replied_with_an_undeclared_exit_is_ignored() -> None:
    flow = flow_of(AI)
    state, actions = step(flow, asked(flow), Replied(T0, "Let me transfer you.", exit="sorry"))
    assert shell(actions) == [said("Let me transfer you."), listen()]
    assert state.node == "assist" and not state.ended
    assert emitted(actions, "call.error") == [
        {"node": "assist", "kind": "ai_failure", "detail": "undeclared exit 'sorry'"}]
    assert emitted(actions, "call.node") == []


def test_network_failures_retry_up_to_retry_then_take_the_edge() -> None:
    flow = flow_of(AI)
    state = asked(flow)
    state, actions = step(flow, state, Failed(T0, "network", "connection reset"))
    assert shell(actions) == [AskModel("assist", "p", 1)]
    state, actions = step(flow, state, Failed(T0, "network", "connection reset"))
    assert shell(actions) == [AskModel("assist", "p", 2)]
    assert state.pending == QUESTION and state.errors == {"network": 2}

    state, actions = step(flow, state, Failed(T0, "network", "connection reset"))
    assert shell(actions) == [said("Sorry, trouble on my side."), said("Goodbye."), Hangup()]
    assert state.pending is None and state.ended
    assert [e["attempt"] for e in emitted(actions, "call.error")] == [3]
    assert emitted(actions, "call.node")[0] == {"node": "sorry", "source": "assist",
                                                "edge": "error:network",
                                                "edge_id": "assist/error:network/then"}


def test_rate_limit_holds_and_comes_back_to_retry_the_same_utterance() -> None:
    flow = flow_of(AI)
    state, actions = step(flow, asked(flow), Failed(T0, "rate_limit", "429"))
    # The hold plays before the model is asked again: Twilio comes back after it.
    assert shell(actions) == [said("One moment."), Pause(2), Continue()]
    assert state.node == "assist" and state.pending == QUESTION  # not dropped
    assert [(e["source"], e["edge"]) for e in emitted(actions, "call.node")] == [
        ("assist", "error:rate_limit"), ("hold", "next")]

    state, actions = step(flow, state, Resume(T0 + 3))
    assert shell(actions) == [AskModel("assist", "p", 0)]

    state, actions = step(flow, state, Replied(T0 + 3, "Nine to five."))
    assert shell(actions) == [said("Nine to five."), listen()]
    assert state.pending is None
    # answered once: one caller line, one reply to it
    assert [m.text for m in state.history if m.role == "caller"] == [QUESTION]


def test_ai_failure_tries_the_fallback_personality_once_then_takes_the_edge() -> None:
    flow = flow_of(AI)
    state, actions = step(flow, asked(flow), Failed(T0, "ai_failure", "bad output"))
    assert shell(actions) == [AskModel("assist", "calm", 1)]
    assert state.pending == QUESTION

    _, actions = step(flow, state, Replied(T0, "Nine to five.", personality="calm"))
    assert shell(actions) == [said("Nine to five.", "calm"), listen()]

    state, actions = step(flow, state, Failed(T0, "ai_failure", "bad output again"))
    assert shell(actions) == [said("Sorry, trouble on my side."), said("Goodbye."), Hangup()]
    assert state.pending is None and state.node == "bye"


def test_a_failure_with_no_strategy_apologises_and_hangs_up() -> None:
    flow = flow_of(AI)
    state, actions = step(flow, asked(flow), Failed(T0, "tts_failure"))
    assert shell(actions) == [said(SAFE_GOODBYE), Hangup()]
    assert state.ended
    assert emitted(actions, "call.error")[-1]["kind"] == "flow"


# -- speech failures ---------------------------------------------------------------------------

SPOKEN = {**AI, "assist": {**AI["assist"], "on_error": {**AI["assist"]["on_error"],
                                                        "tts_failure": {"voice": "twilio"}}}}


def test_a_speech_failure_on_an_ai_node_takes_its_voice_edge_and_moves_nothing() -> None:
    flow = flow_of(SPOKEN)
    before = asked(flow)
    state, actions = step(flow, before, SpeechFailed(T0, "assist", "network", "x" * 400))
    assert state is before  # news, not a move: the step counter stays, nothing is pending anew
    assert actions == [
        Emit("call.error", {"node": "assist", "kind": "tts_failure", "cause": "network",
                            "detail": "x" * 300}),
        Emit("call.node", {"node": "assist", "source": "assist", "edge": "error:tts_failure",
                           "strategy": "voice twilio",
                           "edge_id": "assist/error:tts_failure/voice"})]
    edge = flow.edge("assist/error:tts_failure/voice")
    assert edge is not None and edge.strategy == "voice twilio"


def test_a_speech_failure_on_a_say_node_is_only_an_error() -> None:
    flow = flow_of(SPOKEN)
    before = asked(flow)  # on the ai node; the failed speech was the greeting of a say node
    flow = flow_of({"hello": {"type": "say", "text": "Hi.", "next": "assist"}, **SPOKEN})
    state, actions = step(flow, before, SpeechFailed(T0, "hello", "rate_limit", "429"))
    assert state is before
    assert actions == [Emit("call.error", {"node": "hello", "kind": "tts_failure",
                                           "cause": "rate_limit", "detail": "429"})]


def test_a_speech_failure_on_a_node_the_flow_lacks_is_only_an_error() -> None:
    flow = flow_of(SPOKEN)
    before = asked(flow)
    state, actions = step(flow, before, SpeechFailed(T0, "gone", "network"))
    assert state is before
    assert actions == [Emit("call.error", {"node": "gone", "kind": "tts_failure",
                                           "cause": "network", "detail": ""})]


def test_a_speech_failure_without_a_voice_strategy_is_only_an_error() -> None:
    flow = flow_of(AI)  # the ai node has no tts_failure policy
    before = asked(flow)
    _, actions = step(flow, before, SpeechFailed(T0, "assist", "network", "reset"))
    assert emitted(actions, "call.node") == []
    assert [action.name for action in actions if isinstance(action, Emit)] == ["call.error"]


def test_a_speech_failure_of_a_goodbye_is_recorded_on_an_ended_call() -> None:
    flow = flow_of(SPOKEN)
    state, _ = step(flow, asked(flow), Replied(T0, "Bye now.", exit="bye"))
    assert state.ended
    after, actions = step(flow, state, SpeechFailed(T0, "bye", "network"))
    assert after is state and Hangup() not in actions
    assert emitted(actions, "call.error")[0]["node"] == "bye"


def test_a_speech_failure_names_the_node_the_call_is_on_when_it_names_none() -> None:
    flow = flow_of(SPOKEN)
    _, actions = step(flow, asked(flow), SpeechFailed(T0, "", "network"))
    assert emitted(actions, "call.node")[0]["edge_id"] == "assist/error:tts_failure/voice"


def test_a_tts_failure_reported_as_a_model_failure_is_not_a_voice_loop() -> None:
    # Speech failures arrive as SpeechFailed; a Failed of that kind has no edge of its own.
    flow = flow_of(SPOKEN)
    state, actions = step(flow, asked(flow), Failed(T0, "tts_failure"))
    assert shell(actions) == [said(SAFE_GOODBYE), Hangup()]
    assert state.ended and emitted(actions, "call.node") == []


def test_silence_on_an_ai_node_reprompts_then_takes_no_input() -> None:
    flow = flow_of(AI)
    state, actions = run(flow, begin(flow)[0], Silence(T0))
    assert shell(actions) == [said("Still there?"), listen()]
    state, actions = step(flow, state, Silence(T0))
    assert shell(actions) == [said("Goodbye."), Hangup()]


def test_resume_on_an_ai_node_asks_again_only_for_a_pending_utterance() -> None:
    flow = flow_of(AI)
    _, actions = run(flow, asked(flow), Resume(T0))
    assert shell(actions) == [AskModel("assist", "p", 0)]
    _, actions = run(flow, begin(flow)[0], Resume(T0))
    assert shell(actions) == [listen()]


# -- failures contained ------------------------------------------------------------------------

def test_a_cycle_of_say_nodes_is_stopped_by_max_hops_with_a_safe_hangup() -> None:
    flow = flow_of({"tick": {"type": "say", "text": "Tick.", "next": "tock"},
                    "tock": {"type": "say", "text": "Tock.", "next": "tick"}})
    state, actions = begin(flow)
    spoken = [action.text for action in actions if isinstance(action, Say)]
    assert len(spoken) == MAX_HOPS + 2  # the start node, MAX_HOPS hops, the apology
    assert shell(actions)[-2:] == [said(SAFE_GOODBYE), Hangup()]
    assert state.ended
    errors = emitted(actions, "call.error")
    assert len(errors) == 1 and errors[0]["kind"] == "flow"
    assert str(MAX_HOPS) in errors[0]["detail"]


@pytest.mark.parametrize(("nodes", "detail"), [
    ({"hello": {"type": "say", "text": "Hi."}}, "the flow's graph has no edge hello/next"),
    ({"hello": {"type": "say", "text": "Hi.", "next": "gone"}},
     "edge hello/next leads to 'gone', which the flow does not have"),
])
def test_a_way_out_the_graph_lacks_apologises_and_hangs_up(nodes: dict[str, Any],
                                                           detail: str) -> None:
    # Validation rules these flows out; the interpreter still never leaves silence.
    state, actions = begin(flow_of(nodes))
    assert shell(actions) == [said("Hi."), said(SAFE_GOODBYE), Hangup()]
    assert state.ended and state.node == "hello"
    assert emitted(actions, "call.error") == [{"node": "hello", "kind": "flow", "detail": detail}]
    assert emitted(actions, "call.node") == []


def test_a_template_error_is_recorded_and_the_call_goes_on() -> None:
    flow = flow_of({
        "hello": {"type": "say", "text": "Hello {{ vars.nope.name }}.", "next": "desk"},
        "desk": {"type": "transfer", "to": "{{ vars.missing_number }}", "on_fail": "bye"},
        "bye": {"type": "hangup", "text": "Bye from {{ vars.business }}."},
    })
    _, actions = begin(flow)
    assert shell(actions) == [said("Bye from Acme."), Hangup()]
    errors = emitted(actions, "call.error")
    assert [e["kind"] for e in errors] == ["template", "template"]
    assert errors[0]["detail"].startswith("nodes.hello.text: ")
    assert errors[1]["detail"].startswith("nodes.desk.to: ")
    assert emitted(actions, "call.node")[1] == {"node": "bye", "source": "desk",
                                                "edge": "transfer_failed",
                                                "edge_id": "desk/transfer_failed",
                                                "reason": "no target"}


@pytest.mark.parametrize("broken", [
    "vars.nope.deeper == 1",       # undefined
    "speech.no_such_method()",     # not callable
    "1 / 0 == 1",                  # raises
    "''.__class__.__mro__",        # the sandbox refuses
])
def test_a_broken_when_fails_closed(broken: str) -> None:
    flow = flow_of({
        "menu": {"type": "gather", "prompt": "Press a key.", "input": ["dtmf"],
                 "routes": [{"when": broken, "to": "wrong"},
                            {"when": "digits == '1'", "to": "right"}],
                 "next": "other"},
        "wrong": {"type": "hangup", "text": "Wrong."},
        "right": {"type": "hangup", "text": "Right."},
        "other": {"type": "hangup", "text": "Other."},
    })
    state, actions = run(flow, begin(flow)[0], Heard(T0, digits="1"))
    assert state.node == "right"
    state, actions = run(flow, begin(flow)[0], Heard(T0, digits="2"))
    assert state.node == "other"
    errors = emitted(actions, "call.error")
    assert len(errors) == 1 and errors[0]["kind"] == "condition"
    assert errors[0]["detail"].startswith("nodes.menu.routes[0].when: ")


def test_a_broken_switch_condition_takes_next() -> None:
    flow = flow_of({"check": {"type": "switch", "routes": [{"when": "vars.nope.x", "to": "a"}],
                              "next": "b"},
                    "a": {"type": "hangup", "text": "A."}, "b": {"type": "hangup", "text": "B."}})
    state, actions = begin(flow)
    assert state.node == "b" and shell(actions) == [said("B."), Hangup()]
    assert emitted(actions, "call.error")[0]["kind"] == "condition"


def test_a_call_on_a_node_the_flow_lost_ends_safely() -> None:
    flow = flow_of(MENU)
    state, _ = begin(flow)
    moved = state_from_dict({**state_to_dict(state), "node": "gone"})
    state, actions = step(flow, moved, Heard(T0, speech="billing"))
    assert shell(actions) == [said(SAFE_GOODBYE), Hangup()] and state.ended


def test_every_event_counts_a_step_and_the_state_survives_its_json_form() -> None:
    flow = flow_of(AI)
    state = asked(flow)
    assert state.step == 2
    assert state_from_dict(state_to_dict(state)) == state
