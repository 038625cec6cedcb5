"""Streaming: the caller hears the first sentence as soon as it is complete, the rest is fetched
by the continuation webhook (from the store, by any app instance), partial replies are recorded
as they arrive, and each turn records its latency."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from engine.calls import EventRecorder
from engine.simulator import HttpAnswer, Transport
from engine.store import NewEvent, open_store
from tests.ai.conftest import (
    Phone,
    call_on,
    events,
    heard_since,
    heard_text,
    routed,
    store_of,
    wait_for_warmup,
)
from tests.doubles.openai_server import Cut, OpenAIDouble, Text, tokens
from tests.support import Clock, client_transport

FIRST = "Sure thing."
REST = ("We offer cleanings, checkups, fillings and whitening for the whole family. "
        "Would you like me to connect you with the front desk to book a visit?")
REPLY = f"{FIRST} {REST}"
TTFT, RATE = 0.3, 20.0
STREAM_SECONDS = TTFT + (len(tokens(REPLY)) - 1) / RATE


def slow_reply() -> Text:
    return Text(REPLY, ttft=TTFT, tokens_per_second=RATE)


def timed(transport: Transport, seen: list[tuple[str, HttpAnswer, float]],
          on_answer: Callable[[str], None] = lambda path: None) -> Transport:
    """Record (path, answer, monotonic time at answer) and call `on_answer` as each arrives."""

    def post(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpAnswer:
        answer = transport(url, params, headers)
        path = urlsplit(url).path
        seen.append((path, answer, time.monotonic()))
        on_answer(path)
        return answer

    return post


def verbs(body: str) -> list[ElementTree.Element]:
    return list(ElementTree.fromstring(body))


def test_the_first_sentence_is_answered_while_the_rest_is_generated(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    c = phone().start()
    c_sid = c.call_sid
    seen: list[tuple[str, HttpAnswer, float]] = []
    partials_at_first_answer: list[str] = []

    def on_answer(path: str) -> None:
        if path == "/api/voice/input":
            partials_at_first_answer.extend(
                e["text"] for e in events(app, c_sid, "call.response.partial"))

    c.transport = timed(c.transport, seen, on_answer)
    double.chat(slow_reply())
    mark = len(c.heard)
    asked = time.monotonic()
    c.say("what do you do")

    (first_path, first, first_at), (resume_path, rest, rest_at) = seen
    assert first_path == "/api/voice/input" and resume_path == "/api/voice/resume"
    # The first answer: the first sentence only, then a redirect to the continuation.
    first_verbs = verbs(first.body)
    assert [v.tag for v in first_verbs] == ["Play", "Redirect"]
    assert urlsplit(first_verbs[1].text or "").path == "/api/voice/resume"
    assert heard_text(app, double, c)[mark:] == [FIRST, REST]
    # ... and it came well before the model finished (a ratio, not a time).
    assert first_at - asked < 0.8 * STREAM_SECONDS
    assert rest_at - asked >= STREAM_SECONDS * 0.9
    # The rest is spoken inside the next <Gather>, so the caller can interrupt it.
    assert [v.tag for v in verbs(rest.body)][:1] == ["Gather"]

    # Partial replies were in the store while the reply was still arriving.
    assert partials_at_first_answer, "no call.response.partial before the first answer"
    assert all(len(text) < len(REPLY) for text in partials_at_first_answer)
    partials = [e["text"] for e in events(app, c.call_sid, "call.response.partial")]
    assert partials[-1] == REPLY
    assert all(REPLY.startswith(text) for text in partials)

    responses = events(app, c.call_sid, "call.response")
    assert [(r["text"], r["final"]) for r in responses] == [(FIRST, False), (REST, True)]


def test_each_turn_records_its_timings(app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(slow_reply())
    c = phone().start()
    c.say("what do you do")

    (timing,) = events(app, c.call_sid, "call.timing")
    assert timing["node"] == "assist" and timing["offline"] is False
    first_token, first_sentence, answer = (timing["first_token"], timing["first_sentence"],
                                           timing["answer"])
    assert 0 < first_token <= first_sentence <= answer
    assert first_token >= TTFT * 0.9  # measured on a real clock, not the calls' frozen one
    assert answer < STREAM_SECONDS  # the answer did not wait for the whole reply


def test_the_continuation_is_served_by_another_app_instance(
        app: Flask, make_app: Callable[..., Flask], double: OpenAIDouble,
        clock: Clock) -> None:
    second = make_app()  # same SQLite file, its own memory
    wait_for_warmup(second)
    assert second.extensions["phoney"].call_service is not \
        app.extensions["phoney"].call_service
    seen: list[tuple[str, HttpAnswer, float]] = []
    transport = routed(client_transport(app.test_client()),
                       {"/api/voice/resume": timed(client_transport(second.test_client()),
                                                   seen)})
    c = call_on(app, clock, transport).start()
    double.chat(slow_reply())
    mark = len(c.heard)
    c.say("what do you do")

    assert [path for path, _, _ in seen] == ["/api/voice/resume"]  # served by `second`
    assert heard_text(app, double, c)[mark:] == [FIRST, REST]
    assert c.waiting.kind == "gather"
    state = store_of(second).get_state(c.call_sid)
    assert state is not None and state.stream is None and state.pending is None
    assert len(double.chat_requests) == 1  # the rest was read, not asked again


def test_a_reply_cut_off_after_its_first_sentence_keeps_what_is_whole_and_listens(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    text = "Sure thing. We offer cleanings and checkups for everyone. Would you like to book"
    keep = len(tokens("Sure thing. We offer cleanings and checkups for everyone. Would you"))
    double.chat(Cut(text, keep=keep, ttft=TTFT, tokens_per_second=RATE))
    c = phone().start()
    mark = len(c.heard)
    c.say("what do you do")

    assert heard_since(app, double, c, mark) == \
        "Sure thing. We offer cleanings and checkups for everyone."
    assert c.waiting.kind == "gather"  # the turn ends; the caller is not greeted anew
    assert len(double.chat_requests) == 1
    assert [e["kind"] for e in events(app, c.call_sid, "call.error")] == ["network"]
    state = store_of(app).get_state(c.call_sid)
    assert state is not None and state.pending is None and state.stream is None


def test_half_a_sentence_is_never_spoken(app: Flask, phone: Phone,
                                         double: OpenAIDouble) -> None:
    double.chat(Cut("We offer cleanings and checkups for", keep=4),
                Text("We offer cleanings and checkups."))
    c = phone().start()
    mark = len(c.heard)
    c.say("what do you do")

    assert heard_since(app, double, c, mark) == "We offer cleanings and checkups."
    assert [e["kind"] for e in events(app, c.call_sid, "call.error")] == ["network"]


def test_every_event_of_a_cut_reply_is_heard_by_the_recorders_observers(
        make_app: Callable[..., Flask], app_config: dict[str, Any], clock: Clock,
        double: OpenAIDouble) -> None:
    # The metrics count what the recorder's observers hear: the responder's own events (a
    # partial reply, a reply cut short) must reach them like the step's.
    store = open_store(app_config["STORE_URL"])
    observed: list[NewEvent] = []
    app = make_app(ports={"store": store, "recorder": EventRecorder(store, [observed.extend])})
    wait_for_warmup(app)
    text = "Sure thing. We offer cleanings and checkups for everyone. Would you like to book"
    keep = len(tokens("Sure thing. We offer cleanings and checkups for everyone. Would you"))
    double.chat(Cut(text, keep=keep, ttft=TTFT, tokens_per_second=RATE))
    c = call_on(app, clock).start()
    c.say("what do you do")

    stored = [(e.name, e.data) for e in store.events_after(0, c.call_sid)]
    assert ("call.error", "network") in [(name, data.get("kind")) for name, data in stored]
    assert sorted(map(repr, stored)) == sorted(repr((e.name, dict(e.data))) for e in observed)
