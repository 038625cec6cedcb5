"""The analysis sink: once a call has ended (`call.end`), its flow's `analysis` is filled and
recorded as the call's `call.analysis` event, which is where the result is stored (with the
call, pruned with it, encrypted as its other events are) and what `GET /api/calls/<CallSid>`
reads as `analysis`.

It is a sink of a publisher of its own (engine/events/publisher.py): off the call path, one
server process at a time, from a cursor in the store, so a restart resumes and a call is not
analysed twice (a call that already has a `call.analysis` event is skipped). The model's
answers never fail a delivery (engine/ai/analysis.py turns them into a `failed` result); only
the store failing does, and is retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.ai.analysis import AnalysisResult, Analyst, CallFacts, Line
from engine.flows.model import Flow
from engine.store import CallStore, NewEvent, StoredEvent

log = logging.getLogger(__name__)

ANALYSIS_EVENT = "call.analysis"
MAX_EVENTS = 5000  # of one call, read to make its transcript

FlowOf = Callable[[str], Flow | None]
Writer = Callable[[str, Sequence[NewEvent], float], None]
"""Records events of a call (`EventRecorder.record`): call sid, events, time."""


def lines_of(events: Sequence[StoredEvent]) -> list[Line]:
    """The words of a call from its events: the caller's speech (`call.transcript`), the flow's
    texts (`call.say`) and the model's replies (`call.response`, streamed parts joined)."""
    lines: list[Line] = []
    for event in events:
        text = str(event.data.get("text") or event.data.get("speech") or "").strip()
        if not text:
            continue
        if event.name == "call.transcript":
            lines.append(Line("caller", text))
        elif event.name == "call.response" and event.data.get("part") and lines \
                and lines[-1].role == "agent":
            lines[-1] = Line("agent", f"{lines[-1].text} {text}")
        elif event.name in ("call.say", "call.response"):
            lines.append(Line("agent", text))
    return lines


def stored_analysis(events: Sequence[StoredEvent]) -> dict[str, Any] | None:
    """The call's analysis as stored (its last `call.analysis` event's data), or None."""
    for event in reversed(events):
        if event.name == ANALYSIS_EVENT:
            return dict(event.data)
    return None


class AnalysisSink:
    """Analyses each call whose flow declares `analysis`, when its `call.end` comes."""

    name = "analysis"
    max_batch = 1  # a model's analysis may take a minute: one call a round, within the lease

    def __init__(self, store: CallStore, analyst: Analyst, flow_of: FlowOf, *,
                 write: Writer | None = None, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.analyst = analyst
        self.flow_of = flow_of
        self.write = write or store.record_events
        self.clock = clock
        self.analysed = 0

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        """Analyse the calls that ended in `events`; raises only when the store fails."""
        for event in events:
            if event.name == "call.end":
                self.analyse(event.call_sid, event.data)

    def analyse(self, call_sid: str, end: Any = None) -> AnalysisResult | None:
        """Analyse one ended call and record the result; None when its flow asks for none or
        it has been analysed already."""
        flow = self.flow_of(call_sid)
        if flow is None or flow.analysis is None:
            return None
        events = self.store.events_after(0, call_sid, limit=MAX_EVENTS)
        if stored_analysis(events) is not None:
            return None
        state = self.store.get_state(call_sid)
        summary = self.store.get_call(call_sid)
        end = end if isinstance(end, dict) else {}
        facts = CallFacts(
            flow=flow.id, status=str(end.get("status") or (summary.status if summary else "")),
            duration=summary.duration if summary is not None else end.get("duration"),
            last_node=state.node if state is not None else "",
            path=tuple(state.path) if state is not None else ())
        try:
            result = self.analyst.analyse(flow.analysis, lines_of(events), facts)
        except Exception as error:  # an analyst's bug must not stop every later analysis
            log.exception("analysis of call %s failed", call_sid)
            result = AnalysisResult("failed", None, {f.name: None for f in
                                                     flow.analysis.fields},
                                    reason=f"{type(error).__name__}: {error}"[:300])
        self.write(call_sid, [NewEvent(ANALYSIS_EVENT, result.as_json())], self.clock())
        self.analysed += 1
        return result
