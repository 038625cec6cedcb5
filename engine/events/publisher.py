"""The publisher: the store's events, delivered to sinks (Pusher) in order, off the request path.

Webhooks only write events to the store, in the transaction of the step that caused them (the
outbox). One daemon thread per server process reads them with `events_after` and hands them to
each sink in id order, a batch at a time; a webhook never waits for a sink.

Per sink, the store keeps one blob, `cursor:<sink name>`, holding a `Lease`: the id of the last
event delivered (`after`), which process delivers (`owner`) and until when (`until`, epoch
seconds). Every change to it is a `compare_and_set_blob` over the value last read, so:
- only the lease holder delivers, so with several server processes each event goes to Pusher
  once; a holder renews the lease while it works (when half of it is left) and hands it back on
  `stop`, and another process takes over an expired lease (a crashed holder) where it left off;
- the cursor only moves after the sink accepted the batch, so a crash or a failure means
  "delivered again", never "lost" (at least once; twice only if a holder dies between delivering
  and moving the cursor, or is stalled past its lease while delivering);
- when no cursor exists yet it starts at the current end of the events table: a new deployment
  does not replay the history to Pusher.

A failing sink is retried with exponential backoff and jitter (`backoff` doubling up to
`max_backoff` seconds), forever, and counted (`stats()`). A sink that refuses a batch for good
(`Rejected`, e.g. HTTP 400) gets its events one at a time; an event refused alone is logged and
counted as `rejected`, then skipped, since retrying it cannot succeed. A sink with a `flush()`
gets it called in rounds with nothing to deliver (see `Sink`). Sinks share the thread: a
sink's own timeout (Pusher's 5 s) bounds how long it can hold up the others.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.store import CallStore, StoredEvent

log = logging.getLogger(__name__)

CURSOR_PREFIX = "cursor:"


class Rejected(Exception):
    """The sink refused these events for good (a malformed request): retrying cannot help."""


class Sink(Protocol):
    """Where the publisher delivers events (Pusher); one is driven by one publisher thread."""

    @property
    def name(self) -> str:
        """Names the sink's cursor in the store: keep it stable across releases."""

    @property
    def max_batch(self) -> int:
        """Events one `deliver` call takes: one request, so a batch is accepted or not."""

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        """Deliver `events` (in id order) or raise: `Rejected` for good, anything else to retry."""

    # A sink may also have `flush() -> bool`: called by the lease holder in a round with no
    # events to deliver (and not while backing off), for what the sink holds back itself (the
    # alerts' summary); True when it sent something. Raising is a failure, retried with backoff.


@dataclass(frozen=True)
class Lease:
    """The stored cursor of one sink: what has been delivered, and who delivers it until
    when.
    """

    after: int  # the last event id delivered
    owner: str  # the process delivering; "" when nobody holds the lease
    until: float  # epoch seconds

    def encode(self) -> bytes:
        """The lease as the compact JSON bytes kept in the store's `cursor:<sink>` blob."""
        return json.dumps({"after": self.after, "owner": self.owner, "until": self.until},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Lease:
        """The lease `encode` wrote; ValueError, KeyError or TypeError for anything else."""
        value = json.loads(raw)
        return cls(int(value["after"]), str(value["owner"]), float(value["until"]))


@dataclass
class SinkStats:
    """One sink's counters in this process, as `GET /api/live` and the metrics show them."""

    delivered: int = 0  # events the sink accepted (from this process)
    failed_attempts: int = 0  # deliveries that failed, each retry counted
    retries_pending: int = 0  # events of a failed batch waiting for their retry now
    rejected: int = 0  # events refused for good, logged one by one and skipped
    lease_lost: int = 0  # batches delivered after another process took the lease over
    leader: bool = False  # this process holds the sink's lease
    cursor: int | None = None  # the last event id delivered, as last seen
    last_error: str = ""
    last_error_at: float | None = None
    next_retry_at: float | None = None  # epoch seconds

    def as_json(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict, field by field."""
        return dataclasses.asdict(self)


def default_owner() -> str:
    """A name for this process in the leases, `host:pid:random`, new on every call, so no
    two publishers ever share one.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Lane:
    """One sink's delivery: its lease, its backoff and its counters."""

    def __init__(self, publisher: Publisher, sink: Sink) -> None:
        self.publisher = publisher
        self.sink = sink
        self.key = CURSOR_PREFIX + sink.name
        self.stats = SinkStats()
        self.held: bytes | None = None  # the blob as this process last read or wrote it
        self.standby_until = 0.0  # monotonic: another process holds the lease
        self.retry_at = 0.0  # monotonic: backing off after a failure
        self.attempt = 0
        self.limit = max(sink.max_batch, 1)
        self.single_until = 0  # after a Rejected batch: one event at a time up to this id

    @property
    def store(self) -> CallStore:
        return self.publisher.store

    def ensure_cursor(self) -> None:
        """No cursor yet: start at the current end of the events, held by nobody."""
        if self.store.get_blob(self.key) is None:
            fresh = Lease(self.store.last_event_id(), "", 0.0)
            if self.store.compare_and_set_blob(self.key, None, fresh.encode()):
                log.info("publisher: %s starts after event %d", self.sink.name, fresh.after)

    def claim(self, now: float) -> Lease | None:
        """The lease, if this process holds it or could take it; None when another does."""
        me, ttl = self.publisher.owner, self.publisher.lease_seconds
        raw = self.store.get_blob(self.key)
        if raw is None:
            self.ensure_cursor()
            return None  # read it back next round, whoever wrote it
        try:
            lease = Lease.decode(raw)
        except (ValueError, KeyError, TypeError):
            log.error("publisher: %s is unreadable (%r); starting it again at the end",
                      self.key, raw[:100])
            lease = Lease(self.store.last_event_id(), "", 0.0)
        if lease.owner != me and lease.until > now:
            return None
        if lease.owner == me and lease.until - now > ttl / 2 and raw == self.held:
            return lease
        renewed = Lease(lease.after, me, now + ttl)
        if not self.store.compare_and_set_blob(self.key, raw, renewed.encode()):
            return None
        if lease.owner != me:
            log.info("publisher: %s now delivered by %s (after event %d%s)", self.sink.name, me,
                     lease.after, f", taken over from {lease.owner}" if lease.owner else "")
        self.held = renewed.encode()
        return renewed

    def advance(self, lease: Lease, to_id: int, now: float) -> None:
        moved = Lease(to_id, lease.owner, now + self.publisher.lease_seconds).encode()
        if self.held is not None and self.store.compare_and_set_blob(self.key, self.held, moved):
            self.held = moved
            self.stats.cursor = to_id
            return
        # Stalled past the lease: another process delivers from the old cursor, so these
        # events may reach the sink twice. Counted, and the next round starts from the store.
        self.stats.lease_lost += 1
        self.held = None
        log.warning("publisher: lost the %s lease while delivering events up to %d; they may "
                    "be delivered twice", self.sink.name, to_id)

    def release(self) -> None:
        if self.held is None:
            return
        lease = Lease.decode(self.held)
        if lease.owner == self.publisher.owner:
            free = Lease(lease.after, "", 0.0).encode()
            if self.store.compare_and_set_blob(self.key, self.held, free):
                self.held = None

    def run(self) -> bool:
        """One round: True when events were handled (more may be waiting)."""
        tick = time.monotonic()
        if tick < self.standby_until:
            return False
        now = self.publisher.clock()
        lease = self.claim(now)
        if lease is None:
            self.stats.leader = False
            self.standby_until = tick + self.publisher.standby_interval
            return False
        self.stats.leader, self.stats.cursor = True, lease.after
        if tick < self.retry_at:
            return False
        limit = 1 if lease.after < self.single_until else self.limit
        events = self.store.events_after(lease.after, limit=limit)
        if not events:
            return self.idle()
        try:
            self.sink.deliver(events)
        except Rejected as error:
            return self.rejected(lease, events, error)
        except Exception as error:
            self.failed(events, error)
            return False
        self.attempt = 0
        self.stats.retries_pending = 0
        self.stats.next_retry_at = None
        self.stats.delivered += len(events)
        self.advance(lease, events[-1].id, self.publisher.clock())
        return True

    def idle(self) -> bool:
        """Nothing to deliver: the sink's `flush`, when it has one (True when it sent)."""
        flush = getattr(self.sink, "flush", None)
        if flush is None:
            return False
        try:
            sent = bool(flush())
        except Exception as error:
            self.failed([], error)
            return False
        if sent:
            self.attempt = 0
            self.stats.next_retry_at = None
        return sent

    def rejected(self, lease: Lease, events: Sequence[StoredEvent], error: Rejected) -> bool:
        if len(events) > 1:
            log.warning("publisher: %s refused a batch of %d events (%s); sending them one by "
                        "one", self.sink.name, len(events), error)
            self.single_until = events[-1].id
            return True
        event = events[0]
        self.stats.rejected += 1
        self.note_error(error)
        log.error("publisher: %s refused event %d (%s of call %s) for good, skipping it: %s",
                  self.sink.name, event.id, event.name, event.call_sid, error)
        self.advance(lease, event.id, self.publisher.clock())
        return True

    def failed(self, events: Sequence[StoredEvent], error: Exception) -> None:
        self.attempt += 1
        publisher = self.publisher
        delay = min(publisher.max_backoff, publisher.backoff * 2 ** (self.attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter: processes and sinks do not retry in step
        self.retry_at = time.monotonic() + delay
        self.stats.failed_attempts += 1
        self.stats.retries_pending = len(events)
        self.stats.next_retry_at = publisher.clock() + delay
        self.note_error(error)
        what = f"events {events[0].id}-{events[-1].id}" if events else "its flush"
        log.warning("publisher: %s failed to take %s (attempt %d, retry in %.1f s): %s",
                    self.sink.name, what, self.attempt, delay, self.stats.last_error)

    def note_error(self, error: Exception) -> None:
        self.stats.last_error = f"{type(error).__name__}: {error}"[:300]
        self.stats.last_error_at = self.publisher.clock()


class Publisher:
    """Delivers the store's new events to `sinks`; see the module docstring.

    `start()` makes the cursors and starts the thread; `run_once()` is one round without the
    thread (tests drive it step by step). `owner` names this process in the leases.
    """

    def __init__(self, store: CallStore, sinks: Sequence[Sink], *, poll_interval: float = 0.1,
                 lease_seconds: float = 15.0, standby_interval: float = 1.0,
                 backoff: float = 0.5, max_backoff: float = 30.0, owner: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        names = [sink.name for sink in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"publisher: sink names must differ, got {names}")
        self.store = store
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.standby_interval = standby_interval
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.owner = owner or default_owner()
        self.clock = clock
        self._lanes = [_Lane(self, sink) for sink in sinks]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def sinks(self) -> list[Sink]:
        """The sinks, in the order they are served each round."""
        return [lane.sink for lane in self._lanes]

    @property
    def running(self) -> bool:
        """True while the delivery thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def prepare(self) -> None:
        """Make missing cursors now, so events written from here on are delivered."""
        for lane in self._lanes:
            lane.ensure_cursor()

    def start(self) -> Publisher:
        """Make the missing cursors, then start the daemon delivery thread; no-op when it already
        runs. Returns the publisher itself.
        """
        if self.running:
            return self
        self.prepare()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="event-publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the round in progress, then hand the leases back for another process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for lane in self._lanes:
            try:
                lane.release()
            except Exception:
                log.exception("publisher: could not release the %s lease", lane.sink.name)

    def run_once(self) -> bool:
        """One round over the sinks: True when some delivered (more may be waiting)."""
        busy = False
        for lane in self._lanes:
            busy = lane.run() or busy
        return busy

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # the store itself failing: keep the thread, try again soon
                log.exception("publisher: a round failed")
                self._stop.wait(1.0)
                continue
            if not busy:
                self._stop.wait(self.poll_interval)

    def stats(self) -> dict[str, SinkStats]:
        """Counters per sink name (copies)."""
        return {lane.sink.name: dataclasses.replace(lane.stats) for lane in self._lanes}

    def cursor(self, sink_name: str) -> int | None:
        """The stored cursor of a sink (whoever delivers it), None when there is none."""
        raw = self.store.get_blob(CURSOR_PREFIX + sink_name)
        return None if raw is None else Lease.decode(raw).after

    def caught_up(self) -> bool:
        """Every sink has delivered every event stored so far."""
        end = self.store.last_event_id()
        return all((self.cursor(lane.sink.name) or 0) >= end for lane in self._lanes)
