"""Prometheus metrics: the instruments, what feeds them, and `GET /metrics`.

What is measured, and where:
- `phoney_webhook_duration_seconds{route}`: each Twilio voice webhook, from its first byte read
  to its answer, signature check included (`webhook_observer`, engine/web/voice.py);
- `phoney_model_first_token_seconds`, `phoney_model_first_sentence_seconds`: from the start of
  the webhook, as the call service writes them in `call.timing` (the offline responder's are
  not model times and are left out);
- `phoney_relay_reply_seconds{moment}`: a ConversationRelay reply's moments, from its model
  request: `first_token` (the model's), `first_sent` (the first text sent to Twilio) and
  `done` (its end), from the session's `call.timing`; `phoney_relay_interruptions_total`: the
  replies a caller talked over (`call.interrupt`);
- `phoney_speech_synthesis_seconds{outcome}`: each text-to-speech request made while answering
  a webhook (`speech_timed`, which `create_app` hands the composition root for its voices);
- `phoney_call_errors_total{kind}`: every `call.error` event written, with a step or without
  (`events_written`, an observer of the composition root's `EventRecorder`), by error kind;
- `phoney_events_delivered_total`, `phoney_events_failed_total`, `phoney_events_rejected_total`
  `{sink}`: the event publisher's counters, mirrored from `Publisher.stats()`;
- computed from the store at each scrape, so right whichever process answers it: `phoney_live_calls`
  (calls in progress), `phoney_events_pending{sink}` (events stored and not yet delivered to
  the sink) and `phoney_store_up`.

Several processes (gunicorn workers): set `PROMETHEUS_MULTIPROC_DIR` to an empty directory
before the server starts (see gunicorn.conf.py). prometheus_client then keeps each process's
values in files there and a scrape of any worker adds them up; without it the process's own
registry is served. `/metrics` is open, as scrapers expect, unless `METRICS_TOKEN` is set:
then it wants `Authorization: Bearer <token>`.

Every label a counter or histogram is known to take (each error kind and `other`, each sink of
the app's publisher, each speech outcome, each webhook route) starts at 0 when the app is made
(`zero_known_labels`): a counter with no sample until its first increment makes
`rate(phoney_call_errors_total[5m])` read "no data" instead of 0, and an alert on it never fires
on the first error after a restart.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from engine.calls import urls
from engine.events import Publisher, SinkStats
from engine.flows.model import ERROR_KINDS, HTTP_ERROR_KINDS
from engine.runtime.state import FINAL_STATUSES
from engine.store import CallStore, NewEvent
from engine.web.events_api import EXTENSION
from engine.web.services import Services

log = logging.getLogger(__name__)

metrics = Blueprint("metrics", __name__)

WEBHOOK_ROUTES = (urls.INCOMING_CALL, urls.INCOMING_CALL_FALLBACK, urls.GATHER_INPUT, urls.SILENCE,
                  urls.DIAL_RESULT, urls.RECORDING, urls.RESUME, urls.RELAY_DONE,
                  urls.CALL_STATUS)
"""The voice webhooks' routes, the webhook histogram's labels (engine/web/voice.py's ROUTES)."""
WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0,
                   12.5, 15.0)
"""5 ms (a stored answer) to Twilio's 15 s limit."""
MODEL_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0)
SPEECH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0)
ERROR_LABELS = frozenset({*ERROR_KINDS, *HTTP_ERROR_KINDS, "tool", "template", "flow",
                          "condition", "internal", "control", "rate_limit_caller",
                          "rate_limit_live_calls", "model_budget"})
"""Kinds counted under their own name; any other is counted as `other` (labels stay bounded)."""
SPEECH_OUTCOMES = ("ok", "failed")
RELAY_MOMENTS = ("first_token", "first_sent", "done")
"""The moments of a relay reply timed (`phoney_relay_reply_seconds{moment}`)."""
"""What `speech_timed` is told of a synthesis (engine/speech/tts.py)."""
LIVE_SCAN = 1000
"""Most recently updated calls looked at for `phoney_live_calls`."""
MAX_CALL_SECONDS = 4 * 3600
"""Twilio's default longest call: a call not updated for longer lost its status callback."""
SYNC_INTERVAL = 5.0
"""Seconds between copies of the publisher's counters in multi-process mode."""


@dataclass(frozen=True)
class Instruments:
    """The process's Prometheus histograms and counters (see the module docstring for what
    each measures); made once, by `instruments()`.
    """

    webhook: Histogram
    first_token: Histogram
    first_sentence: Histogram
    speech: Histogram
    relay: Histogram
    interruptions: Counter
    errors: Counter
    delivered: Counter
    failed: Counter
    rejected: Counter


@cache
def instruments() -> Instruments:
    """The process's instruments, made on first use (nothing is registered at import)."""
    return Instruments(
        webhook=Histogram("phoney_webhook_duration_seconds",
                          "Time to answer a Twilio webhook.", ["route"],
                          buckets=WEBHOOK_BUCKETS),
        first_token=Histogram("phoney_model_first_token_seconds",
                              "From the start of the webhook to the model's first token.",
                              buckets=MODEL_BUCKETS),
        first_sentence=Histogram("phoney_model_first_sentence_seconds",
                                 "From the start of the webhook to the model's first whole "
                                 "sentence.", buckets=MODEL_BUCKETS),
        speech=Histogram("phoney_speech_synthesis_seconds",
                         "Text-to-speech requests made while answering a webhook.",
                         ["outcome"], buckets=SPEECH_BUCKETS),
        relay=Histogram("phoney_relay_reply_seconds",
                        "ConversationRelay replies: from the model request to its first "
                        "token, its first text sent, and its end.", ["moment"],
                        buckets=MODEL_BUCKETS),
        interruptions=Counter("phoney_relay_interruptions_total",
                              "ConversationRelay replies the caller talked over."),
        errors=Counter("phoney_call_errors_total", "call.error events, by error kind.",
                       ["kind"]),
        delivered=Counter("phoney_events_delivered_total",
                          "Events a sink accepted.", ["sink"]),
        failed=Counter("phoney_events_failed_total",
                       "Deliveries to a sink that failed (each retry counted).", ["sink"]),
        rejected=Counter("phoney_events_rejected_total",
                         "Events a sink refused for good (skipped).", ["sink"]),
    )


def multiprocess_mode() -> bool:
    """Whether prometheus_client keeps values in PROMETHEUS_MULTIPROC_DIR: it decides when it
    is first imported, from the environment as it was then."""
    return values.ValueClass is not values.MutexValue


# -- what feeds them ----------------------------------------------------------------------------

def events_written(events: Sequence[NewEvent]) -> None:
    """Count and time events just stored (an `EventRecorder` observer)."""
    try:
        found = instruments()
        for event in events:
            if event.name == "call.error":
                kind = str(event.data.get("kind", ""))
                found.errors.labels(kind if kind in ERROR_LABELS else "other").inc()
            elif event.name == "call.timing" and event.data.get("transport") == "relay":
                if event.data.get("offline"):
                    continue  # the offline responder's are not model times
                for moment in RELAY_MOMENTS:  # from the model request, not from a webhook
                    value = event.data.get(moment)
                    if isinstance(value, int | float) and value >= 0:
                        found.relay.labels(moment).observe(value)
            elif event.name == "call.timing" and not event.data.get("offline"):
                for key, histogram in (("first_token", found.first_token),
                                       ("first_sentence", found.first_sentence)):
                    value = event.data.get(key)
                    if isinstance(value, int | float) and value >= 0:
                        histogram.observe(value)
            elif event.name == "call.interrupt":
                found.interruptions.inc()
    except Exception:  # metrics never fail a webhook
        log.exception("metrics: could not count events")


def speech_timed(outcome: str, seconds: float) -> None:
    """Time one text-to-speech request made while answering a webhook."""
    try:
        instruments().speech.labels(outcome).observe(seconds)
    except Exception:  # metrics never fail a webhook
        log.exception("metrics: could not time speech")


class _PublisherMirror:
    """Copies each publisher's per-process counters into Counters (which prometheus_client
    adds up across processes), by the increase since the last copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: weakref.WeakKeyDictionary[Publisher, dict[str, SinkStats]] = \
            weakref.WeakKeyDictionary()
        self._thread: threading.Thread | None = None

    def watch(self, publisher: Publisher) -> None:
        with self._lock:
            self._seen.setdefault(publisher, {})
            if multiprocess_mode() and self._thread is None:
                # The scrape reaches one worker; the others copy theirs on their own.
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="metrics-sync")
                self._thread.start()

    def sync(self, publisher: Publisher | None = None) -> None:
        with self._lock:
            publishers = [publisher] if publisher is not None else list(self._seen.keys())
            for each in publishers:
                before = self._seen.setdefault(each, {})
                now = each.stats()
                found = instruments()
                for name, stats in now.items():
                    last = before.get(name, SinkStats())
                    for counter, field in ((found.delivered, "delivered"),
                                           (found.failed, "failed_attempts"),
                                           (found.rejected, "rejected")):
                        increase = getattr(stats, field) - getattr(last, field)
                        if increase > 0:
                            counter.labels(name).inc(increase)
                before.update(now)

    def _loop(self) -> None:
        while True:
            time.sleep(SYNC_INTERVAL)
            try:
                self.sync()
            except Exception:
                log.exception("metrics: could not copy the publisher's counters")


_mirror = _PublisherMirror()


# -- the scrape ---------------------------------------------------------------------------------

def live_calls(store: CallStore, now: float) -> int:
    """Calls in progress: not ended, among the LIVE_SCAN most recently updated, and updated
    within MAX_CALL_SECONDS (a call whose status callback never came is not live forever)."""
    count = 0
    for call in store.list_calls(limit=LIVE_SCAN):
        if call.updated_at < now - MAX_CALL_SECONDS:
            break  # newest first: the rest are older still
        if call.ended_at is None and call.status not in FINAL_STATUSES:
            count += 1
    return count


class _StoreCollector:
    """What the store says at scrape time: the same whichever process is asked."""

    def __init__(self, store: CallStore, now: float, publisher: Publisher | None) -> None:
        self.store = store
        self.now = now
        self.publisher = publisher

    def collect(self) -> Iterable[Metric]:
        try:
            up = self.store.ping()
        except Exception:
            up = False
        yield GaugeMetricFamily("phoney_store_up", "The call store answers (1) or not (0).",
                                value=1 if up else 0)
        if not up:
            return
        try:
            yield GaugeMetricFamily("phoney_live_calls", "Calls in progress.",
                                    value=live_calls(self.store, self.now))
            if self.publisher is not None and self.publisher.sinks:
                pending = GaugeMetricFamily(
                    "phoney_events_pending", "Events stored and not yet delivered to a sink.",
                    labels=["sink"])
                end = self.store.last_event_id()
                for sink in self.publisher.sinks:
                    # No cursor yet: the sink starts at the end, so nothing is owed to it.
                    cursor = self.publisher.cursor(sink.name)
                    pending.add_metric([sink.name], 0 if cursor is None else max(0, end - cursor))
                yield pending
        except Exception:
            log.exception("metrics: could not read the store")


class _Collects(Protocol):
    def collect(self) -> Iterable[Metric]: ...


class _Together:
    """Several collectors served as one."""

    def __init__(self, *parts: _Collects) -> None:
        self.parts = parts

    def collect(self) -> Iterable[Metric]:
        for part in self.parts:
            yield from part.collect()


def _publisher(app: Flask) -> Publisher | None:
    found = getattr(app.extensions.get(EXTENSION), "publisher", None)
    return found if isinstance(found, Publisher) else None


def _authorized(token: str) -> bool:
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())


@metrics.get("/metrics")
def scrape() -> Response:
    """GET /metrics: Prometheus text (or OpenMetrics by Accept); 401 without the METRICS_TOKEN."""
    found: Services = current_app.extensions["phoney"]
    if not _authorized(found.settings.metrics_token):
        return Response("metrics need a bearer token\n", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    publisher = _publisher(current_app)
    if publisher is not None:
        _mirror.sync(publisher)
    process: _Collects = REGISTRY
    if multiprocess_mode():
        process = CollectorRegistry()
        MultiProcessCollector(process)  # type: ignore[no-untyped-call]
    store = _StoreCollector(found.store, found.call_service.clock(), publisher)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(_Together(process, store)), status=200,
                    headers={"Content-Type": content_type, "Cache-Control": "no-store"})


# -- wiring -------------------------------------------------------------------------------------

def webhook_observer() -> Callable[[str, float], None]:
    """`observe(route, seconds)`: one webhook's time into the webhook histogram, by route (the
    voice webhooks are answered ahead of Flask's hooks, engine/web/voice.py)."""
    webhook = instruments().webhook
    # The histogram's child per route, looked up once (`labels` is a dict lookup under a lock).
    # The routes are the app's own, so this stays small. A child made before a fork is still
    # right after it: in multi-process mode each value checks the process id it writes for.
    by_route: dict[str, Histogram] = {}

    def observe(route: str, seconds: float) -> None:
        child = by_route.get(route)
        if child is None:
            child = by_route[route] = webhook.labels(route)
        child.observe(seconds)

    return observe


def install_metrics(app: Flask) -> None:
    """Serve `/metrics` and follow the publisher's counters (the webhooks are timed by
    `webhook_observer`, where they are answered)."""
    app.register_blueprint(metrics)
    publisher = _publisher(app)
    if publisher is not None:
        _mirror.watch(publisher)
    zero_known_labels(app, publisher)


def zero_known_labels(app: Flask, publisher: Publisher | None) -> None:
    """Give every known label of the instruments a sample at 0 (see the module docstring):
    each error kind and `other`, each of `publisher`'s sinks, each speech outcome, each relay
    reply moment, and each of the app's webhook routes. Making a child adds nothing to it, so
    this is safe to repeat."""
    found = instruments()
    for kind in sorted({*ERROR_LABELS, "other"}):
        found.errors.labels(kind)
    for sink in publisher.sinks if publisher is not None else ():
        for counter in (found.delivered, found.failed, found.rejected):
            counter.labels(sink.name)
    for outcome in SPEECH_OUTCOMES:
        found.speech.labels(outcome)
    for moment in RELAY_MOMENTS:
        found.relay.labels(moment)
    for route in WEBHOOK_ROUTES:
        found.webhook.labels(route)
