"""Webhooks to the business against a local receiver on a real socket: signed posts, one per
event and URL with an idempotency id, retried with backoff, redirects not followed, a hanging
receiver that never slows a call, and an event given up on (and recorded) after a day."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from engine.events.publisher import Publisher
from engine.events.webhooks import (
    GIVE_UP_AFTER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Target,
    Webhooks,
    WebhookSink,
    delivery_id,
    sign,
    targets,
    verify,
)
from engine.flows.compile import compile_flow
from engine.flows.model import DEFAULT_WEBHOOK_EVENTS
from engine.store import CallStore, NewEvent, StoredEvent
from engine.web.outbound import EXTENSION
from tests.events.conftest import SID, simulated_call, store_of, wait_until
from tests.events.receiver import Receiver

SECRET = "whsec-test-0123456789abcdef"
FAST = {"backoff": 0.01, "max_backoff": 0.05, "poll_interval": 0.02}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as started:
        yield started


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def everywhere(url: str) -> Target:
    return Target(url, {None: frozenset(DEFAULT_WEBHOOK_EVENTS)})


def end_event(store: CallStore, at: float | None = None, call_sid: str = SID) -> StoredEvent:
    before = store.last_event_id()
    store.record_events(call_sid, [NewEvent("call.end", {"status": "completed",
                                                         "duration": 42})],
                        at=time.time() if at is None else at)
    (event,) = store.events_after(before, call_sid)
    return event


def lane(store: CallStore, receiver: Receiver, owner: str = "one", **sink: Any
         ) -> tuple[Publisher, WebhookSink]:
    made = WebhookSink(everywhere(receiver.url()), store, lambda sid: None, SECRET, **sink)
    publisher = Publisher(store, [made], owner=owner, **FAST)
    publisher.prepare()
    return publisher, made


def verified(post: Any) -> bool:
    return verify(SECRET, post.headers[TIMESTAMP_HEADER], post.body,
                  post.headers[SIGNATURE_HEADER])


# -- signing -------------------------------------------------------------------------------------

def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    body = b'{"id":"x"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, "1700000000", body) == f"sha256={expected}"
    assert verify(SECRET, "1700000000", body, f"sha256={expected}", now=1_700_000_100)
    assert not verify(SECRET, "1700000000", body + b" ", f"sha256={expected}",
                      now=1_700_000_100)
    assert not verify(SECRET, "1700000000", body, f"sha256={expected}", now=1_700_001_000)
    assert not verify("another-secret-value", "1700000000", body, f"sha256={expected}",
                      now=1_700_000_000)


# -- who gets what -------------------------------------------------------------------------------

def test_each_url_gets_its_flows_events_and_the_global_url_every_flows_defaults() -> None:
    def flow(flow_id: str, hooks: list[dict[str, Any]]) -> Any:
        return compile_flow({"flow": flow_id, "personality": "p", "start": "bye",
                             "nodes": {"bye": {"type": "hangup"}}, "webhooks": hooks}).flow

    sales = flow("sales", [{"url": "https://crm.example.com/a", "events": ["call.start"]}])
    desk = flow("desk", [{"url": "https://crm.example.com/a"}])
    found = targets([sales, desk], "https://all.example.com/")
    assert found["https://all.example.com/"].events == {None: frozenset(DEFAULT_WEBHOOK_EVENTS)}
    shared = found["https://crm.example.com/a"]
    start = StoredEvent(1, SID, "call.start", {}, 0.0)
    end = StoredEvent(2, SID, "call.end", {}, 0.0)
    assert shared.wants(start, sales) and not shared.wants(end, sales)
    assert shared.wants(end, desk) and not shared.wants(start, desk)
    assert not shared.wants(end, None)


# -- delivery ------------------------------------------------------------------------------------

def test_a_call_end_is_posted_once_signed_with_its_call(
        new_app: Callable[..., Flask], receiver: Receiver) -> None:
    app = new_app(CALL_WEBHOOK_URL=receiver.url(), WEBHOOK_SECRET=SECRET, WEBHOOKS=True,
                  WEBHOOK_OPTIONS={"publisher_options": FAST})
    call = simulated_call(app)
    call.start("/api/incoming-call?flow=receptionist")
    call.hang_up()
    assert wait_until(lambda: len(receiver.taken()) >= 1)
    webhooks: Webhooks = app.extensions[EXTENSION]
    [(_, publisher)] = webhooks.lanes.values()
    assert wait_until(publisher.caught_up)
    [post] = receiver.all()
    assert verified(post)
    body = post.json
    [end] = [e for e in store_of(app).events_after(0, call.call_sid) if e.name == "call.end"]
    assert body["id"] == delivery_id(end) and body["event"] == "call.end"
    assert body["call"]["sid"] == call.call_sid and body["call"]["flow"] == "receptionist"
    assert body["call"]["from"] == call.params["From"]
    assert body["data"]["status"] == "completed"
    assert post.headers["Content-Type"] == "application/json"
    webhooks.stop()


def test_a_failing_receiver_is_retried_with_backoff_until_it_takes_the_event(
        store: CallStore, receiver: Receiver) -> None:
    receiver.answer(500, 500, 503, 404)
    publisher, sink = lane(store, receiver)
    event = end_event(store)
    publisher.start()
    try:
        assert wait_until(lambda: len(receiver.taken()) == 1)
        assert wait_until(publisher.caught_up)
    finally:
        publisher.stop()
    posts = receiver.all()
    assert [post.status for post in posts] == [500, 500, 503, 404, 200]
    assert {post.json["id"] for post in posts} == {delivery_id(event)}
    assert all(verified(post) for post in posts)
    assert publisher.stats()[sink.name].failed_attempts == 4
    assert sink.delivered == 1


def test_a_batch_retried_in_the_same_process_does_not_post_again_what_was_taken(
        store: CallStore, receiver: Receiver) -> None:
    publisher, _ = lane(store, receiver)
    first, second = end_event(store), end_event(store)
    receiver.answer(200, 500)  # the first is taken, the second fails once
    publisher.start()
    try:
        assert wait_until(lambda: len(receiver.taken()) == 2)
        assert wait_until(publisher.caught_up)
    finally:
        publisher.stop()
    ids = [post.json["id"] for post in receiver.taken()]
    assert ids == [delivery_id(first), delivery_id(second)]


def test_a_redirect_is_not_followed_and_counts_as_a_failure(
        store: CallStore, receiver: Receiver) -> None:
    with Receiver() as elsewhere:
        receiver.redirect_to(elsewhere.url("/stolen"), times=2)
        publisher, sink = lane(store, receiver)
        end_event(store)
        publisher.start()
        try:
            assert wait_until(lambda: len(receiver.taken()) == 1)
        finally:
            publisher.stop()
        assert elsewhere.all() == []
    assert [post.status for post in receiver.all()] == [302, 302, 200]
    assert "redirects are not followed" in publisher.stats()[sink.name].last_error


def test_two_processes_post_each_event_once(
        open_store_again: Callable[[], CallStore], receiver: Receiver) -> None:
    one, two = open_store_again(), open_store_again()
    first, _ = lane(one, receiver, owner="one")
    second, _ = lane(two, receiver, owner="two")
    events = [end_event(one, call_sid=f"CA{n:032x}") for n in range(6)]
    first.start()
    second.start()
    try:
        assert wait_until(lambda: len(receiver.taken()) >= 6)
        assert wait_until(first.caught_up) and wait_until(second.caught_up)
    finally:
        first.stop()
        second.stop()
    assert sorted(post.json["id"] for post in receiver.all()) == \
        sorted(delivery_id(event) for event in events)


# -- a receiver that is down or hangs ------------------------------------------------------------

def test_an_event_still_failing_after_a_day_is_given_up_and_recorded(
        store: CallStore, receiver: Receiver) -> None:
    clock = Clock(1_800_000_000.0)
    receiver.answer(*[500] * 50)
    publisher, sink = lane(store, receiver, clock=clock)
    old = end_event(store, at=clock.now)

    def rounds_until(done: Callable[[], bool]) -> bool:
        return wait_until(lambda: (publisher.run_once(), done())[1])

    assert rounds_until(lambda: len(receiver.all()) == 1)  # failed: retried later
    clock.now += GIVE_UP_AFTER - 60
    assert rounds_until(lambda: len(receiver.all()) == 2)  # not a day old yet: tried again
    assert (publisher.cursor(sink.name) or 0) < old.id
    clock.now += 120
    assert rounds_until(lambda: (publisher.cursor(sink.name) or 0) >= old.id)
    assert sink.dropped == 1 and len(receiver.all()) == 2  # dropped without waiting on it again
    failed = [e for e in store.events_after(0, SID) if e.name == "webhook.failed"]
    assert [e.data["event_id"] for e in failed] == [old.id]
    assert failed[0].data["host"] == "127.0.0.1"
    # The receiver is back: newer events are posted again.
    with receiver.lock:
        receiver.script.clear()
    fresh = end_event(store, at=clock.now)
    assert rounds_until(lambda: len(receiver.taken()) == 1)
    assert receiver.taken()[0].json["id"] == delivery_id(fresh)


def test_a_hanging_receiver_times_out_and_never_slows_a_call(
        new_app: Callable[..., Flask], receiver: Receiver) -> None:
    receiver.hang()
    app = new_app(CALL_WEBHOOK_URL=receiver.url(), WEBHOOK_SECRET=SECRET, WEBHOOKS=True,
                  WEBHOOK_OPTIONS={"publisher_options": FAST,
                                   "sink_options": {"timeout": 30.0}})
    first = simulated_call(app)
    first.start("/api/incoming-call?flow=receptionist")
    first.hang_up()
    assert wait_until(lambda: receiver.hung >= 1)  # the post of its call.end hangs now
    started = time.monotonic()
    second = simulated_call(app)
    second.start("/api/incoming-call?flow=receptionist")
    second.say("What are your opening hours?")
    second.hang_up()
    # Posting on the call path would take the 30 s timeout here.
    assert time.monotonic() - started < 5.0
    receiver.release()
    assert wait_until(lambda: {p.json["call"]["sid"] for p in receiver.taken()}
                      == {first.call_sid, second.call_sid})
    app.extensions[EXTENSION].stop()


def test_a_receiver_that_does_not_answer_in_time_is_retried(
        store: CallStore, receiver: Receiver) -> None:
    receiver.hang()
    publisher, sink = lane(store, receiver, timeout=0.2)
    end_event(store)
    publisher.start()
    try:
        assert wait_until(lambda: publisher.stats()[sink.name].failed_attempts >= 1)
        assert "ReadTimeout" in publisher.stats()[sink.name].last_error
        receiver.release()
        assert wait_until(lambda: len(receiver.taken()) >= 1)
    finally:
        publisher.stop()
    # Posts that timed out may still reach the receiver: the same id lets it drop them.
    assert len({post.json["id"] for post in receiver.all()}) == 1


def test_a_secret_makes_every_post_verifiable_and_the_body_is_json(
        store: CallStore, receiver: Receiver) -> None:
    publisher, _ = lane(store, receiver)
    end_event(store)
    publisher.start()
    try:
        assert wait_until(lambda: len(receiver.taken()) == 1)
    finally:
        publisher.stop()
    [post] = receiver.taken()
    assert post.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert json.loads(post.body)["event"] == "call.end"


def test_the_analysis_of_an_ended_call_follows_its_end_to_the_receiver(
        new_app: Callable[..., Flask], receiver: Receiver) -> None:
    app = new_app(CALL_WEBHOOK_URL=receiver.url(), WEBHOOK_SECRET=SECRET, WEBHOOKS=True,
                  ANALYSIS=True, ANALYSIS_OPTIONS={"poll_interval": 0.02},
                  WEBHOOK_OPTIONS={"publisher_options": FAST})
    call = simulated_call(app)
    call.start("/api/incoming-call?flow=support_triage")
    call.say("I have a question about something else.")
    call.hang_up()
    assert wait_until(lambda: [p.json["event"] for p in receiver.taken()]
                      == ["call.end", "call.analysis"])
    analysis = receiver.taken()[1].json
    assert analysis["call"]["sid"] == call.call_sid
    assert analysis["data"]["status"] == "offline"  # no model key in this app
    assert analysis["data"]["fields"] == {"reason": None, "resolved": None,
                                          "callback_requested": None}
    assert all(verified(post) for post in receiver.taken())
    app.extensions[EXTENSION].stop()
    app.extensions["phoney.analysis"].stop()


def test_a_flows_webhook_gets_its_events_and_follows_the_flows_as_they_reload(
        store: CallStore, receiver: Receiver) -> None:
    def flow(hooks: list[dict[str, Any]]) -> Any:
        return compile_flow({"flow": "desk", "personality": "p", "start": "bye",
                             "nodes": {"bye": {"type": "hangup"}}, "webhooks": hooks}).flow

    live = [flow([{"url": receiver.url(), "events": ["call.start"]}])]
    webhooks = Webhooks(store, lambda: live, lambda sid: live[0], secret=SECRET,
                        refresh_interval=0.05, publisher_options=FAST).start()
    try:
        store.record_events(SID, [NewEvent("call.start", {"flow": "desk"}),
                                  NewEvent("call.end", {"status": "completed"})], time.time())
        assert wait_until(lambda: len(receiver.taken()) == 1)
        [(_, publisher)] = webhooks.lanes.values()
        assert wait_until(publisher.caught_up)
        assert [post.json["event"] for post in receiver.all()] == ["call.start"]
        live[:] = [flow([])]  # the webhook is removed from the flow and the flows reload
        assert wait_until(lambda: webhooks.lanes == {})
    finally:
        webhooks.stop()
