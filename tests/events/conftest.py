"""Fixtures for the live-event tests: a store, the Pusher double, fake sinks, a logged-in client."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.authoring.transports import app_transport
from engine.settings import ENV_KEYS
from engine.simulator import SimulatedCall, Transport
from engine.store import CallStore, NewEvent, StoredEvent, open_store
from engine.web.app import create_app
from engine.web.events_api import EXTENSION, LiveEvents
from tests.doubles.pusher_server import PusherDouble

ROOT = Path(__file__).resolve().parents[2]
SID = "CA" + "0123456789abcdef" * 2
OTHER_SID = "CA" + "fedcba9876543210" * 2
PASSWORD = "dashboard-password"
AUTH_TOKEN = "events-test-token"


def wait_until(check: Callable[[], bool], timeout: float = 10.0, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def record(store: CallStore, count: int, call_sid: str = SID, name: str = "call.say",
           **data: object) -> list[StoredEvent]:
    """`count` events, numbered in `data.n` from where the call's events stand."""
    before = store.last_event_id()
    start = len(store.events_after(0, call_sid, limit=100_000))
    store.record_events(call_sid, [NewEvent(name, {"n": start + i, **data})
                                   for i in range(count)], at=time.time())
    return store.events_after(before, call_sid)


class FakeSink:
    """Records what it is given; `fail(n)` makes the next n deliveries raise."""

    def __init__(self, name: str = "fake", max_batch: int = 3, delay: float = 0.0) -> None:
        self.name = name
        self.max_batch = max_batch
        self.delay = delay
        self.delivered: list[StoredEvent] = []
        self.attempts: list[tuple[float, list[int]]] = []  # (monotonic time, event ids)
        self.failing = 0
        self.lock = threading.Lock()

    def fail(self, times: int) -> None:
        self.failing = times

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        with self.lock:
            self.attempts.append((time.monotonic(), [event.id for event in events]))
        if self.delay:
            time.sleep(self.delay)
        if self.failing > 0:
            self.failing -= 1
            raise ConnectionError("the sink is down")
        with self.lock:
            self.delivered += events

    @property
    def ids(self) -> list[int]:
        with self.lock:
            return [event.id for event in self.delivered]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


@pytest.fixture
def open_store_again(store_url: str) -> Iterator[Callable[[], CallStore]]:
    """Another handle on the same database, as another server process would open it."""
    opened: list[CallStore] = []

    def open_() -> CallStore:
        opened.append(open_store(store_url))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store_again: Callable[[], CallStore]) -> CallStore:
    return open_store_again()


@pytest.fixture
def pusher_double() -> Iterator[PusherDouble]:
    with PusherDouble() as double:
        yield double


def pusher_config(double: PusherDouble, **more: object) -> dict[str, object]:
    return {"PUSHER_APP_ID": double.app_id, "PUSHER_KEY": double.key,
            "PUSHER_SECRET": double.secret, "PUSHER_HOST": double.url, **more}


def logged_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert client.post("/login", data={"password": PASSWORD}).status_code == 302
    return client


def live_of(app: Flask) -> LiveEvents:
    found: LiveEvents = app.extensions[EXTENSION]
    return found


def store_of(app: Flask) -> CallStore:
    found: CallStore = app.extensions["phoney"].store
    return found


@pytest.fixture
def new_app(monkeypatch: pytest.MonkeyPatch, store_url: str) -> Iterator[Callable[..., Flask]]:
    """`new_app(**config)`: the app on the bundled flows and this test's store (several apps on
    one store are several server processes). Publishers are stopped and stores closed at the end.
    """
    for key in ENV_KEYS:  # a developer's own settings stay out
        monkeypatch.delenv(key, raising=False)
    made: list[Flask] = []

    def make(**config: Any) -> Flask:
        app = create_app({"PROJECT_ROOT": str(ROOT), "STORE_URL": store_url,
                          "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "DASHBOARD_PASSWORD": PASSWORD,
                          "SECRET_KEY": "events-test-secret", "TESTING": True, **config})
        made.append(app)
        return app

    yield make
    for app in made:
        publisher = live_of(app).publisher
        if publisher is not None:
            publisher.stop()
        store_of(app).close()


def transport(app: Flask) -> Transport:
    """The simulator's requests, through a Flask test client (no sockets), timed."""
    return app_transport(app)


def simulated_call(app: Flask) -> SimulatedCall:
    return SimulatedCall(transport(app), "http://localhost", AUTH_TOKEN)
