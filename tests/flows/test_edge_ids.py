"""Edge identities: every compiled edge has an id, unique in its flow, that stays the same however
and wherever the flow is compiled, and that the flow finds its edge by."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from engine.flows.compile import compile_flow
from engine.flows.export import to_json
from engine.flows.loader import load_project, registry_from_snapshot
from engine.flows.model import EDGE_KINDS, Edge, Flow, Registry, edge_id

ROOT = Path(__file__).resolve().parents[2]

# One node of each kind of edge, the error strategy's self-loops and two routes to one node.
EVERY_KIND: dict[str, Any] = {
    "flow": "every",
    "personality": "p",
    "limits": {"max_turns": 10, "then": "bye"},
    "defaults": {
        "no_input": {"retries": 1, "then": "bye"},
        "on_error": {"network": {"retry": 2, "then": "sorry"},
                     "rate_limit": {"retry": 1, "then": "hold"},
                     "ai_failure": {"personality": "calm", "then": "sorry"},
                     "tts_failure": {"voice": "twilio"}},
    },
    "start": "greet",
    "on_machine": "voicemail",
    "nodes": {
        "greet": {"type": "say", "text": "Hello.", "next": "menu"},
        "menu": {"type": "gather", "prompt": "Press 1 or 2.", "input": ["dtmf"],
                 "routes": [{"when": "digits == '1'", "to": "assist"},
                            {"when": "digits == '2'", "to": "assist"}],
                 "next": "lookup"},
        "lookup": {"type": "http", "request": {"url": "https://api.example.com/x"},
                   "next": "check", "on_error": {"http": {"retry": 1, "then": "sorry"}}},
        "check": {"type": "switch", "routes": [{"when": "turn > 5", "to": "bye"}],
                  "next": "assist"},
        "assist": {"type": "ai", "instructions": "Help.",
                   "routes": [{"when": "digits == '0'", "to": "desk"}],
                   "exits": {"desk": "A person.", "bye": "Done."}},
        "hold": {"type": "say", "text": "One moment.", "next": "assist"},
        "sorry": {"type": "say", "text": "Sorry.", "next": "desk"},
        "desk": {"type": "transfer", "to": "+15550001111", "on_fail": "voicemail",
                 "next": "bye"},
        "voicemail": {"type": "record", "prompt": "Leave a message.", "next": "bye"},
        "bye": {"type": "hangup", "text": "Goodbye."},
    },
}

EXPECTED_IDS = [
    "greet/next",
    "menu/route/0", "menu/route/1", "menu/next", "menu/no_input", "menu/limit",
    "lookup/next", "lookup/error:http/retry", "lookup/error:http/then",
    "check/route/0", "check/next",
    "assist/route/0", "assist/exit/desk", "assist/exit/bye", "assist/no_input",
    "assist/error:network/retry", "assist/error:network/then",
    "assist/error:rate_limit/retry", "assist/error:rate_limit/then",
    "assist/error:ai_failure/personality", "assist/error:ai_failure/then",
    "assist/error:tts_failure/voice",
    "assist/limit",
    "hold/next", "sorry/next",
    "desk/next", "desk/transfer_failed",
    "voicemail/next",
    "greet/machine",
]

ID_SHAPE = re.compile(r"^(?P<source>[a-z][a-z0-9_]*)/(?P<kind>[a-z_:]+)(?:/(?P<part>.+))?$")


def every_kind() -> Flow:
    return compile_flow(EVERY_KIND).flow


@pytest.fixture(scope="module")
def bundled() -> Registry:
    result = load_project(ROOT)
    assert result.registry is not None, "\n".join(map(str, result.problems))
    return result.registry


def ids(flow: Flow) -> list[str]:
    return [edge.id for edge in flow.edges]


def test_each_kind_of_edge_has_the_documented_id() -> None:
    flow = every_kind()
    assert ids(flow) == EXPECTED_IDS
    assert {edge.kind for edge in flow.edges} == set(EDGE_KINDS)
    by_id = {edge.id: edge for edge in flow.edges}
    assert (by_id["menu/route/1"].label, by_id["menu/route/1"].target) == \
        ("digits == '2'", "assist")
    assert by_id["assist/exit/bye"].target == "bye"
    assert by_id["assist/error:network/retry"].strategy == "retry 2"
    assert by_id["assist/error:ai_failure/personality"].strategy == "personality calm"
    assert by_id["assist/error:tts_failure/voice"].strategy == "voice twilio"
    assert by_id["assist/error:network/then"].target == "sorry"


def test_the_flow_finds_every_edge_by_its_id() -> None:
    flow = every_kind()
    for edge in flow.edges:
        assert flow.edge(edge.id) is edge
    assert flow.edge("assist/exit/nowhere") is None
    assert flow.edge("") is None


def test_edge_id_spells_what_the_compiler_names() -> None:
    for edge in every_kind().edges:
        shape = ID_SHAPE.match(edge.id)
        assert shape is not None, edge.id
        assert (shape["source"], shape["kind"]) == (edge.source, edge.kind)
        part = shape["part"]
        assert edge.id == edge_id(edge.source, edge.kind,
                                  int(part) if part and part.isdigit() else part)


def test_a_flow_refuses_two_edges_with_one_id() -> None:
    flow = every_kind()
    twice = (*flow.edges, dataclasses.replace(flow.edges[0], target="bye"))
    with pytest.raises(ValueError, match="edge ids are not unique: greet/next"):
        dataclasses.replace(flow, edges=twice)


def test_a_route_written_twice_is_one_edge() -> None:
    data = json.loads(json.dumps(EVERY_KIND))
    data["nodes"]["check"]["routes"].append({"when": "turn > 5", "to": "bye"})
    flow = compile_flow(data).flow
    assert ids(flow) == EXPECTED_IDS  # the copy can never be taken: the first holds first


def test_ids_do_not_change_when_other_nodes_change() -> None:
    data = json.loads(json.dumps(EVERY_KIND))
    data["nodes"] = {"intro": {"type": "say", "text": "Hi.", "next": "greet"}, **data["nodes"]}
    data["nodes"]["assist"]["exits"] = {"bye": "Done.", "desk": "A person."}
    data["start"] = "intro"
    changed = compile_flow(data).flow
    # The machine edge leaves the start node, so it moves with `start`, and only it.
    assert set(ids(changed)) == {*EXPECTED_IDS, "intro/next", "intro/machine"} - {
        "greet/machine"}
    for edge in every_kind().edges:
        assert changed.edge(edge.id) == edge or edge.kind == "machine"


def test_bundled_flows_have_unique_well_formed_ids(bundled: Registry) -> None:
    for flow in bundled.flows.values():
        assert len(set(ids(flow))) == len(flow.edges), flow.id
        for edge in flow.edges:
            shape = ID_SHAPE.match(edge.id)
            assert shape is not None, edge.id
            assert (shape["source"], shape["kind"]) == (edge.source, edge.kind), edge.id


def test_ids_are_the_same_after_compiling_a_stored_snapshot_again(bundled: Registry) -> None:
    reloaded = load_project(ROOT).registry
    assert reloaded is not None
    for flow_id, flow in bundled.flows.items():
        assert reloaded.flows[flow_id].edges == flow.edges
        # The store keeps the snapshot as JSON: compile what comes back from it.
        stored = json.loads(json.dumps(dict(bundled.snapshots[flow_id]), default=dict))
        again = registry_from_snapshot(stored).flows[flow_id]
        assert again.edges == flow.edges
        assert ids(again) == ids(flow)
        for edge in flow.edges:
            assert again.edge(edge.id) == edge


def test_the_json_export_names_each_edge_by_its_id() -> None:
    flow = every_kind()
    exported = to_json(flow)["edges"]
    assert [edge["id"] for edge in exported] == EXPECTED_IDS
    for drawn, edge in zip(exported, flow.edges, strict=True):
        assert (drawn["source"], drawn["target"], drawn["kind"]) == \
            (edge.source, edge.target, edge.kind)


def test_edges_are_told_apart_by_id() -> None:
    flow = every_kind()
    first, second = (flow.edge("menu/route/0"), flow.edge("menu/route/1"))
    assert isinstance(first, Edge) and isinstance(second, Edge)
    assert (first.source, first.target, first.kind) == (second.source, second.target,
                                                        second.kind)
    assert first != second and first.key == second.key
