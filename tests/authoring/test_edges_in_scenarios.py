"""Calls through the real webhooks move only along the compiled graph.

The bundled scenarios are run as `flask flows test` runs them; every `call.node` event they
record must name an edge of the flow by its `edge_id` and say of it what the graph says. The
one exception is the server-wide ceiling's goodbye (`by: server`), which is no edge of any flow.
So an edge decided anywhere but in the graph (the interpreter, or the shell recording one itself)
fails here.
"""

from __future__ import annotations

from pathlib import Path

from engine.authoring.runner import run_scenarios
from engine.flows.loader import SCENARIO_SUFFIX, load_project
from engine.flows.scenarios import load_scenarios, scenario_files
from engine.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def test_every_move_of_the_bundled_scenarios_is_an_edge_of_its_flow() -> None:
    project = load_project(ROOT)
    assert project.registry is not None
    flows = project.registry.flows
    paths = [path for path in scenario_files([ROOT / "flows"])
             if path.name.removesuffix(SCENARIO_SUFFIX) in flows]
    loaded = load_scenarios(paths, flows, ROOT)
    assert not loaded.problems
    report = run_scenarios(loaded.files, ROOT, flows, create_app)
    assert not report.failed
    moves = 0
    for result in report.results:
        flow = flows[result.flow_id]
        for data in result.node_events:
            if data.get("by") == "server":
                assert "edge_id" not in data
                continue
            edge = flow.edge(str(data.get("edge_id")))
            assert edge is not None, f"{result.scenario.name}: {data} names no edge"
            assert (data["source"], data["node"], data["edge"], data.get("strategy")) == \
                (edge.source, edge.target, edge.kind, edge.strategy), result.scenario.name
            assert data.get("when") == (edge.label if edge.kind == "route" else None)
            moves += 1
    assert moves > 0
