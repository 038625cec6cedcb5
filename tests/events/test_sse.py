"""`GET /api/events`: server-sent events from the store, in order, resumable, and leak-free."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from engine.events.payload import event_json
from engine.store import StoredEvent
from tests.events.conftest import (
    OTHER_SID,
    PASSWORD,
    SID,
    live_of,
    logged_in,
    record,
    store_of,
    wait_until,
)


@dataclass
class Message:
    id: int | None = None
    event: str = ""
    data: str = ""
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


def messages(chunks: Iterable[bytes | str]) -> Iterator[Message]:
    """Parse an event stream as EventSource does (the fields this server sends)."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            message = Message()
            for line in block.split("\n"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    message.comments.append(value)
                elif name == "id":
                    message.id = int(value)
                elif name == "event":
                    message.event = value
                elif name == "data":
                    message.data += value
                elif name == "retry":
                    message.retry = int(value)
            yield message


def events_of(stream: Iterator[Message], count: int) -> list[Message]:
    found: list[Message] = []
    for message in stream:
        if message.event:
            found.append(message)
            if len(found) == count:
                break
    return found


def assert_same(messages_: list[Message], events: list[StoredEvent]) -> None:
    assert [m.id for m in messages_] == [e.id for e in events]
    assert [m.event for m in messages_] == [e.name for e in events]
    assert [m.json() for m in messages_] == [event_json(e) for e in events]


def test_needs_a_login_and_sane_ids(new_app: Callable[..., Flask]) -> None:
    app = new_app()
    assert app.test_client().get("/api/events").status_code == 401
    client = logged_in(app)
    assert client.get("/api/events", headers={"Last-Event-ID": "abc"}).status_code == 400
    assert client.get("/api/events?after=-1").status_code == 400
    assert client.get("/api/events?call=../x").status_code == 400


def test_a_client_gets_the_events_in_order_with_their_ids(new_app: Callable[..., Flask]) -> None:
    app = new_app(SSE_LIFETIME=10)
    store = store_of(app)
    events = record(store, 3) + record(store, 2, OTHER_SID, name="call.transcript",
                                       speech="¿Tienen citas mañana? 🦷")

    answer = logged_in(app).get("/api/events?after=0", buffered=False)
    try:
        assert answer.status_code == 200
        assert answer.mimetype == "text/event-stream"
        assert answer.headers["Cache-Control"] == "no-cache"
        stream = messages(answer.response)
        first = next(stream)
        assert first.retry == 2000 and not first.event
        assert_same(events_of(stream, 5), events)
    finally:
        answer.close()


def test_resuming_with_last_event_id_has_no_duplicates_or_gaps(
        new_app: Callable[..., Flask]) -> None:
    app = new_app(SSE_LIFETIME=10)
    store = store_of(app)
    client = logged_in(app)
    events = record(store, 6)

    first = client.get("/api/events?after=0", buffered=False)
    seen = events_of(messages(first.response), 3)
    first.close()  # the connection drops after three events
    assert live_of(app).open_streams == 0

    later = threading.Timer(0.3, lambda: events.extend(record(store, 2)))
    later.start()  # written while the client is reconnected and waiting
    again = client.get("/api/events", headers={"Last-Event-ID": str(seen[-1].id)},
                       buffered=False)
    try:
        seen += events_of(messages(again.response), 5)
    finally:
        again.close()
        later.join()
    assert_same(seen, events)

    by_query = client.get(f"/api/events?after={events[4].id}", buffered=False)
    try:  # for clients that cannot set the header
        assert_same(events_of(messages(by_query.response), 3), events[5:])
    finally:
        by_query.close()


def test_one_calls_stream_starts_at_its_beginning_all_calls_from_now(
        new_app: Callable[..., Flask]) -> None:
    app = new_app(SSE_LIFETIME=10)
    store = store_of(app)
    client = logged_in(app)
    history = record(store, 2) + record(store, 2, OTHER_SID)

    one = client.get(f"/api/events?call={SID}", buffered=False)
    everything = client.get("/api/events", buffered=False)
    try:
        mine = messages(one.response)
        everyone = messages(everything.response)
        next(mine), next(everyone)  # the opening retry: the streams have taken their start
        newer = record(store, 1, OTHER_SID) + record(store, 1)
        assert_same(events_of(mine, 3), [*history[:2], newer[1]])
        assert_same(events_of(everyone, 2), newer)
    finally:
        one.close()
        everything.close()


def test_quiet_streams_send_heartbeats_and_end_after_their_lifetime(
        new_app: Callable[..., Flask]) -> None:
    app = new_app(SSE_LIFETIME=0.5, SSE_HEARTBEAT=0.1, SSE_POLL=0.01)
    started = time.monotonic()

    answer = logged_in(app).get("/api/events", buffered=False)
    every = list(messages(answer.response))  # ends on its own
    answer.close()

    assert 0.5 <= time.monotonic() - started < 5
    assert sum(1 for m in every if "heartbeat" in m.comments) >= 3
    assert live_of(app).open_streams == 0


def test_an_id_from_another_database_does_not_skip_new_events(
        new_app: Callable[..., Flask]) -> None:
    app = new_app(SSE_LIFETIME=10)
    store = store_of(app)
    record(store, 2)

    answer = logged_in(app).get("/api/events", headers={"Last-Event-ID": "999999"},
                                buffered=False)
    try:
        stream = messages(answer.response)
        next(stream)
        new = record(store, 1)
        assert_same(events_of(stream, 1), new)
    finally:
        answer.close()


@pytest.fixture
def served(new_app: Callable[..., Flask]) -> Iterator[tuple[Flask, str]]:
    """The app over real HTTP (threaded, as `flask run` serves)."""
    app = new_app(SSE_LIFETIME=30, SSE_HEARTBEAT=0.05, SSE_POLL=0.01)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def open_raw_stream(url: str, cookie: str, until: bytes) -> socket.socket:
    """A plain socket reading `/api/events?after=0` until `until` has arrived."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(f"GET /api/events?after=0 HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                 f"Cookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n".encode())
    received = b""
    while until not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    assert received.startswith(b"HTTP/1.1 200")
    return sock


def test_a_client_that_disconnects_mid_stream_leaves_no_stream_running(
        served: tuple[Flask, str]) -> None:
    app, url = served
    store = store_of(app)
    session = requests.Session()
    assert session.post(f"{url}/login", data={"password": PASSWORD},
                        allow_redirects=False).status_code == 302
    cookie = "; ".join(f"{name}={value}" for name, value in session.cookies.items())
    events = record(store, 3)

    sockets = [open_raw_stream(url, cookie, f"id: {events[1].id}\n".encode())
               for _ in range(3)]
    assert live_of(app).open_streams == 3
    for sock in sockets:
        sock.close()  # the browser tab goes away mid-stream

    # The next heartbeat finds the socket gone and the generator is closed.
    assert wait_until(lambda: live_of(app).open_streams == 0, timeout=5)
    assert session.get(f"{url}/api/calls", timeout=5).status_code == 200  # still serving
