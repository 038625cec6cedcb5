"""`GET /api/events` holds a server thread while open, so streams are capped: per signed-in
session (SSE_STREAMS_PER_SESSION) and per process (SSE_STREAMS_PER_PROCESS, by default a quarter
of gunicorn's threads), so Twilio's webhooks always find a free thread. Over a cap the answer is
429 (this session) or 503 (this process) with Retry-After, and a closed stream frees its place."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.test import TestResponse

from engine.settings import Settings
from engine.web.stream_limits import StreamSlots, default_process_streams
from tests.events.conftest import live_of, logged_in


@contextmanager
def streams(responses: list[TestResponse]) -> Iterator[list[TestResponse]]:
    try:
        yield responses
    finally:
        for response in responses:
            response.close()


def test_a_session_gets_its_share_of_streams_and_no_more(new_app: Callable[..., Flask]) -> None:
    app = new_app(SSE_LIFETIME=30, SSE_STREAMS_PER_SESSION=2, SSE_STREAMS_PER_PROCESS=10)
    mine, theirs = logged_in(app), logged_in(app)
    with streams([mine.get("/api/events", buffered=False) for _ in range(2)]) as open_:
        assert [response.status_code for response in open_] == [200, 200]
        refused = mine.get("/api/events", buffered=False)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert "streams" in refused.get_json()["error"]
        with streams([theirs.get("/api/events", buffered=False)]) as other:
            assert other[0].status_code == 200  # another session has its own share
        assert live_of(app).open_streams == 2

        open_.pop().close()  # a tab goes away: its place is free again
        with streams([mine.get("/api/events", buffered=False)]) as again:
            assert again[0].status_code == 200
    assert live_of(app).open_streams == 0


def test_a_process_serves_at_most_its_cap_of_streams(new_app: Callable[..., Flask]) -> None:
    app = new_app(SSE_LIFETIME=30, SSE_STREAMS_PER_SESSION=4, SSE_STREAMS_PER_PROCESS=3)
    clients = [logged_in(app) for _ in range(4)]
    with streams([client.get("/api/events", buffered=False) for client in clients[:3]]) as open_:
        assert [response.status_code for response in open_] == [200] * 3
        refused = clients[3].get("/api/events", buffered=False)
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) > 0
        assert clients[3].get("/api/calls").status_code == 200  # everything else still served
    with streams([clients[3].get("/api/events", buffered=False)]) as later:
        assert later[0].status_code == 200


def test_a_refused_or_bad_request_holds_no_place(new_app: Callable[..., Flask]) -> None:
    app = new_app(SSE_LIFETIME=30, SSE_STREAMS_PER_SESSION=1)
    client = logged_in(app)
    for _ in range(3):
        assert client.get("/api/events?after=x").status_code == 400
    with streams([client.get("/api/events", buffered=False)]) as open_:
        assert open_[0].status_code == 200
        for _ in range(3):
            assert client.get("/api/events", buffered=False).status_code == 429
    assert live_of(app).open_streams == 0


def test_the_defaults_leave_most_of_gunicorns_threads_to_webhooks() -> None:
    settings = Settings.load(environ={})
    assert settings.sse_streams_per_session == 4
    assert default_process_streams({"GUNICORN_THREADS": "64"}) == 16
    assert default_process_streams({}) == 16  # gunicorn.conf.py's default of 64 threads
    assert default_process_streams({"GUNICORN_THREADS": "2"}) == 1
    slots = StreamSlots(per_session=4, per_process=default_process_streams({}))
    assert slots.per_process == 16
    taken = [slots.take(f"session-{n}") for n in range(16)]
    assert all(callable(release) for release in taken)
    assert not callable(slots.take("one more"))
    for release in taken:
        release()  # type: ignore[operator]
        release()  # type: ignore[operator]  # twice is once
    assert slots.open == 0
