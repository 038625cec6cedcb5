"""Webhooks to the business: call events posted as signed JSON to the URLs the flows name.

Where: every URL of a flow's `webhooks: [{url, events}]`, and `CALL_WEBHOOK_URL` for every flow
(the events `DEFAULT_WEBHOOK_EVENTS`). A URL named twice gets the union of the events, once.

How: each URL is one `WebhookSink` driven by a publisher of its own (engine/events/publisher.py,
its own thread, its own cursor `cursor:webhook:<digest of the URL>` in the store), so a receiver
that hangs or fails holds up only its own deliveries, never a call (webhooks only write the
events; the outbox) and never Pusher or another URL. `Webhooks` keeps one such publisher per URL
the live flows name, starting and stopping them as the flows are reloaded.

Each POST is one event: a JSON body with an `id` that is the same on every attempt (the
idempotency id: a receiver that sees an id twice drops the second), the event's name, time,
call and data, and two headers (DESIGN 8.4):
    X-Phoney-Timestamp: <epoch seconds of this attempt>
    X-Phoney-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with WEBHOOK_SECRET>
Without WEBHOOK_SECRET the posts carry no signature (a warning is logged; CALL_WEBHOOK_URL
requires the secret, engine/web/settings_check.py).

Delivery: a 2xx answer delivers; anything else (an error, a timeout, a 3xx redirect, which is
never followed) is retried with the publisher's exponential backoff and jitter, in order, until
the event is `give_up_after` seconds old (25 hours): then it is dropped, logged and recorded as
a `webhook.failed` event of the call. Exactly once per URL: the lease lets one process deliver,
the cursor moves past an event once the receiver took it, and a batch retried in the same
process skips what was already taken; only a process that dies between a receiver's 2xx and
the cursor's move sends an event again, with the same `id`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from engine.events.publisher import Publisher
from engine.flows.model import DEFAULT_WEBHOOK_EVENTS, WEBHOOK_EVENTS, Flow
from engine.store import CallStore, NewEvent, StoredEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Phoney-Signature"
TIMESTAMP_HEADER = "X-Phoney-Timestamp"
GIVE_UP_AFTER = 25 * 3600.0
"""Seconds after an event that its webhook is still retried: more than a day."""
TIMEOUT = (3.05, 5.0)
"""Seconds to connect and to wait for the answer: a hanging receiver costs one attempt this long,
in the URL's own thread."""
DEFAULT_OPTIONS: Mapping[str, float] = {"backoff": 5.0, "max_backoff": 1800.0,
                                        "poll_interval": 0.5, "lease_seconds": 120.0}
"""Publisher options for webhook lanes: retries from 5 s doubling to every 30 minutes, and a
lease longer than a batch of slow receivers' posts can take (`WebhookSink.max_batch` times
TIMEOUT), so no other process takes a lane over while it is posting."""

FlowOf = Callable[[str], Flow | None]
"""The flow (at the call's own version) a call ran on, by CallSid; None when not known."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Phoney-Signature` value: `sha256=` and the hex HMAC-SHA256 of
    `<timestamp>.<body>` keyed with `secret`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None,
           tolerance: float = 300.0) -> bool:
    """Whether `signature` is `sign(secret, timestamp, body)` and `timestamp` is within
    `tolerance` seconds of `now`: what a receiver checks (README, "Webhooks")."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


def delivery_id(event: StoredEvent) -> str:
    """The idempotency id of an event's deliveries: the same on every attempt and every URL."""
    return f"{event.call_sid}-{event.id}"


def lane_name(url: str) -> str:
    """The sink's name, naming its cursor: stable for a URL, without the URL (it may hold a
    token)."""
    return "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]


class WebhookFailed(Exception):
    """The receiver did not take the event (retried); names the host only."""


@dataclass(frozen=True)
class Target:
    """One URL and, per flow (None: every flow, as CALL_WEBHOOK_URL), the events it takes."""

    url: str
    events: Mapping[str | None, frozenset[str]]

    def wants(self, event: StoredEvent, flow: Flow | None) -> bool:
        """Whether `event`, of a call on `flow`, goes to this URL."""
        every = self.events.get(None, frozenset())
        own = self.events.get(flow.id, frozenset()) if flow is not None else frozenset()
        return event.name in every or event.name in own


def targets(flows: Iterable[Flow], global_url: str) -> dict[str, Target]:
    """Every URL to post to, by URL, with the events each flow (and every flow) sends it."""
    found: dict[str, dict[str | None, set[str]]] = {}
    if global_url.strip():
        found.setdefault(global_url.strip(), {}).setdefault(None, set()).update(
            DEFAULT_WEBHOOK_EVENTS)
    for flow in flows:
        for hook in flow.webhooks:
            found.setdefault(hook.url, {}).setdefault(flow.id, set()).update(hook.events)
    return {url: Target(url, {key: frozenset(names) for key, names in events.items()})
            for url, events in found.items()}


class WebhookSink:
    """Posts one URL's events (see the module docstring); one publisher drives it."""

    max_batch = 10

    def __init__(self, target: Target, store: CallStore, flow_of: FlowOf, secret: str, *,
                 give_up_after: float = GIVE_UP_AFTER,
                 timeout: float | tuple[float, float] = TIMEOUT,
                 clock: Callable[[], float] = time.time,
                 session: requests.Session | None = None) -> None:
        self.target = target
        self.url = target.url
        self.host = urlsplit(target.url).hostname or "?"
        self.name = lane_name(target.url)
        self.store = store
        self.flow_of = flow_of
        self.secret = secret
        self.give_up_after = give_up_after
        self.timeout = timeout
        self.clock = clock
        self.session = session or requests.Session()
        self.delivered = 0  # events the receiver took (this process)
        self.dropped = 0  # events given up on
        self._taken_through = 0  # events up to this id were taken (a retried batch skips them)
        self._failing = False  # the last attempt failed: expired events are not tried again

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        """Post each event this URL takes, in order; raises (to be retried from the first one
        not taken) when the receiver does not take one that is not too old yet."""
        for event in events:
            if event.id <= self._taken_through:
                continue
            if event.name in WEBHOOK_EVENTS:
                flow = self.flow_of(event.call_sid)
                if self.target.wants(event, flow):
                    self._deliver(event, flow)
            self._taken_through = event.id

    def _deliver(self, event: StoredEvent, flow: Flow | None) -> None:
        expired = self.clock() - event.at > self.give_up_after
        if expired and self._failing:  # the receiver is still down: do not wait on it again
            self._drop(event, "the receiver was failing")
            return
        try:
            self.post(self.body(event, flow))
        except WebhookFailed as error:
            self._failing = True
            if expired:
                self._drop(event, str(error))
                return
            raise
        self._failing = False
        self.delivered += 1

    def _drop(self, event: StoredEvent, reason: str) -> None:
        self.dropped += 1
        log.error("webhook: gave up on %s of call %s to %s after %.0f hours: %s", event.name,
                  event.call_sid, self.host, self.give_up_after / 3600, reason)
        try:
            self.store.record_events(event.call_sid, [NewEvent("webhook.failed", {
                "event": event.name, "event_id": event.id, "host": self.host,
                "reason": reason[:300]})], self.clock())
        except Exception:
            log.exception("webhook: could not record the failure either")

    def body(self, event: StoredEvent, flow: Flow | None) -> bytes:
        """The JSON posted for `event`: the same bytes on every attempt."""
        summary = self.store.get_call(event.call_sid)
        call: dict[str, Any] = {"sid": event.call_sid,
                                "flow": flow.id if flow is not None else None}
        if summary is not None:
            call.update({"flow": summary.flow_id, "from": summary.caller, "to": summary.called,
                         "started_at": summary.started_at})
        payload = {"id": delivery_id(event), "event": event.name, "at": event.at, "call": call,
                   "data": dict(event.data)}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                          default=str).encode()

    def headers(self, body: bytes) -> dict[str, str]:
        """The headers of one attempt: JSON, the timestamp and (with a secret) the signature."""
        timestamp = str(int(self.clock()))
        headers = {"Content-Type": "application/json", "User-Agent": "Phoney-Webhooks/1",
                   TIMESTAMP_HEADER: timestamp}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, body)
        return headers

    def post(self, body: bytes) -> None:
        """One attempt; WebhookFailed unless the receiver answers 2xx. Redirects are not
        followed: the event was for this URL, not wherever it points. The answer's body is
        never read (a receiver cannot make it cost anything)."""
        try:
            answer = self.session.post(self.url, data=body, headers=self.headers(body),
                                       timeout=self.timeout, allow_redirects=False, stream=True)
        except requests.RequestException as error:
            raise WebhookFailed(f"POST to {self.host} failed: {type(error).__name__}") from None
        with answer:
            status, location = answer.status_code, answer.headers.get("Location", "")
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            where = urlsplit(location).hostname or "?"
            raise WebhookFailed(f"{self.host} redirected ({status}) to {where}; redirects are "
                                f"not followed")
        raise WebhookFailed(f"{self.host} answered {status}")


class Webhooks:
    """One publisher per webhook URL of the live flows (and CALL_WEBHOOK_URL), kept in step
    with the flows by `refresh` (a thread calls it every `refresh_interval` seconds once
    `start`ed). `publisher_options` and `sink_options` reach every lane (tests shorten the
    backoff)."""

    def __init__(self, store: CallStore, flows: Callable[[], Iterable[Flow]], flow_of: FlowOf,
                 *, global_url: str = "", secret: str = "", refresh_interval: float = 5.0,
                 publisher_options: Mapping[str, Any] | None = None,
                 sink_options: Mapping[str, Any] | None = None) -> None:
        self.store = store
        self.flows = flows
        self.flow_of = flow_of
        self.global_url = global_url
        self.secret = secret
        self.refresh_interval = refresh_interval
        self.publisher_options = {**DEFAULT_OPTIONS, **(publisher_options or {})}
        self.sink_options = dict(sink_options or {})
        self.lanes: dict[str, tuple[Target, Publisher]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    def sinks(self) -> list[WebhookSink]:
        """The sinks of the URLs posted to now."""
        return [sink for _, publisher in self.lanes.values() for sink in publisher.sinks
                if isinstance(sink, WebhookSink)]

    def refresh(self) -> None:
        """Start a lane for each URL the flows now name and stop those they no longer do; a URL
        whose events changed gets a new lane that resumes at the old one's cursor."""
        wanted = targets(self.flows(), self.global_url)
        with self._lock:
            for url in [url for url, (target, _) in self.lanes.items()
                        if wanted.get(url) != target]:
                _, publisher = self.lanes.pop(url)
                publisher.stop(timeout=2.0)
            for url, target in wanted.items():
                if url in self.lanes:
                    continue
                sink = WebhookSink(target, self.store, self.flow_of, self.secret,
                                   **self.sink_options)
                publisher = Publisher(self.store, [sink], **self.publisher_options)
                publisher.prepare()  # events from now on are posted, whenever the thread runs
                self.lanes[url] = (target, publisher)
                if self._started:
                    if not self.secret:
                        log.warning("webhooks: WEBHOOK_SECRET is not set, so the posts to %s "
                                    "are not signed", sink.host)
                    publisher.start()
                    log.info("webhooks: posting %s to %s", ", ".join(sorted(
                        {name for names in target.events.values() for name in names})),
                        sink.host)

    def start(self) -> Webhooks:
        """Refresh now, start every lane, and keep refreshing in a daemon thread."""
        self._started = True
        self.refresh()
        with self._lock:
            for _, publisher in self.lanes.values():
                publisher.start()
        if self._thread is None:
            self._thread = threading.Thread(target=_refresh_loop, args=(
                weakref.ref(self), self._stop, self.refresh_interval), name="webhooks",
                daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop refreshing and every lane (their leases handed back)."""
        self._stop.set()
        self._started = False
        with self._lock:
            for _, publisher in self.lanes.values():
                publisher.stop(timeout=2.0)

    def __del__(self) -> None:
        self._stop.set()


def _refresh_loop(ref: weakref.ref[Webhooks], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        webhooks = ref()
        if webhooks is None:
            return
        try:
            webhooks.refresh()
        except Exception:  # the flows or the store failing now: the next round may do
            log.exception("webhooks: refresh failed")
        del webhooks
