"""`flask flows test`: run the scenario files, print PASS/FAIL and each flow's edge coverage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from engine.authoring.runner import ScenarioResult, run_scenarios
from engine.flows.coverage import format_percent
from engine.flows.loader import SCENARIO_SUFFIX, load_project
from engine.flows.scenarios import ScenarioFile, load_scenarios, scenario_files
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
    files = {scenario_file.flow_id: scenario_file for scenario_file in loaded.files}
    below: list[str] = []
    for flow_id, coverage in report.coverage.items():
        if flow_id not in files:
            echo(f"{flow_id}: no scenarios (write flows/{flow_id}{SCENARIO_SUFFIX}); "
                 f"0/{len(coverage.flow.edges)} edges (0.0%)")
        else:
            for line in coverage.report():
                echo(line)
        shortfall = coverage_shortfall(flow_id, coverage.percent, files.get(flow_id),
                                       min_coverage)
        if shortfall is not None:
            below.append(shortfall)
    passed = len(report.results) - len(report.failed)
    echo("")
    echo(f"{passed} passed, {len(report.failed)} failed")
    for line in below:  # last, where a reader of `make test` looks first
        warn(line)
    return 1 if failed or below else 0


def coverage_shortfall(flow_id: str, percent: float, scenario_file: ScenarioFile | None,
                       min_coverage: float | None) -> str | None:
    """The line saying `flow_id`'s edge coverage is below what it must reach, else None.

    A scenario file's own `min_coverage` wins; files that do not say (and flows without
    scenarios) take the command's `--min-coverage`, and with neither nothing is demanded.
    """
    own = scenario_file.min_coverage if scenario_file is not None else None
    minimum = own if own is not None else min_coverage
    if minimum is None or percent >= minimum:
        return None
    source = (f"min_coverage {minimum:g}% of {scenario_file.path}"
              if own is not None and scenario_file is not None
              else f"--min-coverage {minimum:g}%")
    return f"{flow_id}: edge coverage {format_percent(percent)} is below {source}"
