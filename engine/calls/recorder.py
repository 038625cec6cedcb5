"""Events written outside a step, and the observers that hear of every event written.

Most events are committed with the step that caused them (`CallStore.commit_step`); a few are
not: a refused caller, a webhook that failed inside, a dashboard action, a streamed reply's
partial text. They all go through `EventRecorder.record`, and the call service reports the
events it commits through `EventRecorder.written`, so an observer (the metrics) counts each
event exactly once, whichever way it was stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from engine.store import CallStore, NewEvent

log = logging.getLogger(__name__)

EventObserver = Callable[[Sequence[NewEvent]], None]


class EventRecorder:
    """Writes events to the store and tells the observers; an observer never fails a caller."""

    def __init__(self, store: CallStore, observers: Iterable[EventObserver] = ()) -> None:
        self.store = store
        self._observers: list[EventObserver] = list(observers)

    def observe(self, observer: EventObserver) -> None:
        """Have `observer` hear of every event written from now on."""
        self._observers.append(observer)

    def record(self, call_sid: str, events: Sequence[NewEvent], at: float) -> None:
        """Store `events` for `call_sid` (no step: outside any state change), then tell the
        observers. A store failure propagates: the caller decides what a lost event costs."""
        self.store.record_events(call_sid, events, at)
        self.written(events)

    def written(self, events: Sequence[NewEvent]) -> None:
        """Tell the observers of `events`, already stored (with a step)."""
        if not events:
            return
        for observer in self._observers:
            try:
                observer(events)
            except Exception:
                log.exception("an event observer failed; the events are stored all the same")
