"""The edges a relay ai node takes from inside its session, through whole calls: the project's
ConversationRelay simulator over real WebSockets to the app served over HTTP, the OpenAI double
as the model. Errors (network, rate_limit, ai_failure, Twilio's speech), the flow's limits and
the server's ceilings, and the caller's silence, each as the graph says; and a flood of prompts.

The flow here, `relay_edges`, has a short `timeout` (1 s): silence is waited for as a condition
(the reprompt arriving), never slept through.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engine.relay.simulator import RelayLine
from engine.simulator import SimulatedCall
from tests.ai.conftest import events
from tests.conftest import LiveServer
from tests.doubles.openai_server import Empty, OpenAIDouble, Status, Text
from tests.relay.conftest import RELAY_NUMBER
from tests.relay.test_relay_calls import wait_for
from tests.support import AUTH_TOKEN, Clock, requests_transport

Call = Callable[..., SimulatedCall]

EDGES_NUMBER = "+15550002001"
EDGES_FLOW = """\
flow: relay_edges
description: A relay node with every edge out of its session.
personality: friendly
numbers: ["+15550002001"]
vars: {business: Acme Dental}
limits: {max_turns: 3, max_seconds: 600, then: goodbye}
start: assist
nodes:
  assist:
    type: ai
    conversation: relay
    opening: Hi, Acme here.
    instructions: Help callers of {{ vars.business }}.
    input: [speech, dtmf]
    timeout: 1
    no_input: {retries: 1, reprompt: "Are you still there?", then: goodbye}
    on_error:
      network: {retry: 1, then: apology}
      rate_limit: {retry: 1, then: hold}
      ai_failure: {personality: professional, then: apology}
      tts_failure: {voice: twilio}
    exits:
      goodbye: The caller has what they need.
  hold:
    type: say
    text: One moment please.
    pause: 1
    next: assist
  apology:
    type: say
    text: Sorry, I'm having trouble right now.
    next: goodbye
  goodbye:
    type: hangup
    text: Thanks for calling. Goodbye!
"""
TWILIO_VOICE = "Polly.Joanna-Neural"  # friendly's Twilio voice


@pytest.fixture
def project(project: Path) -> Path:
    (project / "flows" / "relay_edges.yaml").write_text(EDGES_FLOW, encoding="utf-8")
    return project


Serve = Callable[..., tuple[Flask, Call]]


@pytest.fixture
def serve(make_app: Callable[..., Flask]) -> Iterator[Serve]:
    """`serve(**config)`: another app made with `config`, over HTTP; the app and a `ring()`
    that rings its relay_desk flow."""
    servers: list[LiveServer] = []

    def start(**config: Any) -> tuple[Flask, Call]:
        live = LiveServer(make_app(**config))
        live.start()
        servers.append(live)

        def ring(**options: Any) -> SimulatedCall:
            options.setdefault("to", RELAY_NUMBER)
            return SimulatedCall(requests_transport, live.url, AUTH_TOKEN, **options).start()

        return live.app, ring

    yield start
    for live in servers:
        live.stop()


@pytest.fixture
def edges_call(relay_call: Call) -> Call:
    """`edges_call()`: a call to the relay_edges flow, rung."""
    return lambda **options: relay_call(to=EDGES_NUMBER, **options).start()


def edges_taken(app: Flask, call_sid: str) -> list[str]:
    return [e["edge_id"] for e in events(app, call_sid, "call.node") if e.get("edge_id")]


def said(app: Flask, call_sid: str) -> list[str]:
    """What the flow and the model said, in order (as the transcript has it)."""
    return [str(e["text"]) for e in events(app, call_sid)
            if e.get("name") in ("call.say", "call.response")]


def handoff_event(data: str) -> dict[str, Any]:
    event = json.loads(data)["event"]
    assert isinstance(event, dict)
    return event


# -- model errors ---------------------------------------------------------------------------------

def test_a_network_failure_retried_inside_the_session_answers_the_caller(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    double.chat(Status(503), Text("Sorry about that. How can I help?"))
    c = edges_call()
    line = c.relay()
    assert line.say("hello").text == "Sorry about that. How can I help?"
    wait_for(lambda: bool(events(app, c.call_sid, "call.response")))
    assert len(double.chat_requests) == 2
    assert edges_taken(app, c.call_sid) == ["assist/error:network/retry"]
    assert line.ended is None and c.waiting.kind == "relay"  # still in the session


def test_a_rate_limit_says_the_hold_line_and_retries_after_the_wait(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    double.chat(Status(429, headers={"retry-after-ms": "400"}), Text("Thanks for waiting."))
    c = edges_call()
    line = c.relay()
    hold = line.say("can I book a cleaning")
    assert hold.text == "One moment please."  # the hold node's line, said inside the session
    assert line.reply().text == "Thanks for waiting."
    first, second = double.chat_requests
    assert second.received_at - first.received_at >= 0.4  # no sooner than the Retry-After
    wait_for(lambda: bool(events(app, c.call_sid, "call.response")))
    assert edges_taken(app, c.call_sid) == ["assist/error:rate_limit/retry"]
    [said] = [e for e in events(app, c.call_sid, "call.say") if e.get("hold")]
    assert said["text"] == "One moment please."
    assert line.ended is None


def test_a_rate_limit_with_a_long_wait_leaves_through_the_hold_node_and_comes_back(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    double.chat(Status(429, headers={"retry-after": "5"}), Text("Thanks for holding."))
    c = edges_call()
    line = c.relay()
    line.say("can I book a cleaning", wait=False)
    event = handoff_event(line.wait_end())
    assert (event["type"], event["kind"]) == ("failed", "rate_limit")
    # The <Connect action> took the hold edge; the hold came back to the node, whose webhook
    # answered the utterance still waiting, and connected a new session.
    assert edges_taken(app, c.call_sid) == ["assist/error:rate_limit/then", "hold/next"]
    assert said(app, c.call_sid)[-2:] == ["One moment please.", "Thanks for holding."]
    assert c.heard[-1].audio_url  # the webhook's reply, in the personality's own voice
    assert c.waiting.kind == "relay"
    assert [r.messages[-1]["content"] for r in double.chat_requests] == [
        "can I book a cleaning", "can I book a cleaning"]


def test_an_ai_failure_asks_the_fallback_personality_inside_the_session(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    double.chat(Empty(), Text("Certainly. How may I assist you?"))
    c = edges_call()
    line = c.relay()
    assert line.say("hello").text == "Certainly. How may I assist you?"
    wait_for(lambda: bool(events(app, c.call_sid, "call.response")))
    assert edges_taken(app, c.call_sid) == ["assist/error:ai_failure/personality"]
    [response] = events(app, c.call_sid, "call.response")
    assert response["personality"] == "professional"
    first, second = (r.messages[0]["content"] for r in double.chat_requests)
    assert first != second  # the second request was made with the other system prompt
    assert line.ended is None


def test_an_ai_failure_of_the_fallback_too_takes_its_edge(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    double.chat(Empty(), Empty())
    c = edges_call()
    line = c.relay()
    line.say("hello", wait=False)
    event = handoff_event(line.wait_end())
    assert (event["type"], event["kind"]) == ("failed", "ai_failure")
    assert edges_taken(app, c.call_sid) == [
        "assist/error:ai_failure/personality", "assist/error:ai_failure/then", "apology/next"]
    assert c.ended
    assert said(app, c.call_sid)[-2:] == ["Sorry, I'm having trouble right now.",
                                         "Thanks for calling. Goodbye!"]


# -- Twilio's speech ------------------------------------------------------------------------------

def test_a_speech_error_from_twilio_goes_on_by_gather_in_the_twilio_voice(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    double.chat(Text("We open at eight."))
    c = edges_call()
    line = c.relay()
    assert line.say("when do you open").text == "We open at eight."
    wait_for(lambda: bool(events(app, c.call_sid, "call.response")))
    line.error("Speech recognition: ASR provider connection error")  # not about our speech
    line.error("TTS provider error: could not synthesize speech")
    event = handoff_event(line.wait_end())
    assert (event["type"], event["node"], event["cause"]) == ("speech_failed", "assist",
                                                              "relay")
    # The <Connect action> answered <Gather> on the same node, saying the last line again in
    # the Twilio voice (it may not have been heard).
    assert c.waiting.kind == "gather"
    assert (c.heard[-1].text, c.heard[-1].voice) == ("We open at eight.", TWILIO_VOICE)
    errors = [(e["kind"], e.get("detail", "")) for e in events(app, c.call_sid, "call.error")]
    assert errors == [("relay", "Speech recognition: ASR provider connection error"),
                      ("tts_failure", "TTS provider error: could not synthesize speech")]
    assert edges_taken(app, c.call_sid) == ["assist/error:tts_failure/voice"]
    # A session opened again for the node (a stale <Connect>) is refused.
    again = RelayLine.connect(line.url, AUTH_TOKEN)
    again.setup(c.call_sid)
    assert "goes on by <Gather>" in json.loads(again.wait_end())["reason"]
    # The node's next turn is a <Gather> turn, answered in the Twilio voice.
    double.chat(Text("On Saturdays we are closed."))
    c.say("and on saturday")
    assert (c.heard[-1].text, c.heard[-1].voice) == ("On Saturdays we are closed.",
                                                     TWILIO_VOICE)
    assert c.waiting.kind == "gather"


# -- limits and ceilings --------------------------------------------------------------------------

def test_the_flows_max_turns_ends_the_session_by_the_limit_edge(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    c = edges_call()
    line = c.relay()
    for speech in ("one", "two", "three"):
        double.chat(Text(f"Reply to {speech}."))
        assert line.say(speech).text == f"Reply to {speech}."
    line.say("four", wait=False)
    assert handoff_event(line.wait_end())["speech"] == "four"
    assert len(double.chat_requests) == 3  # the fourth turn never reached the model
    assert edges_taken(app, c.call_sid) == ["assist/limit"]
    assert c.ended and said(app, c.call_sid)[-1] == "Thanks for calling. Goodbye!"
    assert [e["speech"] for e in events(app, c.call_sid, "call.transcript")] == [
        "one", "two", "three", "four"]


def test_the_flows_max_seconds_ends_the_session_by_the_limit_edge(
        app: Flask, edges_call: Call, double: OpenAIDouble, clock: Clock) -> None:
    c = edges_call()
    line = c.relay()
    clock.advance(601)
    line.say("are you there", wait=False)
    line.wait_end()
    assert double.chat_requests == []
    [limit] = [e for e in events(app, c.call_sid, "call.node") if e["edge"] == "limit"]
    assert limit["reason"] == "max_seconds"
    assert c.ended


def test_the_servers_turn_ceiling_ends_a_relay_call(serve: Serve,
                                                   double: OpenAIDouble) -> None:
    app, ring = serve(MAX_CALL_TURNS=2)
    c = ring()  # relay_desk: its own max_turns (6) is above the server's
    line = c.relay()
    for speech in ("one", "two"):
        double.chat(Text(f"Reply to {speech}."))
        assert line.say(speech).text == f"Reply to {speech}."
    line.say("three", wait=False)
    line.wait_end()
    assert len(double.chat_requests) == 2
    assert c.ended
    assert c.heard[-1].text == ("We've reached the limit for this call. Thank you for calling. "
                                "Goodbye.")
    [limit] = [e for e in events(app, c.call_sid, "call.node") if e["edge"] == "limit"]
    assert limit["by"] == "server"


def test_the_servers_seconds_ceiling_ends_a_relay_call(serve: Serve, double: OpenAIDouble,
                                                       clock: Clock) -> None:
    app, ring = serve(MAX_CALL_SECONDS=120)
    c = ring()  # relay_desk has no max_seconds of its own
    line = c.relay()
    clock.advance(121)
    line.press("5", wait=False)
    line.wait_end()
    assert double.chat_requests == []
    assert c.ended and c.heard[-1].text == (
        "We've reached the limit for this call. Thank you for calling. Goodbye.")
    [limit] = [e for e in events(app, c.call_sid, "call.node") if e["edge"] == "limit"]
    assert (limit["by"], limit["reason"]) == ("server", "max_seconds")


def test_the_model_budget_refuses_inside_the_session_as_an_ai_failure(
        serve: Serve, double: OpenAIDouble) -> None:
    app, ring = serve(MODEL_CALLS_PER_HOUR="1")
    c = ring()
    line = c.relay()
    double.chat(Text("Hello there."))
    assert line.say("hi").text == "Hello there."
    line.say("and again", wait=False)  # over the budget: refused, the fallback refused too
    event = handoff_event(line.wait_end())
    assert (event["type"], event["kind"]) == ("failed", "ai_failure")
    assert len(double.chat_requests) == 1
    kinds = [e["kind"] for e in events(app, c.call_sid, "call.error")]
    assert kinds == ["model_budget", "ai_failure", "ai_failure"]
    assert c.ended


# -- silence --------------------------------------------------------------------------------------

def test_silence_after_a_reply_reprompts_then_takes_the_no_input_edge(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    double.chat(Text("Sure."))
    c = edges_call()
    line = c.relay()
    reply = line.say("hello")
    assert reply.text == "Sure."
    reprompt = line.reply(timeout=10)
    assert reprompt.text == "Are you still there?"
    # Counted from the end of the reply (and the time to say it), for the node's timeout.
    assert reprompt.arrived[0] - reply.arrived[-1] >= 1.0
    event = handoff_event(line.wait_end(timeout=10))
    assert event == {"type": "silence"}
    assert line.received[-2]["token"] == "Are you still there?"
    assert edges_taken(app, c.call_sid) == ["assist/no_input"]
    assert c.ended and said(app, c.call_sid)[-1] == "Thanks for calling. Goodbye!"
    transcript = events(app, c.call_sid, "call.transcript")
    assert [(e["speech"], e.get("silence")) for e in transcript] == [
        ("hello", None), ("", True), ("", True)]


def test_an_answer_before_the_timeout_keeps_the_silence_from_counting(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    c = edges_call()
    line = c.relay()
    double.chat(Text("Hello there."))
    reply = line.say("hi")  # within the greeting's time to say and timeout (about 2 s)
    assert reply.text == "Hello there."
    reprompt = line.reply(timeout=10)  # the silence counts again from this reply's end
    assert reprompt.text == "Are you still there?"
    assert reprompt.arrived[0] - reply.arrived[-1] >= 1.0
    transcript = events(app, c.call_sid, "call.transcript")
    assert [(e["speech"], e.get("silence")) for e in transcript] == [("hi", None), ("", True)]


# -- a flood --------------------------------------------------------------------------------------

def test_a_flood_of_prompts_while_a_reply_streams_is_bounded_by_the_turn_limit(
        app: Flask, edges_call: Call, double: OpenAIDouble) -> None:
    double.default_chat(Text("Let me tell you about everything we do here at Acme.",
                             tokens_per_second=10))
    c = edges_call()
    line = c.relay()
    line.say("first", wait=False)
    line.tokens(1)
    for index in range(20):
        line.say(f"again {index}", wait=False)
    event = handoff_event(line.wait_end(timeout=20))
    assert (event["type"], event["speech"]) == ("heard", "again 2")  # the 4th turn: the limit
    assert c.ended and said(app, c.call_sid)[-1] == "Thanks for calling. Goodbye!"
    assert [e["speech"] for e in events(app, c.call_sid, "call.transcript")] == [
        "first", "again 0", "again 1", "again 2"]
    assert len(double.chat_requests) <= 3
    responses = events(app, c.call_sid, "call.response")
    assert all(r["timings"]["interrupted"] == 1.0 for r in responses[:-1])
