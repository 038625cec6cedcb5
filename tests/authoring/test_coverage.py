"""Edge coverage from call.node events, on a small flow."""

from __future__ import annotations

from engine.flows.compile import compile_flow
from engine.flows.coverage import Coverage, edge_taken, format_percent
from engine.flows.model import Flow
from engine.flows.yamlread import read_text
from tests.authoring.conftest import MINI


def mini() -> Flow:
    document, problems = read_text("flows/mini.yaml", MINI)
    assert document is not None and not problems
    return compile_flow(document.data).flow


def test_each_event_maps_to_the_one_edge_it_took() -> None:
    flow = mini()
    by_zero = edge_taken(flow, {"source": "chat", "edge": "route", "node": "desk",
                                "when": "digits == '0'", "edge_id": "chat/route/1"})
    by_word = edge_taken(flow, {"source": "chat", "edge": "route", "node": "desk",
                                "when": "said_any('desk')", "edge_id": "chat/route/0"})
    assert by_zero is not None and by_word is not None and by_zero != by_word
    assert by_zero.label == "digits == '0'"
    retry = edge_taken(flow, {"source": "chat", "edge": "error:network", "node": "chat",
                              "strategy": "retry 1", "edge_id": "chat/error:network/retry"})
    then = edge_taken(flow, {"source": "chat", "edge": "error:network", "node": "sorry",
                             "edge_id": "chat/error:network/then"})
    assert retry is not None and retry.strategy == "retry 1"
    assert then is not None and then.strategy is None
    assert edge_taken(flow, {"source": "chat", "edge": "next", "node": "bye",
                             "edge_id": "chat/next"}) is None
    assert edge_taken(flow, {"source": "chat", "edge": "route", "node": "desk",
                             "when": "digits == '9'", "edge_id": "chat/route/2"}) is None


def test_only_the_edge_id_names_the_edge_taken() -> None:
    flow = mini()
    # What the event says besides its id is for people; an event without an id names no edge,
    # even when its ends and kind are those of one.
    assert edge_taken(flow, {"source": "hello", "edge": "next", "node": "chat"}) is None
    assert edge_taken(flow, {"edge_id": "hello/next"}) == flow.edge("hello/next")
    assert edge_taken(flow, {"source": "hello", "edge": "next", "node": "chat",
                             "edge_id": 7}) is None
    # The server-wide ceiling's goodbye is not an edge of the graph: unmapped, as ever.
    coverage = Coverage(flow)
    coverage.add([{"node": "chat", "source": "chat", "edge": "limit", "reason": "max_turns",
                   "limit": 100, "by": "server"}])
    assert not coverage.taken
    assert coverage.unmapped == {"chat -limit-> chat": 1}


def test_coverage_counts_edges_and_reports_the_rest() -> None:
    flow = mini()
    coverage = Coverage(flow)
    coverage.add([
        {"source": "hello", "edge": "next", "node": "chat", "edge_id": "hello/next"},
        {"source": "chat", "edge": "route", "node": "desk", "when": "digits == '0'",
         "edge_id": "chat/route/1"},
        {"source": "hello", "edge": "next", "node": "chat", "edge_id": "hello/next"},
        {"source": "chat", "edge": "error:tts_failure", "node": "chat",
         "strategy": "voice twilio", "edge_id": "chat/error:tts_failure/voice"},
        {"source": "hello", "edge": "error:tts_failure", "node": "hello",
         "strategy": "voice twilio", "edge_id": "hello/error:tts_failure/voice"},
    ])
    assert len(flow.edges) == 13
    assert coverage.percent == 100 * 3 / 13
    assert len(coverage.never) == 10
    report = coverage.report()
    assert report[0] == "mini: 3/13 edges (23.0%)"
    assert "  ✓ 2×      hello -next-> chat" in report
    assert "  ✓ 1×      chat -route-> desk  when digits == '0'" in report
    assert "  ✗ never   chat -route-> desk  when said_any('desk')" in report
    assert "  ✗ never   chat -error:network-> chat (retry 1)" in report
    assert any("hello -error:tts_failure-> hello (voice twilio)" in line
               and "not an edge of the flow" in line for line in report)


def test_percentages_never_round_up_to_full() -> None:
    assert format_percent(100.0) == "100%"
    assert format_percent(99.99) == "99.9%"
    assert format_percent(31 / 32 * 100) == "96.8%"
    assert format_percent(0) == "0.0%"
