"""Whole relay calls through the project's ConversationRelay simulator, over real WebSockets to
the app served over HTTP, with the OpenAI double as the model: the TwiML that connects the
session, streamed replies, routes, exits handed off to the `<Connect action>`, interruptions,
and the bad input a session must refuse or survive."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from engine.relay.simulator import HandshakeRefused, RelayLine, signature
from engine.simulator import SimulatedCall, new_call_sid
from tests.ai.conftest import events
from tests.conftest import LiveServer
from tests.doubles.openai_server import OpenAIDouble, Status, Text, ToolCall
from tests.relay.conftest import FRONT_DESK
from tests.support import AUTH_TOKEN

Call = Callable[..., SimulatedCall]


def connect_verb(c: SimulatedCall) -> tuple[ElementTree.Element, ElementTree.Element]:
    root = ElementTree.fromstring(c.exchanges[-1].answer.body)
    connect = root.find("Connect")
    assert connect is not None, c.exchanges[-1].answer.body
    relay = connect.find("ConversationRelay")
    assert relay is not None
    return connect, relay


def socket_url(server: LiveServer, call_sid: str) -> str:
    return f"ws{server.url.removeprefix('http')}/api/relay/socket?step=1&call={call_sid}"


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def test_entering_a_relay_node_connects_a_session(relay_call: Call,
                                                  server: LiveServer) -> None:
    c = relay_call().start()

    assert c.waiting.kind == "relay"
    connect, relay = connect_verb(c)
    assert connect.get("action", "").startswith("/api/voice/relay?step=")
    url = urlsplit(relay.get("url", ""))
    assert (url.scheme, url.netloc, url.path) == ("ws", urlsplit(server.url).netloc,
                                                  "/api/relay/socket")
    assert parse_qs(url.query)["call"] == [c.call_sid]
    assert relay.get("language") == "en-US"
    assert relay.get("welcomeGreeting") == "Hello, this is Acme Dental. How can I help?"
    assert relay.get("dtmfDetection") == "true"
    assert relay.get("interruptible") == "any"
    assert relay.get("hints") == "cleaning, appointment"
    # friendly has no relay voice: the one of its Twilio voice (Polly's) is derived.
    assert (relay.get("ttsProvider"), relay.get("voice")) == ("Amazon", "Joanna-Neural")
    assert c.heard[-1].text == "Hello, this is Acme Dental. How can I help?"


def test_a_reply_streams_as_tokens_while_the_model_writes(
        app: Flask, relay_call: Call, double: OpenAIDouble) -> None:
    double.chat(Text("Yes, we do cleanings every weekday. Would you like to book one?",
                     tokens_per_second=20))
    c = relay_call().start()
    line = c.relay()
    reply = line.say("do you do cleanings")

    assert reply.last
    assert reply.text == "Yes, we do cleanings every weekday. Would you like to book one?"
    assert len(reply.tokens) >= 8  # word by word, not one sentence at a time
    assert reply.arrived[-1] - reply.arrived[0] > 0.25  # sent as the model wrote them
    [request] = double.chat_requests
    assert request.messages[-1] == {"role": "user", "content": "do you do cleanings"}
    transcript = events(app, c.call_sid, "call.transcript")
    assert [e["speech"] for e in transcript] == ["do you do cleanings"]
    wait_for(lambda: bool(events(app, c.call_sid, "call.timing")))  # stepped after `last`
    [response] = events(app, c.call_sid, "call.response")
    assert response["text"] == reply.text
    assert response["timings"]["interrupted"] == 0.0
    assert response["timings"]["first_sent"] is not None
    [timing] = events(app, c.call_sid, "call.timing")
    assert timing["transport"] == "relay"
    assert c.waiting.kind == "relay"  # still talking

    double.chat(Text("Great, Tuesday it is."))
    assert line.say("tuesday please").text == "Great, Tuesday it is."
    wait_for(lambda: len(double.chat_requests) == 2)
    second = double.chat_requests[1].messages
    assert second[-3:] == [
        {"role": "user", "content": "do you do cleanings"},
        {"role": "assistant", "content": reply.text},
        {"role": "user", "content": "tuesday please"}]


def test_a_prompt_is_scored_for_sentiment_as_gathered_speech_is(
        app: Flask, relay_call: Call, double: OpenAIDouble) -> None:
    double.chat(Text("I am sorry to hear that."))
    c = relay_call().start()
    c.relay().say("this is terrible, I hate waiting")
    wait_for(lambda: bool(events(app, c.call_sid, "call.sentiment")))
    [transcript] = events(app, c.call_sid, "call.transcript")
    [sentiment] = events(app, c.call_sid, "call.sentiment")
    assert transcript["sentiment"] == sentiment["score"] < -0.5


def test_a_route_on_a_prompt_ends_the_session_and_the_action_takes_it(
        app: Flask, relay_call: Call, double: OpenAIDouble) -> None:
    c = relay_call().start()
    line = c.relay()
    reply = line.say("can I talk to a person")

    assert reply.tokens == []
    handoff = json.loads(line.wait_end())
    assert handoff["event"] == {"type": "heard", "speech": "can I talk to a person",
                                "digits": "", "confidence": 1.0}
    assert double.chat_requests == []  # routes come before the model
    assert c.waiting.kind == "dial"  # the <Connect action> stepped the route
    assert c.dialed == [FRONT_DESK]
    [move] = [e for e in events(app, c.call_sid, "call.node") if e["edge"] == "route"]
    assert (move["source"], move["node"]) == ("assist", "front_desk")
    line.wait_closed()


def test_a_digit_takes_its_route_too(relay_call: Call, double: OpenAIDouble) -> None:
    c = relay_call().start()
    line = c.relay()
    line.press("0")
    line.wait_end()
    assert c.dialed == [FRONT_DESK]


def test_an_exit_tool_ends_the_session_and_the_graph_goes_on(
        app: Flask, relay_call: Call, double: OpenAIDouble) -> None:
    double.chat(ToolCall("goodbye", '{"reason": "done"}', text="Glad I could help."))
    c = relay_call().start()
    line = c.relay()
    reply = line.say("that's all, thanks")

    assert reply.text == "Glad I could help."
    handoff = json.loads(line.wait_end())  # the action webhook is posted when `end` comes
    assert handoff["event"]["type"] == "replied" and handoff["event"]["exit"] == "goodbye"
    assert c.ended
    assert events(app, c.call_sid, "call.say")[-1]["text"] == "Thanks for calling. Goodbye!"
    assert "<Hangup" in c.exchanges[-1].answer.body
    moves = [e for e in events(app, c.call_sid, "call.node") if e["edge"] == "exit"]
    assert [(m["source"], m["node"]) for m in moves] == [("assist", "goodbye")]
    [response] = events(app, c.call_sid, "call.response")
    assert response["text"] == "Glad I could help."  # recorded once, not spoken again


def test_an_interrupt_keeps_only_what_was_heard(app: Flask, relay_call: Call,
                                                double: OpenAIDouble) -> None:
    double.chat(Text("Our hours are eight to five on weekdays and eight to one on Fridays.",
                     tokens_per_second=8))
    c = relay_call().start()
    line = c.relay()
    line.say("when are you open", wait=False)
    first = line.tokens(3)
    line.interrupt(first.text, duration_ms=400)
    wait_for(lambda: bool(events(app, c.call_sid, "call.interrupt")))

    double.chat(Text("Sure, what else?"))
    assert line.say("what about saturday").text == "Sure, what else?"
    wait_for(lambda: len(events(app, c.call_sid, "call.response")) == 2)
    messages = double.chat_requests[1].messages
    assert messages[-2] == {"role": "assistant", "content": first.text}
    [interrupt] = events(app, c.call_sid, "call.interrupt")
    assert interrupt["heard"] == first.text and interrupt["duration_ms"] == 400
    [response, _] = events(app, c.call_sid, "call.response")
    assert response["timings"]["interrupted"] == 1.0


def test_a_handshake_without_a_valid_signature_is_refused(relay_call: Call,
                                                          server: LiveServer) -> None:
    c = relay_call().start()
    _, relay = connect_verb(c)
    url = relay.get("url", "")
    for headers in ({}, {"X-Twilio-Signature": "bm9wZQ=="}):
        with pytest.raises(HandshakeRefused) as refused:
            RelayLine.connect(url, AUTH_TOKEN, signed=False, headers=headers)
        assert refused.value.status == 403
    with pytest.raises(HandshakeRefused) as wrong:
        RelayLine.connect(url, "another-token")
    assert wrong.value.status == 403
    with pytest.raises(HandshakeRefused):  # signed for another URL
        RelayLine.connect(url, AUTH_TOKEN, signed=False, headers={
            "X-Twilio-Signature": signature(AUTH_TOKEN, url.replace("step=", "step=9"))})


def test_a_setup_for_an_unknown_call_ends_the_session(server: LiveServer,
                                                      double: OpenAIDouble) -> None:
    stranger = new_call_sid()
    line = RelayLine.connect(socket_url(server, stranger), AUTH_TOKEN)
    line.setup(stranger)
    handoff = json.loads(line.wait_end())
    assert handoff["reason"] == "unknown call"
    line.wait_closed()
    assert double.chat_requests == []


def test_a_setup_for_another_call_than_the_url_names_is_refused(
        relay_call: Call, server: LiveServer) -> None:
    c = relay_call().start()
    _, relay = connect_verb(c)
    line = RelayLine.connect(relay.get("url", ""), AUTH_TOKEN)
    line.setup(new_call_sid())
    assert "not the call" in json.loads(line.wait_end())["reason"]


def test_malformed_and_unknown_messages_are_survived(app: Flask, relay_call: Call,
                                                     double: OpenAIDouble) -> None:
    c = relay_call().start()
    line = c.relay()
    line.send_raw("{this is not json")
    line.send_raw('["a", "list"]')
    line.send({"type": "something-new", "x": 1})
    line.send({"type": "prompt"})  # no voicePrompt: nothing to answer
    double.chat(Text("Still here. How can I help?"))
    assert line.say("hello").text == "Still here. How can I help?"
    wait_for(lambda: bool(events(app, c.call_sid, "call.response")))
    errors = [e for e in events(app, c.call_sid, "call.error") if e["kind"] == "relay"]
    assert len(errors) == 2


def test_a_100_kb_prompt_is_cut_and_answered(app: Flask, relay_call: Call,
                                             double: OpenAIDouble) -> None:
    c = relay_call().start()
    line = c.relay()
    double.chat(Text("That was a lot. How can I help?"))
    reply = line.say("word " * 20_000)  # 100 kB
    assert reply.text == "That was a lot. How can I help?"
    wait_for(lambda: bool(events(app, c.call_sid, "call.response")))
    [request] = double.chat_requests
    assert len(request.messages[-1]["content"]) <= 2000
    [transcript] = events(app, c.call_sid, "call.transcript")
    assert len(transcript["speech"]) <= 2000


def test_a_prompt_while_a_reply_streams_cuts_it_off(app: Flask, relay_call: Call,
                                                    double: OpenAIDouble) -> None:
    double.chat(Text("Let me tell you all about our many services and the hours we keep.",
                     tokens_per_second=8), Text("Sure, a cleaning it is."))
    c = relay_call().start()
    line = c.relay()
    line.say("tell me everything", wait=False)
    line.tokens(2)
    reply = line.say("actually just a cleaning")
    assert reply.text.endswith("Sure, a cleaning it is.")
    wait_for(lambda: len(events(app, c.call_sid, "call.response")) == 2)
    first, second = events(app, c.call_sid, "call.response")
    assert first["timings"]["interrupted"] == 1.0
    assert second["text"] == "Sure, a cleaning it is."
    assert [e["speech"] for e in events(app, c.call_sid, "call.transcript")] == [
        "tell me everything", "actually just a cleaning"]


def test_a_socket_that_drops_mid_reply_keeps_what_was_sent(app: Flask, relay_call: Call,
                                                           double: OpenAIDouble) -> None:
    double.chat(Text("Our hours are eight to five on weekdays and eight to one on Fridays.",
                     tokens_per_second=8))
    c = relay_call().start()
    line = c.relay()
    line.say("when are you open", wait=False)
    sent = line.tokens(2)
    line.close()
    wait_for(lambda: bool(events(app, c.call_sid, "call.response")), timeout=10)
    [response] = events(app, c.call_sid, "call.response")
    assert response["text"].startswith(sent.text)
    assert len(response["text"]) < len("Our hours are eight to five on weekdays and eight to "
                                       "one on Fridays.")


def test_a_network_failure_retries_inside_the_session_then_takes_its_edge(
        app: Flask, relay_call: Call, double: OpenAIDouble) -> None:
    double.chat(Status(503), Status(503))
    c = relay_call().start()
    line = c.relay()
    reply = line.say("hello?")
    assert reply.tokens == []
    handoff = json.loads(line.wait_end())
    assert handoff["event"]["type"] == "failed" and handoff["event"]["kind"] == "network"
    assert len(double.chat_requests) == 2  # the first try and its retry
    assert c.ended  # the `then` edge: goodbye
    kinds = [(e["edge"], e.get("strategy")) for e in events(app, c.call_sid, "call.node")
             if e["edge"] == "error:network"]
    assert kinds == [("error:network", "retry 1"), ("error:network", None)]


def test_a_setup_for_a_call_that_has_ended_ends_the_session(relay_call: Call,
                                                            double: OpenAIDouble) -> None:
    c = relay_call().start()
    assert c.waiting.verb is not None
    url = c.waiting.verb.get("url", "")
    assert c.hang_up().status == 200
    line = RelayLine.connect(url, AUTH_TOKEN)
    line.setup(c.call_sid)
    assert json.loads(line.wait_end())["reason"] == "the call has ended"
    line.wait_closed()
    assert double.chat_requests == []


def test_a_hang_up_mid_reply_keeps_what_was_sent(app: Flask, relay_call: Call,
                                                 double: OpenAIDouble) -> None:
    double.chat(Text("Our hours are eight to five on weekdays and eight to one on Fridays.",
                     tokens_per_second=8))
    c = relay_call().start()
    line = c.relay()
    line.say("when are you open", wait=False)
    sent = line.tokens(2)
    assert c.hang_up().status == 200  # the status callback ends the call mid-reply
    line.close()  # and Twilio closes the socket
    wait_for(lambda: bool(events(app, c.call_sid, "call.response")), timeout=10)
    [response] = events(app, c.call_sid, "call.response")
    assert response["text"].startswith(sent.text)
    assert response["timings"]["first_sent"] is not None
    [timing] = events(app, c.call_sid, "call.timing")  # the turn's timing is kept too
    assert timing["transport"] == "relay" and timing["done"] is not None
    assert [e["status"] for e in events(app, c.call_sid, "call.end")] == ["completed"]


def test_messages_before_setup_and_a_second_setup_are_ignored(
        app: Flask, relay_call: Call, double: OpenAIDouble) -> None:
    c = relay_call().start()
    line = c.relay(setup=False)
    line.say("hello before setup", wait=False)
    line.press("0", wait=False)  # would take the route, were it a turn
    line.setup(c.call_sid)
    line.setup(c.call_sid)
    double.chat(Text("Hi, how can I help?"))
    assert line.say("hello").text == "Hi, how can I help?"
    assert [e["speech"] for e in events(app, c.call_sid, "call.transcript")] == ["hello"]
    assert [e["status"] for e in events(app, c.call_sid, "call.relay")] == ["connected"]
    assert c.waiting.kind == "relay" and c.dialed == []


def test_a_message_over_the_size_limit_closes_the_socket_and_loses_nothing(
        app: Flask, relay_call: Call, double: OpenAIDouble) -> None:
    double.chat(Text("Yes, we do cleanings."))
    c = relay_call().start()
    line = c.relay()
    assert line.say("do you do cleanings").text == "Yes, we do cleanings."
    wait_for(lambda: bool(events(app, c.call_sid, "call.response")))
    line.say("x" * 300_000, wait=False)  # past what a session reads (256 kB)
    line.wait_closed()
    wait_for(lambda: [e["status"] for e in events(app, c.call_sid, "call.relay")] == [
        "connected", "closed"])
    assert [e["speech"] for e in events(app, c.call_sid, "call.transcript")] == [
        "do you do cleanings"]
    assert [e["text"] for e in events(app, c.call_sid, "call.response")] == [
        "Yes, we do cleanings."]
    assert len(double.chat_requests) == 1
