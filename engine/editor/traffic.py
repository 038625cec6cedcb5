"""Traffic on a flow's graph: how often each edge was taken, where calls ended, where calls are.

Read from the recorded calls of the flow: every move of a call is a `call.node` event naming the
edge it took by its `edge_id` (engine/runtime/step.py), the same id the graph's JSON export
gives each edge, so counts land on the edges the editor draws. Calls are those of the flow that
started at or after `since`, the most recently updated first, at most `max_calls` of them
(`truncated` says when there were more). Test calls (`flask call`, scenarios, the editor's own
calls) are left out unless asked for.

Per node: `entered` (calls that reached it, the start node included), `ended` (calls that ended
there), `dropped` (of those, calls that ended on a node that is not a terminal one: the caller
hung up, or the line failed, part way through), `live` (calls there now).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from engine.calls.test_calls import source_of_test_call
from engine.flows.model import Flow
from engine.store import CallStore, StoredEvent

__all__ = ["MAX_CALLS", "traffic"]

MAX_CALLS = 1000
_PAGE = 500
_MAX_EVENTS = 5000  # per call: a call is a few hundred events at most


def _events(store: CallStore, call_sid: str) -> list[StoredEvent]:
    found: list[StoredEvent] = []
    after = 0
    while len(found) < _MAX_EVENTS:
        page = store.events_after(after, call_sid, limit=_PAGE)
        found += page
        if len(page) < _PAGE:
            break
        after = page[-1].id
    return found


def traffic(store: CallStore, flow: Flow, since: float, include_tests: bool = False,
            max_calls: int = MAX_CALLS) -> dict[str, Any]:
    """The flow's traffic since `since` (epoch seconds), as the traffic route answers it."""
    listed = store.list_calls(limit=max_calls + 1)
    truncated = len(listed) > max_calls and listed[max_calls].updated_at >= since
    edges: Counter[str] = Counter()
    unmapped = 0
    entered: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    live: Counter[str] = Counter()
    counted = 0
    for call in listed[:max_calls]:
        if call.flow_id != flow.id or call.started_at < since:
            continue
        if not include_tests and source_of_test_call(store, call.call_sid) is not None:
            continue
        counted += 1
        entered[flow.start] += 1
        for event in _events(store, call.call_sid):
            if event.name != "call.node":
                continue
            edge_id = event.data.get("edge_id")
            edge = flow.edge(edge_id) if isinstance(edge_id, str) else None
            if edge is None:
                unmapped += 1
                continue
            edges[edge.id] += 1
            if edge.target != edge.source:
                entered[edge.target] += 1
        if call.ended_at is None:
            live[call.node] += 1
            continue
        ended[call.node] += 1
        node = flow.nodes.get(call.node)
        if node is None or not node.terminal:
            dropped[call.node] += 1
    nodes = {node_id: {"entered": entered[node_id], "ended": ended[node_id],
                       "dropped": dropped[node_id], "live": live[node_id]}
             for node_id in flow.nodes}
    return {"flow": flow.id, "since": since, "calls": counted, "truncated": truncated,
            "edges": {edge.id: edges[edge.id] for edge in flow.edges},
            "unmapped": unmapped, "nodes": nodes}
