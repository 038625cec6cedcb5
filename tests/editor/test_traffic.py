"""Traffic counts from recorded calls: only the flow's calls since the time asked, the most
recent first up to a bound that says when it cut."""

from __future__ import annotations

from pathlib import Path

from engine.editor import traffic
from engine.flows.loader import load_project
from engine.runtime.state import Caller, CallState
from engine.store import NewEvent, SQLiteStore

ROOT = Path(__file__).resolve().parents[2]


def _call(store: SQLiteStore, number: int, flow_id: str, at: float, node: str) -> None:
    sid = f"CA{number:032x}"
    state = CallState(call_sid=sid, flow_id=flow_id, flow_version="v", node=node,
                      caller=Caller(number="+15551230000"), called="+15550001000",
                      started_at=at, personality="friendly")
    store.commit_step(None, state, [NewEvent("call.node", {
        "node": "assist", "source": "greet", "edge": "next", "edge_id": "greet/next"})],
        f"request-{number}", "<Response/>", at)


def test_counts_take_the_flows_calls_since_then_and_say_when_they_were_cut(
        tmp_path: Path) -> None:
    registry = load_project(ROOT).registry
    assert registry is not None
    flow = registry.flows["receptionist"]
    store = SQLiteStore(str(tmp_path / "calls.db"))
    try:
        _call(store, 1, "receptionist", 1000.0, "assist")
        _call(store, 2, "receptionist", 2000.0, "assist")
        _call(store, 3, "after_hours", 500.0, "welcome")
        found = traffic(store, flow, since=1500.0)
        assert found["calls"] == 1 and found["edges"]["greet/next"] == 1
        assert found["nodes"]["assist"]["live"] == 1 and found["nodes"]["greet"]["entered"] == 1
        assert not found["truncated"]
        everything = traffic(store, flow, since=0.0)
        assert everything["calls"] == 2 and everything["edges"]["greet/next"] == 2
        cut = traffic(store, flow, since=0.0, max_calls=1)
        assert cut["truncated"] and cut["calls"] == 1
    finally:
        store.close()
