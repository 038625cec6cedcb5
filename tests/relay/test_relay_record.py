"""What a relay call leaves behind, as a `<Gather>` call does: its transcript and per-turn timings
in `/api/calls/<CallSid>` (the relay session, its replies, the one the caller talked over and
what they heard of it), the relay metrics, and log lines tagged with the CallSid. Whole calls
through the ConversationRelay simulator over real WebSockets, the OpenAI double as the model."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from engine.logs import ContextFilter
from engine.relay.simulator import RelayLine
from engine.simulator import SimulatedCall
from tests.ai.conftest import events
from tests.doubles.openai_server import OpenAIDouble, Text
from tests.relay.test_relay_calls import wait_for

Call = Callable[..., SimulatedCall]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
LONG = "Our hours are eight to five on weekdays and eight to one on Fridays."


def logged_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert client.post("/login", data={"password": "test-password"}).status_code == 302
    return client


def scrape(app: Flask) -> Samples:
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200
    found: Samples = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def talk_and_interrupt(app: Flask, relay_call: Call,
                       double: OpenAIDouble) -> tuple[SimulatedCall, RelayLine, str]:
    """A relay call with one reply heard whole and one the caller talked over; the call, its
    session, and what the caller heard of the second reply."""
    c = relay_call().start()
    line = c.relay()
    double.chat(Text("Yes, we do cleanings.", tokens_per_second=40),
                Text(LONG, tokens_per_second=8))
    assert line.say("do you do cleanings").text == "Yes, we do cleanings."
    wait_for(lambda: len(events(app, c.call_sid, "call.response")) == 1)
    line.say("when are you open", wait=False)
    heard = line.tokens(3)
    line.interrupt(heard.text, duration_ms=600)
    wait_for(lambda: bool(events(app, c.call_sid, "call.interrupt")))
    return c, line, heard.text


def test_a_relay_calls_transcript_and_timings_are_in_the_api(
        app: Flask, relay_call: Call, double: OpenAIDouble) -> None:
    c, _, heard = talk_and_interrupt(app, relay_call, double)
    body: dict[str, Any] = logged_in(app).get(f"/api/calls/{c.call_sid}").get_json()

    assert body["relay"] is True
    lines = [(line["role"], line["text"], line.get("transport")) for line in body["transcript"]]
    assert lines == [
        ("agent", "Hello, this is Acme Dental. How can I help?", None),  # the greeting
        ("caller", "do you do cleanings", None),
        ("agent", "Yes, we do cleanings.", "relay"),
        ("caller", "when are you open", None),
        ("agent", body["transcript"][4]["text"], "relay")]
    whole, cut = body["transcript"][2], body["transcript"][4]
    assert whole["interrupted"] is False and "heard" not in whole
    assert cut["interrupted"] is True
    assert LONG.startswith(cut["text"]) and cut["text"] != LONG  # what was sent of it
    assert cut["heard"] == heard
    for reply in (whole, cut):
        timings = reply["timings"]
        assert 0 <= timings["first_token"] <= timings["first_sent"] <= timings["done"]
    assert whole["timings"]["interrupted"] == 0.0 and cut["timings"]["interrupted"] == 1.0
    statuses = [e["data"]["status"] for e in body["events"] if e["name"] == "call.relay"]
    assert statuses == ["connected"]
    timing = [e["data"] for e in body["events"] if e["name"] == "call.timing"]
    assert [t["transport"] for t in timing] == ["relay", "relay"]


def test_relay_replies_are_timed_and_interruptions_counted_in_the_metrics(
        app: Flask, relay_call: Call, double: OpenAIDouble) -> None:
    before = scrape(app)
    talk_and_interrupt(app, relay_call, double)
    after = scrape(app)
    for moment in ("first_token", "first_sent", "done"):
        assert grew(before, after, "phoney_relay_reply_seconds_count", moment=moment) == 2
    assert grew(before, after, "phoney_relay_interruptions_total") == 1
    # Relay replies are not webhook times: the webhook's first-token histogram is left alone.
    assert grew(before, after, "phoney_model_first_token_seconds_count") == 0


def test_a_relay_sessions_log_lines_carry_the_call_sid(
        app: Flask, relay_call: Call, double: OpenAIDouble,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(ContextFilter())  # the call and route, as the server's handler
    c, line, _ = talk_and_interrupt(app, relay_call, double)
    line.close()
    wait_for(lambda: any(e.get("status") == "closed" for e in events(app, c.call_sid,
                                                                     "call.relay")))
    [opened] = [r for r in caplog.records
                if r.getMessage() == f"call {c.call_sid}: relay session on 'assist'"]
    # Every line of the socket's thread from the setup to its close names the call (other
    # tests' sessions may still be logging from threads of their own).
    session = [r for r in caplog.records
               if r.thread == opened.thread and r.created >= opened.created
               and r.name.startswith(("engine.relay", "engine.web.relay", "engine.calls"))]
    assert any("Twilio closed the socket" in r.getMessage() for r in session)
    assert all(getattr(r, "call_sid", "") == c.call_sid for r in session), [
        (r.getMessage(), getattr(r, "call_sid", "")) for r in session]
