"""Two gunicorn servers on one Redis answer one call between them.

A load balancer may send each of a call's webhooks to a different server. Here every other
webhook goes to the other server (each signed for the URL it is actually sent to), and the call
still runs its whole course: greeting, an answer, a transfer nobody picks up, voicemail, hangup.
With a model, a streamed reply started on one server is finished by the continuation webhook on
the other, from the store. The dashboard's event stream on server A shows what happened through
server B, since both read the same store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit
from xml.etree.ElementTree import canonicalize

import pytest
import requests

from engine.flows.loader import load_project
from engine.simulator import SimulatedCall
from engine.store import StoredEvent
from engine.store.redis_store import RedisStore
from tests.doubles.openai_server import OpenAIDouble, Text, synthesise, tokens
from tests.e2e.conftest import StartServers, login, server_env
from tests.e2e.harness import (
    ROOT,
    EventStream,
    Gunicorn,
    SpreadTransport,
    Window,
    store_url,
    windowed,
)
from tests.support import AUTH_TOKEN

pytestmark = pytest.mark.e2e

RECEPTIONIST = "+15550001000"
FRONT_DESK = "+15550001111"
ASKED = "Hi, are you guys open on Saturdays?"  # one of the friendly personality's examples
FIRST = "Sure thing."
REST = ("We offer cleanings, checkups, fillings and whitening for the whole family. "
        "Would you like me to connect you with the front desk to book a visit?")
REPLY = f"{FIRST} {REST}"


def caused_by(windows: list[Window], server: int, events: list[StoredEvent]) -> list[int]:
    """Ids of the events stored by webhooks that `server` answered (streamed partial replies
    are left out: a model stream's thread writes them whenever its text arrives)."""
    ids = set()
    for window in windows:
        if window.server == server:
            ids |= {event.id for event in events
                    if window.first < event.id <= window.last
                    and event.name != "call.response.partial"}
    return sorted(ids)


def spoken(events: list[StoredEvent]) -> list[str]:
    """What the store says the caller was told: `call.say` and `call.response` texts."""
    return [str(event.data["text"]) for event in events
            if event.name in ("call.say", "call.response") and event.data.get("text")]


def same_twiml(one: str | None, other: str) -> bool:
    return one is not None and canonicalize(one) == canonicalize(other)


def check_answers_stored(store: RedisStore, call_sid: str, spread: SpreadTransport) -> None:
    """Each webhook's answer is stored under its idempotency token (a retry gets the same)."""
    for sent in spread.sent:
        stored = store.stored_response(call_sid, f"token:{sent.token}")
        assert same_twiml(stored, sent.body), (sent.path, stored, sent.body)


def check_the_stream_shows_server_b(stream: EventStream, windows: list[Window],
                                    events: list[StoredEvent]) -> None:
    from_b = caused_by(windows, 1, events)
    assert from_b, "server B stored no events"
    missing = stream.wait_for({event.id for event in events})
    assert not missing, f"events stored but not streamed by server A: {sorted(missing)}"
    streamed = [(e.id, e.name) for e in stream.events if e.id in {ev.id for ev in events}]
    assert streamed == [(event.id, event.name) for event in events]  # in order, once each
    by_id = {e.id: json.loads(e.data) for e in stream.events}
    assert all(by_id[i]["call_sid"] == events[0].call_sid for i in from_b)


def test_a_call_alternating_between_two_servers_completes(
        redis_prefix: str, store: RedisStore, start_servers: StartServers) -> None:
    a, b = start_servers(2, server_env(store_url(redis_prefix)))
    session = login(a)
    stream = EventStream(session, a.url).start()
    try:
        spread = SpreadTransport(AUTH_TOKEN, [a.url, b.url])
        windows: list[Window] = []
        c = SimulatedCall(windowed(spread, store, windows), a.url, AUTH_TOKEN, to=RECEPTIONIST)
        c.start()
        c.say(ASKED)
        c.say("Can I talk to a person?")
        assert c.waiting.kind == "dial" and c.dialed == [FRONT_DESK]
        c.dial_ends("no-answer")
        assert c.waiting.kind == "record"
        c.record(12)
        assert c.ended
        closing = c.hang_up()

        # Every webhook answered 200, alternately by A and B, each signed for its own server.
        assert closing.status == 200
        assert [(s.server, s.path, s.status) for s in spread.sent] == [
            (0, "/api/incoming-call", 200), (1, "/api/voice/input", 200),
            (0, "/api/voice/input", 200), (1, "/api/voice/dial", 200),
            (0, "/api/voice/recording", 200), (1, "/api/call-status", 200)]
        assert all(urlsplit(s.url).netloc == urlsplit((a, b)[s.server].url).netloc
                   for s in spread.sent)

        # The whole course of the call, as the caller heard it and as the store recorded it.
        friendly = load_project(ROOT).registry.personalities["friendly"]  # type: ignore[union-attr]
        example = next(e.response for e in friendly.examples if e.input == ASKED)
        heard = [item.text for item in c.heard]
        assert heard[0].startswith("Thanks for calling Acme Dental")
        assert example in heard
        assert "Connecting you to the front desk now." in heard
        assert any("leave your name" in text for text in heard)
        assert heard[-1].endswith("Goodbye!")
        events = store.events_after(0, c.call_sid)
        assert spoken(events) == heard
        edges = [(e.data["edge"], e.data["node"]) for e in events if e.name == "call.node"]
        assert edges == [("next", "assist"), ("route", "front_desk"),
                         ("transfer_failed", "missed"), ("next", "voicemail"),
                         ("next", "goodbye")]
        names = [e.name for e in events]
        assert names[0] == "call.start" and names[-1] == "call.end"
        assert names.count("call.transcript") == 2 and "call.recording" in names
        summary = store.get_call(c.call_sid)
        assert summary is not None and summary.status == "completed"
        assert summary.ended_at is not None and summary.duration == 60

        # Every answer is the one stored for that webhook (a retry would get the same).
        check_answers_stored(store, c.call_sid, spread)

        # Server A streams the events that server B's webhooks stored.
        check_the_stream_shows_server_b(stream, windows, events)
        # ... and B serves A's dashboard session: both servers share the session key.
        detail = session.get(f"{b.url}/api/calls/{c.call_sid}", timeout=10)
        assert detail.status_code == 200
        assert detail.json()["status"] == "completed"
    finally:
        stream.close()


@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(api_key="test-key") as server:
        yield server
    assert server.errors == [], "the OpenAI double failed internally"


def heard_texts(c: SimulatedCall, double: OpenAIDouble, server: Gunicorn) -> list[str]:
    """What the caller heard, with each <Play> turned back into the text it was made from
    (the double's audio depends only on its text), fetched from `server`."""
    by_audio = {synthesise("mp3", r.get("input")): r.get("input")
                for r in double.speech_requests if r.get("input")}
    found = []
    for item in c.heard:
        if item.audio_url:
            audio = requests.get(server.url + urlsplit(item.audio_url).path, timeout=10)
            assert audio.status_code == 200, item.audio_url
            found.append(by_audio.get(audio.content, f"<unknown audio {item.audio_url}>"))
        else:
            found.append(item.text)
    return found


def test_a_streamed_reply_is_finished_by_the_other_server(
        redis_prefix: str, store: RedisStore, double: OpenAIDouble,
        start_servers: StartServers) -> None:
    a, b = start_servers(2, server_env(store_url(redis_prefix), OPENAI_API_KEY="test-key",
                                       OPENAI_BASE_URL=double.base_url))
    session = login(a)
    stream = EventStream(session, a.url).start()
    try:
        spread = SpreadTransport(AUTH_TOKEN, [a.url, b.url])
        windows: list[Window] = []
        c = SimulatedCall(windowed(spread, store, windows), a.url, AUTH_TOKEN, to=RECEPTIONIST)
        c.start()
        # About two seconds of streaming: the first sentence is answered long before the end.
        double.chat(Text(REPLY, ttft=0.2, tokens_per_second=len(tokens(REPLY)) / 2))
        mark = len(c.heard)
        c.say("what do you do")
        reply_heard = len(c.heard)
        c.say("Can I talk to a person?")
        c.dial_ends("no-answer")
        c.record(12)
        assert c.ended
        assert c.hang_up().status == 200

        paths = [(s.server, s.path, s.status) for s in spread.sent]
        assert paths == [
            (0, "/api/incoming-call", 200), (1, "/api/voice/input", 200),
            (0, "/api/voice/resume", 200), (1, "/api/voice/input", 200),
            (0, "/api/voice/dial", 200), (1, "/api/voice/recording", 200),
            (0, "/api/call-status", 200)]
        # B started the model's stream and answered its first sentence; A, which never saw the
        # stream, answered the rest from the store.
        assert [r.get("stream") for r in double.chat_requests] == [True]
        assert double.chat_requests[0].messages[-1]["content"] == "what do you do"
        assert heard_texts(c, double, b)[mark:reply_heard] == [FIRST, REST]
        assert heard_texts(c, double, a)[mark:reply_heard] == [FIRST, REST]

        events = store.events_after(0, c.call_sid)
        responses = [(e.data["text"], e.data["final"]) for e in events
                     if e.name == "call.response"]
        assert responses == [(FIRST, False), (REST, True)]
        first_window = next(w for w in windows if w.path == "/api/voice/input")
        resume_window = next(w for w in windows if w.path == "/api/voice/resume")
        assert first_window.server == 1 and resume_window.server == 0
        by_window = {e.id: e for e in events}
        assert any(by_window[i].name == "call.response" and by_window[i].data["final"] is False
                   for i in range(first_window.first + 1, first_window.last + 1)
                   if i in by_window)
        partials = [e.data["text"] for e in events if e.name == "call.response.partial"]
        assert partials and partials[-1] == REPLY
        edges = [e.data["edge"] for e in events if e.name == "call.node"]
        assert edges == ["next", "route", "transfer_failed", "next", "next"]
        summary = store.get_call(c.call_sid)
        assert summary is not None and summary.status == "completed"
        check_answers_stored(store, c.call_sid, spread)

        check_the_stream_shows_server_b(stream, windows, events)
    finally:
        stream.close()
