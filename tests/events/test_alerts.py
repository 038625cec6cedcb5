"""The alert sink against a local webhook receiver: posted once, filtered by kind, rate-limited
with a summary, retried after a failure, resumed from the stored cursor after a restart, and
never carrying a secret."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest
from flask import Flask

from engine.events import DEFAULT_KINDS, AlertSink, Publisher, parse_kinds
from engine.events.alerts import STATE_KEY, Window
from engine.settings import Settings
from engine.simulator import SimulatedCall
from engine.store import CallStore, NewEvent, StoredEvent
from engine.web.live import alert_sink
from engine.web.security import install_log_redaction
from tests.events.conftest import (
    AUTH_TOKEN,
    OTHER_SID,
    PASSWORD,
    SID,
    live_of,
    logged_in,
    store_of,
    transport,
    wait_until,
)

TOKEN_PATH = "/services/T0000/B0000/webhook-token-xyz"
CALLER = "+15551230000"  # the simulator's caller


class Receiver:
    """A Slack-like incoming webhook: records each JSON post; `fail(n, status)` answers the next
    n posts with `status`."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []  # the accepted ones
        self.statuses: list[int] = []
        self.lock = threading.Lock()
        self.failures: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    status = receiver.failures.pop(0) if receiver.failures else 200
                    if self.path != TOKEN_PATH:
                        status = 404
                    if status == 200:
                        receiver.posts.append(json.loads(body))
                    receiver.statuses.append(status)
                answer = b"ok" if status == 200 else b"server_error"
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{TOKEN_PATH}"

    def fail(self, times: int, status: int = 500) -> None:
        with self.lock:
            self.failures += [status] * times

    def texts(self) -> list[str]:
        with self.lock:
            return [post["text"] for post in self.posts]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


def error(store: CallStore, kind: str, call_sid: str = SID, **data: object) -> StoredEvent:
    before = store.last_event_id()
    store.record_events(call_sid, [NewEvent("call.error", {"kind": kind, **data})],
                        at=1_000_000.0)
    (event,) = store.events_after(before)
    return event


def drain(publisher: Publisher) -> None:
    for _ in range(100):
        if not publisher.run_once():
            return


def sink_for(receiver: Receiver, store: CallStore, **options: Any) -> AlertSink:
    return AlertSink(receiver.url, store, **options)


def publisher_for(store: CallStore, sink: AlertSink, **options: Any) -> Publisher:
    publisher = Publisher(store, [sink], owner=options.pop("owner", "one"), **options)
    publisher.prepare()
    return publisher


# -- settings --------------------------------------------------------------------------------------

def test_alert_kinds_default_list_and_all() -> None:
    assert parse_kinds("") == frozenset(DEFAULT_KINDS)
    assert DEFAULT_KINDS == ("network", "rate_limit", "ai_failure", "tts_failure", "flow",
                             "internal")
    assert parse_kinds(" Network, internal ,") == {"network", "internal"}
    assert parse_kinds("all") == {"*"} and parse_kinds("network,*") == {"*"}
    settings = Settings.load({"ALERT_WEBHOOK_URL": "https://hooks.example/x",
                              "ALERT_KINDS": "network"}, environ={})
    assert (settings.alert_webhook_url, settings.alert_kinds) == ("https://hooks.example/x",
                                                                  "network")


def test_a_webhook_url_that_is_not_http_is_refused_at_start(
        new_app: Callable[..., Flask]) -> None:
    with pytest.raises(ValueError, match="ALERT_WEBHOOK_URL"):
        new_app(ALERT_WEBHOOK_URL="hooks.slack.com/services/T0/B0/x")


# -- delivery through the app ----------------------------------------------------------------------

def test_a_calls_error_is_posted_once_with_call_flow_node_and_a_masked_caller(
        new_app: Callable[..., Flask], receiver: Receiver) -> None:
    app = new_app(ALERT_WEBHOOK_URL=receiver.url, PUBLIC_BASE_URL="https://phoney.example",
                  PUBLISHER_OPTIONS={"poll_interval": 0.01})
    live = live_of(app)
    assert live.publisher is not None and live.publisher.running
    call = SimulatedCall(transport(app), "https://phoney.example", AUTH_TOKEN).start()
    store_of(app).record_events(call.call_sid, [NewEvent("call.error", {
        "kind": "network", "node": "greet", "attempt": 2,
        "detail": f"Connection refused, password {PASSWORD}; caller {CALLER}"})],
                                at=1_000_000.0)

    assert wait_until(lambda: len(receiver.posts) == 1)
    assert wait_until(lambda: live.publisher is not None and live.publisher.caught_up())
    (post,) = receiver.posts
    text = post["text"]
    assert text.startswith(f"Phoney: network error on call {call.call_sid}")
    assert f"<https://phoney.example/calls/{call.call_sid}|{call.call_sid}>" in text
    assert "flow `receptionist`" in text and "node `greet`" in text and "attempt 2" in text
    assert "1970-01-12 13:46:40 UTC" in text
    assert "caller +1555***0000" in text and CALLER not in json.dumps(post)
    assert PASSWORD not in json.dumps(post) and "password [secret]" in text
    assert post["blocks"][0]["type"] == "section" and "*network*" in post["blocks"][0]["text"][
        "text"]
    sinks = logged_in(app).get("/api/live").get_json()["publisher"]["sinks"]
    assert sinks["alerts"]["failed_attempts"] == 0 and sinks["alerts"]["leader"]
    assert receiver.statuses == [200]  # once: the call's other events post nothing


def test_only_errors_of_the_alert_kinds_are_posted(store: CallStore, receiver: Receiver) -> None:
    sink = sink_for(receiver, store, kinds=parse_kinds("network,internal"))
    publisher = publisher_for(store, sink)
    store.record_events(SID, [NewEvent("call.say", {"text": "hello"}),
                              NewEvent("call.error", {"kind": "template", "detail": "x"})],
                        at=1_000_000.0)
    drain(publisher)
    wanted = error(store, "internal", detail="boom")
    error(store, "control", detail="transfer failed")
    drain(publisher)

    assert publisher.caught_up()
    assert len(receiver.posts) == 1 and "*internal* error" in receiver.texts()[0]
    assert f"`{wanted.call_sid}`" in receiver.texts()[0]  # no PUBLIC_BASE_URL: no link

    every = sink_for(receiver, store, kinds=parse_kinds("all"))
    every.name = "every"
    publisher = publisher_for(store, every)
    error(store, "control", detail="transfer failed")
    drain(publisher)
    assert "*control* error" in receiver.texts()[-1]


def test_one_batch_is_one_post_showing_the_first_alerts_and_counting_the_rest(
        store: CallStore, receiver: Receiver) -> None:
    sink = sink_for(receiver, store, shown=2)
    publisher = publisher_for(store, sink)
    store.record_events(SID, [NewEvent("call.error", {"kind": kind, "detail": kind})
                              for kind in ("network", "internal", "network", "flow",
                                           "network")], at=1_000_000.0)
    drain(publisher)

    (post,) = receiver.posts
    assert len([block for block in post["blocks"] if block["type"] == "section"]) == 2
    assert post["text"].startswith(f"Phoney: network error on call {SID} and 4 more")
    assert "…and 3 more since 1970-01-12 13:46:40 UTC" in post["text"]
    assert post["text"].endswith("network 2, flow 1")


# -- rate limit ------------------------------------------------------------------------------------

def test_over_the_rate_limit_alerts_are_held_and_summarised_in_the_next_post(
        store: CallStore, receiver: Receiver) -> None:
    clock = Clock()
    sink = sink_for(receiver, store, limit=2, window=60, clock=clock)
    publisher = publisher_for(store, sink)
    for kind in ("network", "internal", "network", "internal", "network"):
        error(store, kind)
        drain(publisher)
    assert len(receiver.posts) == 2  # the limit; three held back
    assert Window.decode(store.get_blob(STATE_KEY)).held == 3

    clock.now += 30
    error(store, "flow", OTHER_SID, node="ask")
    drain(publisher)
    assert len(receiver.posts) == 2  # the window is not over yet: four held back

    clock.now += 31
    error(store, "ai_failure", OTHER_SID)
    drain(publisher)
    assert len(receiver.posts) == 3
    text = receiver.texts()[-1]
    assert text.startswith(f"Phoney: ai_failure error on call {OTHER_SID} and 4 more")
    assert "*ai_failure* error" in text
    assert ("…and 4 more since 1970-01-12 13:46:40 UTC (alerts are limited to 2 posts in "
            "60 s): network 2, flow 1, internal 1") in text
    assert receiver.posts[-1]["blocks"][-1]["type"] == "context"
    assert Window.decode(store.get_blob(STATE_KEY)).held == 0


def test_held_alerts_are_summarised_alone_once_the_window_allows(
        store: CallStore, receiver: Receiver) -> None:
    clock = Clock()
    sink = sink_for(receiver, store, limit=1, window=60, clock=clock)
    publisher = publisher_for(store, sink)
    for _ in range(13):
        error(store, "network")
        drain(publisher)
    assert len(receiver.posts) == 1
    drain(publisher)
    assert len(receiver.posts) == 1  # idle rounds, but the window is not over

    clock.now += 60
    drain(publisher)  # no new event: the publisher's idle round flushes the summary
    assert len(receiver.posts) == 2
    assert receiver.texts()[-1] == ("Phoney: …and 12 more since 1970-01-12 13:46:40 UTC ("
                                    "alerts are limited to 1 posts in 60 s): network 12")
    drain(publisher)
    assert len(receiver.posts) == 2 and publisher.stats()["alerts"].failed_attempts == 0


def test_a_summary_the_webhook_fails_is_retried(store: CallStore, receiver: Receiver) -> None:
    clock = Clock()
    sink = sink_for(receiver, store, limit=1, window=60, clock=clock)
    publisher = publisher_for(store, sink, backoff=0.02, max_backoff=0.05)
    for _ in range(3):
        error(store, "network")
        drain(publisher)
    receiver.fail(1, status=503)
    clock.now += 60

    assert wait_until(lambda: (publisher.run_once(), len(receiver.posts))[1] == 2)
    assert receiver.statuses == [200, 503, 200]
    assert receiver.texts()[-1].startswith("Phoney: …and 2 more")
    assert publisher.stats()["alerts"].failed_attempts == 1


# -- retries and restarts --------------------------------------------------------------------------

def test_a_post_refused_400_is_tried_alone_then_skipped_and_counted(
        store: CallStore, receiver: Receiver) -> None:
    publisher = publisher_for(store, sink_for(receiver, store), backoff=60)
    receiver.fail(2, status=400)  # the batch of two, then the first alone
    first, second = error(store, "network", detail="first"), error(store, "flow", detail="second")
    assert first.id < second.id
    drain(publisher)

    assert receiver.statuses == [400, 400, 200]
    assert len(receiver.posts) == 1 and "second" in receiver.texts()[0]
    stats = publisher.stats()["alerts"]
    assert stats.rejected == 1 and stats.failed_attempts == 0 and publisher.caught_up()


def test_a_post_the_webhook_fails_is_retried_until_it_is_taken(
        store: CallStore, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.fail(2, status=500)
    publisher = Publisher(store, [sink_for(receiver, store)], owner="one", poll_interval=0.01,
                          backoff=0.02, max_backoff=0.05).start()
    try:
        with caplog.at_level(logging.WARNING):
            error(store, "internal", detail="boom")
            assert wait_until(lambda: len(receiver.posts) == 1)
            assert wait_until(publisher.caught_up)
    finally:
        publisher.stop()

    assert receiver.statuses == [500, 500, 200]
    assert "*internal* error" in receiver.texts()[0]
    stats = publisher.stats()["alerts"]
    assert stats.failed_attempts == 2 and stats.delivered == 1 and stats.retries_pending == 0
    assert stats.last_error.startswith("AlertFailed: 127.0.0.1 answered 500")
    assert TOKEN_PATH not in caplog.text and TOKEN_PATH not in stats.last_error


def test_a_webhook_that_is_down_is_named_by_host_only(store: CallStore) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = AlertSink(f"http://127.0.0.1:{port}{TOKEN_PATH}", store, timeout=1)
    publisher = publisher_for(store, sink, backoff=60)
    error(store, "network")
    drain(publisher)

    stats = publisher.stats()["alerts"]
    assert stats.failed_attempts == 1 and stats.retries_pending == 1
    assert stats.last_error == "AlertFailed: POST to 127.0.0.1 failed: ConnectionError"
    assert publisher.cursor("alerts") == 0


def test_a_restart_resumes_from_the_stored_cursor(
        open_store_again: Callable[[], CallStore], receiver: Receiver) -> None:
    first_store = open_store_again()
    first = publisher_for(first_store, sink_for(receiver, first_store), owner="before")
    error(first_store, "network", detail="before the restart")
    drain(first)
    first.stop()
    error(first_store, "internal", detail="while down 1")  # no publisher runs
    error(first_store, "flow", detail="while down 2")

    second_store = open_store_again()
    second = publisher_for(second_store, sink_for(receiver, second_store), owner="after")
    drain(second)

    assert len(receiver.posts) == 2
    assert "before the restart" in receiver.texts()[0]
    assert "while down 1" in receiver.texts()[1] and "while down 2" in receiver.texts()[1]
    assert "before the restart" not in receiver.texts()[1]
    assert second.caught_up()


def test_held_alerts_survive_a_crash_and_the_survivor_summarises_them(
        open_store_again: Callable[[], CallStore], receiver: Receiver) -> None:
    clock = Clock()
    first_store = open_store_again()
    crashed = publisher_for(first_store, sink_for(receiver, first_store, limit=1, clock=clock),
                            owner="crashed", lease_seconds=0.3)
    for _ in range(4):
        error(first_store, "network")
        drain(crashed)
    assert len(receiver.posts) == 1  # three held back; then it dies holding the lease

    second_store = open_store_again()
    survivor = publisher_for(second_store,
                             sink_for(receiver, second_store, limit=1, clock=clock),
                             owner="survivor", lease_seconds=0.3, standby_interval=0.02)
    clock.now += 60
    assert wait_until(lambda: (drain(survivor), len(receiver.posts))[1] == 2, timeout=5)
    assert "…and 3 more" in receiver.texts()[1] and receiver.texts()[1].endswith("network 3")


def test_two_server_processes_post_each_alert_once(
        new_app: Callable[..., Flask], receiver: Receiver) -> None:
    config = {"ALERT_WEBHOOK_URL": receiver.url,
              "PUBLISHER_OPTIONS": {"poll_interval": 0.01, "standby_interval": 0.02}}
    first, second = new_app(**config), new_app(**config)
    store = store_of(first)
    for kind in ("network", "internal", "flow"):
        error(store, kind)
        assert wait_until(lambda: all(live_of(app).publisher.caught_up()  # type: ignore[union-attr]
                                      for app in (first, second)))

    texts = receiver.texts()
    assert [text.split(" error")[0] for text in texts] == [
        "Phoney: network", "Phoney: internal", "Phoney: flow"]


def test_the_webhook_path_is_masked_in_logs(store: CallStore, receiver: Receiver,
                                            caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.load({"ALERT_WEBHOOK_URL": receiver.url}, environ={})
    install_log_redaction(settings)
    sink = alert_sink(settings, store)
    assert sink is not None and sink.kinds == frozenset(DEFAULT_KINDS)
    with caplog.at_level(logging.INFO):
        logging.getLogger("tests.alerts").warning("posting to %s and %s", receiver.url,
                                                  TOKEN_PATH)
    assert TOKEN_PATH not in caplog.text and "[secret]" in caplog.text
