"""`flask flows test`: run the scenario files, print PASS/FAIL and each flow's edge coverage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from engine.authoring.runner import ScenarioResult, run_scenarios
from engine.flows.coverage import format_percent
from engine.flows.loader import SCENARIO_SUFFIX, load_project
from engine.flows.scenarios import load_scenarios, scenario_files
from engine.flows.schema import did_you_mean
from engine.web.services import AppFactory

Echo = Callable[[str], None]


def run_flow_tests(root: Path, flow_ids: Sequence[str], min_coverage: float | None,
                   echo: Echo, warn: Echo, make_app: AppFactory) -> int:
    """Run the scenarios of `flow_ids` (default: every flow) on apps `make_app` builds; the
    exit status."""
    project = load_project(root)
    if project.registry is None:
        for problem in project.problems:
            warn(str(problem))
        warn("the flows do not validate; fix the problems above first")
        return 1
    flows = project.registry.flows
    unknown = [flow_id for flow_id in flow_ids if flow_id not in flows]
    if unknown:
        for flow_id in unknown:
            warn(f"unknown flow '{flow_id}'{did_you_mean(flow_id, list(flows))}; "
                 f"known flows: {', '.join(sorted(flows))}")
        return 1
    chosen = {flow_id: flows[flow_id] for flow_id in (flow_ids or sorted(flows))}
    paths = [path for path in scenario_files([root / "flows"])
             if path.name.removesuffix(SCENARIO_SUFFIX) in chosen]
    loaded = load_scenarios(paths, flows, root)
    for problem in loaded.problems:
        warn(str(problem))
    if any(problem.severity == "error" for problem in loaded.problems):
        warn("the scenario files do not validate; fix the problems above first")
        return 1

    def show(result: ScenarioResult) -> None:
        for line in result.lines():
            echo(line)

    report = run_scenarios(loaded.files, root, chosen, make_app, on_result=show)
    failed = bool(report.failed)
    echo("")
    echo("edge coverage:")
    tested = {scenario_file.flow_id for scenario_file in loaded.files}
    for flow_id, coverage in report.coverage.items():
        if flow_id not in tested:
            echo(f"{flow_id}: no scenarios (write flows/{flow_id}{SCENARIO_SUFFIX}); "
                 f"0/{len(coverage.flow.edges)} edges (0.0%)")
        else:
            for line in coverage.report():
                echo(line)
        if min_coverage is not None and coverage.percent < min_coverage:
            failed = True
            warn(f"{flow_id}: edge coverage {format_percent(coverage.percent)} is below "
                 f"--min-coverage {min_coverage:g}%")
    passed = len(report.results) - len(report.failed)
    echo("")
    echo(f"{passed} passed, {len(report.failed)} failed")
    return 1 if failed else 0
