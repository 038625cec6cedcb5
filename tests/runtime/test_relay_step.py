"""Relay ai nodes in the pure step, their TwiML, and the handoff a session ends with: plain
values, no Flask, no store, no socket."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from typing import Any

from engine.calls.relay import RelayCall, decode_event, handed_off, handoff
from engine.calls.urls import CallbackUrls, answering_base
from engine.flows.compile import compile_flow
from engine.flows.model import AiNode, Flow
from engine.runtime.state import (
    AskModel,
    Caller,
    CallStarted,
    Converse,
    Emit,
    Failed,
    Heard,
    Interrupted,
    Listen,
    Replied,
    Say,
    Silence,
    SpeechFailed,
)
from engine.runtime.step import start_state, step
from engine.twiml import ConnectRelay, SayWith, render
from tests.support import epoch

T0 = epoch("2025-01-15 10:00", "America/New_York")
SID = "CA" + "1" * 32


def relay_flow(**assist: Any) -> Flow:
    nodes = {
        "assist": {"type": "ai", "opening": "Hi {{ vars.business }}.", "conversation": "relay",
                   "hints": ["cleaning"], "exits": {"bye": "Done."},
                   "routes": [{"when": "digits == '0'", "to": "bye"}],
                   "no_input": {"retries": 1, "reprompt": "Still there?", "then": "bye"},
                   **assist},
        "bye": {"type": "hangup", "text": "Bye."},
    }
    return compile_flow({"flow": "t", "personality": "p", "start": "assist",
                         "vars": {"business": "Acme"}, "nodes": nodes}).flow


def test_entering_a_relay_node_converses_with_the_opening_as_greeting() -> None:
    flow = relay_flow()
    state, actions = step(flow, start_state(flow, "v1", SID, Caller(), "", T0), CallStarted(T0))
    converse = [a for a in actions if isinstance(a, Converse)]
    assert converse == [Converse("assist", SID, "p", "en-US", ("cleaning",), "Hi Acme.")]
    assert not any(isinstance(a, Say) for a in actions)  # Twilio speaks the greeting
    assert [a.data["text"] for a in actions if isinstance(a, Emit) and a.name == "call.say"] \
        == ["Hi Acme."]
    assert state.history[-1].text == "Hi Acme."


def test_a_relay_turn_asks_the_model_and_a_reply_converses_again() -> None:
    flow = relay_flow()
    state, _ = step(flow, start_state(flow, "v1", SID, Caller(), "", T0), CallStarted(T0))
    state, actions = step(flow, state, Heard(T0 + 1, "hello", 1.0))
    assert [a for a in actions if isinstance(a, AskModel)] == [AskModel("assist", "p")]
    state, actions = step(flow, state, Replied(T0 + 2, "Hi there."))
    assert state.node == "assist" and state.pending is None
    assert isinstance(actions[-1], Converse) and actions[-1].greeting == ""
    _, actions = step(flow, state, Silence(T0 + 9))
    assert [a.text for a in actions if isinstance(a, Say)] == ["Still there?"]
    assert isinstance(actions[-1], Converse)


def test_an_interruption_keeps_only_what_was_heard() -> None:
    flow = relay_flow()
    state, _ = step(flow, start_state(flow, "v1", SID, Caller(), "", T0), CallStarted(T0))
    state, _ = step(flow, state, Heard(T0 + 1, "hours?", 1.0))
    state, _ = step(flow, state, Replied(T0 + 2, "We open at eight and close at five."))
    state, actions = step(flow, state, Interrupted(T0 + 3, "We open at eight", 700))
    assert state.history[-1].text == "We open at eight"
    assert [a.data for a in actions if isinstance(a, Emit)] == [
        {"node": "assist", "heard": "We open at eight", "duration_ms": 700}]
    state, _ = step(flow, state, Interrupted(T0 + 4, "", 0))  # heard nothing of it
    assert [m.role for m in state.history] == ["agent", "caller"]


def test_a_relay_node_renders_connect_with_the_relay_attributes() -> None:
    urls = CallbackUrls("https://phoney.example")
    twiml = render([SayWith("Welcome.", "Polly.Joanna-Neural", "en-US"),
                    ConnectRelay(SID, "en-US", "Hi Acme.", ("cleaning", "crown"),
                                 "Amazon", "Joanna-Neural")], urls.for_step(4))
    root = ElementTree.fromstring(twiml)
    assert [child.tag for child in root] == ["Say", "Connect"]
    connect = root.find("Connect")
    assert connect is not None
    assert connect.get("action") == "https://phoney.example/api/voice/relay?step=4"
    relay = connect.find("ConversationRelay")
    assert relay is not None
    assert relay.attrib == {
        "url": f"wss://phoney.example/api/relay/socket?step=4&call={SID}",
        "language": "en-US", "dtmfDetection": "true", "interruptible": "any",
        "ttsProvider": "Amazon", "voice": "Joanna-Neural", "hints": "cleaning, crown",
        "welcomeGreeting": "Hi Acme."}


def test_without_a_public_base_the_socket_url_is_the_webhooks_own() -> None:
    token = answering_base.set("http://127.0.0.1:5000")
    try:
        callbacks = CallbackUrls().for_step(2)
    finally:
        answering_base.reset(token)
    assert callbacks.relay == "ws://127.0.0.1:5000/api/relay/socket?step=2"
    assert callbacks.relay_done == "/api/voice/relay?step=2"


def test_a_handoff_reads_back_as_its_event() -> None:
    flow = relay_flow()
    state, _ = step(flow, start_state(flow, "v1", SID, Caller(), "", T0), CallStarted(T0))
    node = flow.nodes["assist"]
    assert isinstance(node, AiNode)
    call = RelayCall(None, state, node)  # type: ignore[arg-type]  # the handoff reads no flow
    for event, expected in [
            (Heard(T0, "a person", 1.0, ""), Heard(T0 + 5, "a person", 1.0, "")),
            (Replied(T0, "", exit="bye", personality="p"),
             Replied(T0 + 5, "", exit="bye", personality="p")),
            (Failed(T0, "network", "down", 0.0), Failed(T0 + 5, "network", "down", 0.0))]:
        found = handed_off(handoff(call, event), SID, T0 + 5)
        assert (found.step, found.event) == (state.step, expected)


def test_a_bad_handoff_is_no_event() -> None:
    good = json.dumps({"v": 1, "call": SID, "step": 3, "event": {"type": "heard",
                                                                 "speech": "hi"}})
    assert handed_off(good, SID, T0).event == Heard(T0, "hi", 0.0, "")
    for raw in ["", "not json", "[1]", good.replace(SID, "CA" + "2" * 32),
                good.replace('"v": 1', '"v": 7'), "x" * 9000]:
        assert handed_off(raw, SID, T0).event is None
    assert decode_event({"type": "failed", "kind": "tts_failure"}, T0) is None
    assert decode_event({"type": "heard", "speech": 5, "digits": "1x#",
                         "confidence": "high"}, T0) == Heard(T0, "", 0.0, "1#")
    assert handed_off(good.replace('"step": 3', '"step": true'), SID, T0).step is None


def test_a_relay_session_that_lost_its_speech_goes_on_by_gather_in_the_twilio_voice() -> None:
    flow = relay_flow(on_error={"tts_failure": {"voice": "twilio"}})
    state, _ = step(flow, start_state(flow, "v1", SID, Caller(), "", T0), CallStarted(T0))
    state, _ = step(flow, state, Heard(T0 + 1, "hours?", 1.0))
    state, _ = step(flow, state, Replied(T0 + 2, "We open at eight."))
    at = state.step
    state, actions = step(flow, state, SpeechFailed(T0 + 3, "assist", "relay", "TTS failed"))
    assert state.step == at + 1 and state.relay_lost == "assist"
    assert [a.data["kind"] for a in actions if isinstance(a, Emit) and a.name == "call.error"] \
        == ["tts_failure"]
    assert [a.data["edge_id"] for a in actions if isinstance(a, Emit) and a.name == "call.node"] \
        == ["assist/error:tts_failure/voice"]
    [again] = [a for a in actions if isinstance(a, Say)]
    assert (again.text, again.twilio_voice) == ("We open at eight.", True)
    assert isinstance(actions[-1], Listen) and not any(isinstance(a, Converse) for a in actions)
    # The node's later turns are <Gather> turns in the Twilio voice ...
    state, _ = step(flow, state, Heard(T0 + 4, "and saturday?", 1.0))
    state, actions = step(flow, state, Replied(T0 + 5, "Closed on Saturdays."))
    assert [a.twilio_voice for a in actions if isinstance(a, Say)] == [True]
    assert isinstance(actions[-1], Listen)
    # ... until the call leaves it; a speech failure from a node it is not on is news only.
    _, actions = step(flow, state, SpeechFailed(T0 + 6, "bye", "relay", "late"))
    assert not any(isinstance(a, Say | Listen) for a in actions)
    state, _ = step(flow, state, Heard(T0 + 7, "", 1.0, "0"))
    assert state.node == "bye" and state.relay_lost == ""
