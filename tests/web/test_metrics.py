"""`/metrics`: what a Prometheus scrape sees after calls, read back with prometheus_client's
own parser.

The instruments belong to the process (as Prometheus' do), so counters are compared before and
after what each test does. Calls go through the in-process transport; the model and speech ones
through the OpenAI double. Multi-process mode runs in child processes, as gunicorn's workers
would.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from engine.simulator import SimulatedCall
from engine.store import NewEvent, StoredEvent
from engine.web.metrics import MAX_CALL_SECONDS, events_written
from tests.conftest import ROOT
from tests.doubles.openai_server import OpenAIDouble, Status, Text
from tests.support import AUTH_TOKEN, Clock, client_transport

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: FlaskClient, **headers: str) -> Samples:
    answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain")
    found: Samples = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def phone(app: Flask, **options: Any) -> SimulatedCall:
    return SimulatedCall(client_transport(app.test_client()), "http://localhost", AUTH_TOKEN,
                         **options)


def errors_stored(app: Flask, call_sid: str) -> list[str]:
    return [str(event.data["kind"]) for event in app.extensions["phoney"].store.events_after(
        0, call_sid) if event.name == "call.error"]


WEBHOOK = "phoney_webhook_duration_seconds"
ERRORS = "phoney_call_errors_total"


# -- webhooks, errors, live calls (offline) ---------------------------------------------------

def test_webhooks_are_timed_by_route(app: Flask, client: FlaskClient) -> None:
    before = scrape(client)
    c = phone(app).start()
    c.say("what are your hours")
    c.say("thanks")
    after = scrape(client)

    assert grew(before, after, f"{WEBHOOK}_count", route="/api/incoming-call") == 1
    assert grew(before, after, f"{WEBHOOK}_count", route="/api/voice/input") == 2
    assert grew(before, after, f"{WEBHOOK}_sum", route="/api/voice/input") > 0
    # Buckets from 5 ms to Twilio's 15 s; an in-process webhook is in the last one for sure.
    buckets = {dict(labels)["le"] for name, labels in after
               if name == f"{WEBHOOK}_bucket" and dict(labels)["route"] == "/api/voice/input"}
    assert {"0.005", "15.0", "+Inf"} <= buckets
    assert grew(before, after, f"{WEBHOOK}_bucket", route="/api/voice/input", le="15.0") == 2
    # Only Twilio's webhooks are timed: not the scrape, the dashboard or the health checks.
    client.get("/healthz")
    assert not any(dict(labels).get("route") in ("/metrics", "/healthz")
                   for _, labels in scrape(client))


def test_an_unsigned_webhook_is_timed_too(app: Flask, client: FlaskClient) -> None:
    before = scrape(client)
    assert phone(app).post("/api/voice/silence", signed=False).status == 403
    assert grew(before, scrape(client), f"{WEBHOOK}_count", route="/api/voice/silence") == 1


def test_a_forced_error_is_counted_with_its_kind(app: Flask, client: FlaskClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    c = phone(app).start()
    before = scrape(client)

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("the call service broke")

    monkeypatch.setattr(app.extensions["phoney"].call_service, "advance", broken)
    c.say("hello")
    after = scrape(client)

    assert grew(before, after, ERRORS, kind="internal") == 1
    assert errors_stored(app, c.call_sid) == ["internal"]


def test_a_call_to_an_unknown_flow_counts_a_flow_error(app: Flask, client: FlaskClient) -> None:
    before = scrape(client)
    c = phone(app)
    c.post("/api/incoming-call?flow=no-such-flow")
    assert grew(before, scrape(client), ERRORS, kind="flow") == 1
    assert errors_stored(app, c.call_sid) == ["flow"]


def test_error_kinds_outside_the_known_ones_are_counted_as_other(client: FlaskClient) -> None:
    before = scrape(client)
    events_written([NewEvent("call.error", {"kind": "x" * 500}),
                    NewEvent("call.node", {"kind": "flow"})])
    after = scrape(client)
    assert grew(before, after, ERRORS, kind="other") == 1
    assert grew(before, after, ERRORS, kind="flow") == 0
    assert not any(dict(labels).get("kind", "").startswith("xxx") for _, labels in after)


def test_live_calls_are_counted_from_the_store(app: Flask, client: FlaskClient,
                                               clock: Clock) -> None:
    assert value(scrape(client), "phoney_live_calls") == 0
    first = phone(app).start()
    phone(app).start()
    assert value(scrape(client), "phoney_live_calls") == 2
    first.hang_up()
    assert value(scrape(client), "phoney_live_calls") == 1
    # A call whose status callback never came stops counting after Twilio's longest call.
    clock.advance(MAX_CALL_SECONDS + 60)
    assert value(scrape(client), "phoney_live_calls") == 0


def test_live_calls_are_the_same_whichever_process_is_asked(
        app: Flask, make_app: Callable[..., Flask]) -> None:
    other = make_app()  # a second server process on the same store
    phone(app).start()
    assert value(scrape(other.test_client()), "phoney_live_calls") == 1


def test_store_up_and_down(app: Flask, client: FlaskClient,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert value(scrape(client), "phoney_store_up") == 1
    monkeypatch.setattr(app.extensions["phoney"].store, "ping", lambda: False)
    samples = scrape(client)  # still answers
    assert value(samples, "phoney_store_up") == 0
    assert ("phoney_live_calls", ()) not in samples


# -- access ---------------------------------------------------------------------------------

def test_metrics_are_open_without_a_token(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 200  # no login, as scrapers expect


def test_metrics_token_wants_a_bearer_token(make_app: Callable[..., Flask]) -> None:
    client = make_app(METRICS_TOKEN="s3cret-token").test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "phoney_" not in refused.get_data(as_text=True)
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic s3cret-token"}) \
        .status_code == 401
    assert value(scrape(client, Authorization="Bearer s3cret-token"), "phoney_store_up") == 1


def test_openmetrics_when_asked_for(client: FlaskClient) -> None:
    answer = client.get("/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0"})
    assert answer.content_type.startswith("application/openmetrics-text")
    assert answer.get_data(as_text=True).rstrip().endswith("# EOF")


# -- the event publisher's counters -----------------------------------------------------------

class RecordingSink:
    def __init__(self, name: str) -> None:
        self.name = name
        self.max_batch = 100
        self.failing = False
        self.received: list[StoredEvent] = []

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        if self.failing:
            raise ConnectionError("the sink is down")
        self.received.extend(events)


def test_publisher_counters_per_sink(make_app: Callable[..., Flask]) -> None:
    sink = RecordingSink("metrics-test-sink")
    app = make_app(EVENT_SINKS=[sink], PUBLISHER=False)  # rounds driven by the test
    publisher = app.extensions["phoney.live"].publisher
    publisher.prepare()
    client = app.test_client()
    before = scrape(client)

    phone(app).start()
    stored = app.extensions["phoney"].store.last_event_id()
    waiting = scrape(client)
    pending = value(waiting, "phoney_events_pending", sink=sink.name)
    assert pending > 0 and pending == stored - (publisher.cursor(sink.name) or 0)

    sink.failing = True
    publisher.run_once()
    failed = scrape(client)
    assert grew(before, failed, "phoney_events_failed_total", sink=sink.name) == 1
    assert value(failed, "phoney_events_pending", sink=sink.name) == pending

    sink.failing = False
    publisher._lanes[0].retry_at = 0.0  # skip the backoff
    while publisher.run_once():
        pass
    done = scrape(client)
    assert grew(before, done, "phoney_events_delivered_total", sink=sink.name) == pending
    assert len(sink.received) == pending
    assert value(done, "phoney_events_pending", sink=sink.name) == 0
    # Copied once: a second scrape adds nothing.
    assert grew(done, scrape(client), "phoney_events_delivered_total", sink=sink.name) == 0


# -- the model and speech (the OpenAI double) -------------------------------------------------

@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(api_key="test-key") as server:
        yield server
    assert server.errors == [], "the OpenAI double failed internally"


@pytest.fixture
def model_app(make_app: Callable[..., Flask], double: OpenAIDouble) -> Flask:
    # No speech warm-up (or, where it cannot be turned off, one that has finished): the
    # double's queued answers are the test's.
    created = make_app(OPENAI_API_KEY="test-key", OPENAI_BASE_URL=double.base_url,
                       SPEECH_WARMUP=False)
    for thread in threading.enumerate():
        if thread.name == "speech-warmup":
            thread.join(30)
    return created


def test_model_time_to_first_token_and_sentence(model_app: Flask,
                                                double: OpenAIDouble) -> None:
    client = model_app.test_client()
    double.chat(Text("Yes, we do whitening. The front desk can book you in."))
    c = phone(model_app).start()
    before = scrape(client)
    c.say("do you do whitening")
    after = scrape(client)

    (timing,) = [event.data for event in model_app.extensions["phoney"].store.events_after(
        0, c.call_sid) if event.name == "call.timing"]
    for metric, key in (("phoney_model_first_token_seconds", "first_token"),
                        ("phoney_model_first_sentence_seconds", "first_sentence")):
        assert grew(before, after, f"{metric}_count") == 1
        assert grew(before, after, f"{metric}_sum") == pytest.approx(timing[key], abs=1e-6)


def test_model_errors_are_counted_as_the_events_say(model_app: Flask,
                                                    double: OpenAIDouble) -> None:
    client = model_app.test_client()
    double.chat(Status(500), Status(503), Text("Yes, we do whitening."))
    c = phone(model_app).start()
    before = scrape(client)
    c.say("do you do whitening")
    assert errors_stored(model_app, c.call_sid) == ["network", "network"]
    assert grew(before, scrape(client), ERRORS, kind="network") == 2


def test_speech_synthesis_is_timed_and_its_failures_counted(
        model_app: Flask, double: OpenAIDouble) -> None:
    client = model_app.test_client()
    double.chat(Text("Yes, we do whitening."), Text("We are on Elm Street."))
    c = phone(model_app).start()
    before = scrape(client)
    c.say("do you do whitening")  # the reply is synthesised: not in the warm-up's cache
    spoken = scrape(client)
    assert grew(before, spoken, "phoney_speech_synthesis_seconds_count", outcome="ok") == 1
    assert grew(before, spoken, "phoney_speech_synthesis_seconds_sum", outcome="ok") > 0

    double.speech(Status(500))
    c.say("where are you")
    failed = scrape(client)
    assert grew(spoken, failed, "phoney_speech_synthesis_seconds_count", outcome="failed") == 1
    assert grew(spoken, failed, ERRORS, kind="tts_failure") == 1
    assert errors_stored(model_app, c.call_sid) == ["tts_failure"]


# -- several processes ------------------------------------------------------------------------

WORKER = textwrap.dedent("""
    from engine.web.metrics import instruments
    found = instruments()
    found.webhook.labels("/api/incoming-call").observe(0.2)
    found.errors.labels("network").inc()
""")

SCRAPER = textwrap.dedent("""
    import sys
    from engine.web.app import create_app
    app = create_app({"PROJECT_ROOT": sys.argv[1], "STORE_URL": sys.argv[2],
                      "TWILIO_AUTH_TOKEN": "t", "DASHBOARD_PASSWORD": "p", "SECRET_KEY": "k",
                      "TESTING": True})
    sys.stdout.write(app.test_client().get("/metrics").get_data(as_text=True))
""")


def run_python(code: str, environment: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], env=environment, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_multiprocess_mode_adds_up_the_workers(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("PROMETHEUS_", "prometheus_"))}
    environment.update(PROMETHEUS_MULTIPROC_DIR=str(directory), PYTHONPATH=str(ROOT))
    for _ in range(2):  # two workers, each gone after its work
        run_python(WORKER, environment)
    text = run_python(SCRAPER, environment, str(ROOT), f"sqlite:///{tmp_path / 'p.db'}")

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert value(samples, f"{WEBHOOK}_count", route="/api/incoming-call") == 2
    assert value(samples, f"{WEBHOOK}_sum", route="/api/incoming-call") == pytest.approx(0.4)
    assert value(samples, ERRORS, kind="network") == 2
    assert value(samples, "phoney_store_up") == 1  # the store's gauges come along


def test_gunicorn_hooks_clear_the_directory_and_mark_dead_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "prometheus"
    config = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    config["on_starting"](None)  # no directory: nothing to do
    config["child_exit"](None, SimpleNamespace(pid=4242))

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    config["on_starting"](None)
    assert directory.is_dir()
    (directory / "counter_99.db").write_bytes(b"old run")
    (directory / "keep.txt").write_text("not ours")
    config["on_starting"](None)
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]

    (directory / "gauge_livesum_4242.db").write_bytes(b"")
    (directory / "counter_4242.db").write_bytes(b"")
    config["child_exit"](None, SimpleNamespace(pid=4242))
    assert sorted(p.name for p in directory.iterdir()) == ["counter_4242.db", "keep.txt"]
