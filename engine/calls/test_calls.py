"""Test calls: calls made by `flask call` and by scenario runs, marked so the dashboard can tell
them from a real caller's (and hide them).

A test call is marked once it has rung: a `call.test` event (`{"source": "flask call"}`, live
on the dashboard like every event) and a small blob `test-call:<CallSid>` holding the source,
which the calls list reads per call. Both go through the store's own ports, so the mark needs
no change to how a webhook is answered.
"""

from __future__ import annotations

from engine.calls.recorder import EventRecorder
from engine.store import CallStore, NewEvent

EVENT = "call.test"
SOURCES = ("flask call", "scenario", "editor")


def _key(call_sid: str) -> str:
    return f"test-call:{call_sid}"


def mark_test_call(recorder: EventRecorder, call_sid: str, source: str, at: float) -> None:
    """Mark `call_sid` as a test call made by `source` (one of `SOURCES`) at `at`."""
    recorder.store.put_blob(_key(call_sid), source.encode())
    recorder.record(call_sid, [NewEvent(EVENT, {"source": source})], at)


def source_of_test_call(store: CallStore, call_sid: str) -> str | None:
    """What made `call_sid`, when it is a test call (`flask call`, `scenario`); else None."""
    blob = store.get_blob(_key(call_sid))
    return blob.decode() if blob is not None else None
