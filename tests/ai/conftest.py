"""Fixtures for the AI and speech suites: the app wired to a local OpenAI-compatible double.

`app` has OPENAI_API_KEY="test-key" and OPENAI_BASE_URL pointing at `double`, a SQLite store in
tmp_path, the bundled flows and the test auth token (the rest comes from tests/conftest.py). Its
start-up speech warm-up has finished before a test sees it, so the double's queues and request
counts belong to the test alone.

Calls go through `phone` (the in-process transport, with Twilio's pauses moving the calls'
clock) and what the caller heard is read back as text with `heard_text`, <Play> included: the
audio served for a URL is matched with the text the double synthesised it from.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from engine.ai.model import ModelResponder, make_client
from engine.calls import EventRecorder
from engine.simulator import HttpAnswer, SimulatedCall, Transport
from engine.store import CallStore, open_store
from tests.doubles.openai_server import OpenAIDouble, synthesise
from tests.support import AUTH_TOKEN, Clock, client_transport

RECEPTIONIST = "+15550001000"
FRONT_DESK = "+15550001111"
WARMUP_TIMEOUT = 30.0

Phone = Callable[..., SimulatedCall]


@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(api_key="test-key") as server:
        yield server
    assert server.errors == [], "the OpenAI double failed internally"


@pytest.fixture
def app_config(app_config: dict[str, Any], double: OpenAIDouble) -> dict[str, Any]:
    return {**app_config, "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": double.base_url}


@pytest.fixture(autouse=True)
def background_work_ends_before_the_store_closes(make_app: Callable[..., Flask],
                                                 double: OpenAIDouble) -> Iterator[None]:
    """Model streams and warm-ups run in threads that outlive a webhook; the apps' stores close
    at the end of a test, and a SQLite connection closed under a thread that is using it can
    crash the interpreter. So: cut the double's hanging answers, and let those threads end."""
    yield
    double.close()
    for thread in threading.enumerate():
        if thread.name.startswith(("model-", "speech-warmup")):
            thread.join(timeout=10)


def wait_for_warmup(app: Flask) -> None:
    warmup = app.extensions["phoney"].warmup
    if warmup is not None:
        assert warmup.wait(WARMUP_TIMEOUT), "speech warm-up did not finish"


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    created = make_app()
    wait_for_warmup(created)
    return created


@pytest.fixture
def tight_app(make_app: Callable[..., Flask], app_config: dict[str, Any],
              double: OpenAIDouble) -> Callable[..., Flask]:
    """`tight_app(**budgets)`: an app whose model responder has other deadlines
    (`webhook_budget`, `first_sentence_budget`), handed to the composition root."""

    def make(**budgets: float) -> Flask:
        store = open_store(app_config["STORE_URL"])
        recorder = EventRecorder(store)
        responder = ModelResponder(make_client("test-key", double.base_url), store,
                                   "gpt-4o-mini", recorder=recorder, **budgets)
        created = make_app(ports={"store": store, "responder": responder,
                                  "recorder": recorder})
        wait_for_warmup(created)
        return created

    return make


def store_of(app: Flask) -> CallStore:
    found: CallStore = app.extensions["phoney"].store
    return found


def events(app: Flask, call_sid: str, name: str | None = None) -> list[dict[str, Any]]:
    return [{"name": event.name, **event.data}
            for event in store_of(app).events_after(0, call_sid)
            if name is None or event.name == name]


def pausing(transport: Transport, clock: Clock) -> Transport:
    """Twilio plays a <Pause> before it follows the next verb: the calls' clock moves with it."""

    def post(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpAnswer:
        answer = transport(url, params, headers)
        if answer.status == 200 and "<Pause" in answer.body:
            for verb in ElementTree.fromstring(answer.body).iter("Pause"):
                clock.advance(float(verb.get("length", "1")))
        return answer

    return post


def routed(default: Transport, routes: Mapping[str, Transport]) -> Transport:
    """Send each path to its own transport (e.g. a second app instance), the rest to `default`."""

    def post(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpAnswer:
        return routes.get(urlsplit(url).path, default)(url, params, headers)

    return post


def call_on(app: Flask, clock: Clock, transport: Transport | None = None,
            **options: Any) -> SimulatedCall:
    """A SimulatedCall through `app` in-process (or `transport`), to the receptionist unless
    `to=` says otherwise."""
    options.setdefault("to", RECEPTIONIST)
    chosen = transport or client_transport(app.test_client())
    return SimulatedCall(pausing(chosen, clock), "http://localhost", AUTH_TOKEN, **options)


@pytest.fixture
def phone(app: Flask, clock: Clock) -> Phone:
    """`phone(**options)`: `call_on(app, clock, **options)`."""

    def make(transport: Transport | None = None, **options: Any) -> SimulatedCall:
        return call_on(app, clock, transport, **options)

    return make


def heard_text(app: Flask, double: OpenAIDouble, c: SimulatedCall) -> list[str]:
    """Everything the caller heard as text: <Say> text, and for <Play> the text whose
    synthesised audio the app serves at that URL."""
    by_audio = {synthesise("mp3", request.get("input")): request.get("input")
                for request in double.speech_requests if request.get("input")}
    client = app.test_client()
    found = []
    for item in c.heard:
        if item.audio_url:
            body = client.get(urlsplit(item.audio_url).path).get_data()
            found.append(by_audio.get(body, f"<unknown audio {item.audio_url}>"))
        elif item.text:
            found.append(item.text)
    return found


def heard_since(app: Flask, double: OpenAIDouble, c: SimulatedCall, mark: int) -> str:
    """What the caller heard after `c.heard[mark]`, as one text. A reply may come in parts
    (its first sentence as soon as it is complete, the rest on the continuation)."""
    return " ".join(heard_text(app, double, c)[mark:])


def last_user_message(messages: list[dict[str, Any]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")
