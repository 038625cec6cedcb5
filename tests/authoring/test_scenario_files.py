"""Scenario files: the schema, the checks against the flow, and `flask flows validate`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask

from engine.flows.loader import load_project
from engine.flows.model import Flow
from engine.flows.problems import Problem
from engine.flows.scenarios import load_scenarios
from tests.authoring.conftest import Project, dedent, line_of


def flows_of(project: Project) -> dict[str, Flow]:
    registry = load_project(project.root).registry
    assert registry is not None
    return dict(registry.flows)


def problems_of(project: Project, text: str, flow_id: str = "mini") -> list[Problem]:
    path = project.scenarios(text, flow_id)
    return load_scenarios([path], flows_of(project), project.root).problems


def only(problems: list[Problem], needle: str) -> Problem:
    found = [problem for problem in problems if needle in problem.message]
    assert len(found) == 1, "\n".join(map(str, problems))
    return found[0]


GOOD = """\
flow: mini
scenarios:
  - name: asks for the desk
    at: "2026-03-02T10:00:00"
    from: "+15551112222"
    steps:
      - expect: {heard: Hello from Acme, node: chat}
      - say: Put me through to the desk
        expect: {transfer: "+15550009999"}
      - dial: busy
        expect: {hangup: true}
  - name: model says goodbye
    vars: {business: Other}
    steps:
      - say: Thanks, bye
        model: [{error: network}, {reply: Bye now, exit: bye}]
        expect: {hangup: true, vars: {turn: 1, caller.number: "+15551230000"}}
"""


def test_a_good_file_compiles_to_steps(project: Project) -> None:
    path = project.scenarios(GOOD)
    loaded = load_scenarios([path], flows_of(project), project.root)
    assert loaded.problems == []
    (scenario_file,) = loaded.files
    assert scenario_file.path == "flows/mini.test.yaml" and scenario_file.flow_id == "mini"
    first, second = scenario_file.scenarios
    assert first.rings_with_first_step and first.caller == "+15551112222"
    assert [step.action for step in first.steps] == [None, "say", "dial"]
    assert first.steps[1].describe() == "step 2 (say 'Put me through to the desk')"
    assert first.steps[1].line == line_of(GOOD, "say: Put me through")
    assert not second.rings_with_first_step and dict(second.vars) == {"business": "Other"}
    assert [entry.describe() for entry in second.steps[0].model] == [
        "error network", "reply 'Bye now' and exit bye"]


def test_names_the_flow_does_not_have_are_errors_at_their_line(project: Project) -> None:
    text = dedent("""\
        flow: mini
        scenarios:
          - name: typos
            vars: {busines: X}
            steps:
              - say: hello
                model: {exit: byee}
                expect: {node: chatt, vars: {vars.desk: "+1", turns: 1}}
              - say: again
                model: {reply: ok, exit: sorry}
        """)
    problems = problems_of(project, text)
    node = only(problems, "has no node 'chatt'")
    assert (node.path, node.line) == ("flows/mini.test.yaml", line_of(text, "node: chatt"))
    assert "did you mean 'chat'?" in node.message
    exit_ = only(problems, "has no node 'byee'")
    assert exit_.line == line_of(text, "exit: byee") and "did you mean 'bye'?" in exit_.message
    not_an_exit = only(problems, "no ai node of flow 'mini' has an exit to 'sorry'")
    assert not_an_exit.line == line_of(text, "exit: sorry")
    assert only(problems, "has no var 'busines'").line == line_of(text, "busines")
    assert "unknown name 'turns'" in only(problems, "turns").message
    assert all(problem.severity == "error" for problem in problems)


def test_an_unknown_flow_is_an_error_with_a_suggestion(project: Project) -> None:
    text = "flow: minny\nscenarios:\n  - name: x\n    steps:\n      - say: hi\n"
    problems = problems_of(project, text, flow_id="minny")
    problem = only(problems, "unknown flow 'minny'")
    assert (problem.line, problem.column) == (1, 7)
    assert "did you mean 'mini'?" in problem.message


def test_the_file_name_must_match_the_flow(project: Project) -> None:
    text = "flow: mini\nscenarios:\n  - name: x\n    steps:\n      - say: hi\n"
    problems = problems_of(project, text, flow_id="other")
    assert "differs from the file name 'other.test.yaml'" in only(problems, "differs").message


def test_schema_and_shape_problems_have_lines(project: Project) -> None:
    text = dedent("""\
        flow: mini
        scenarios:
          - name: same
            steps:
              - say: hi
                press: "1"
              - dial: maybe
              - expect: {heard_matches: "(unclosed", nodes: chat}
          - name: same
            steps:
              - model: {retry_after: 2}
        """)
    problems = problems_of(project, text)
    schema = only(problems, "'maybe' is not allowed")
    assert schema.line == line_of(text, "dial: maybe") and "no-answer" in schema.message
    assert only(problems, "unknown key 'nodes'").line == line_of(text, "nodes: chat")
    # The schema errors come first; the rest is checked once the shape is right.
    text = text.replace("dial: maybe", "dial: busy").replace(", nodes: chat", "")
    problems = problems_of(project, text)
    assert only(problems, "a step does one thing").line == line_of(text, 'press: "1"')
    assert only(problems, "not a valid regular expression").line == line_of(text, "unclosed")
    assert only(problems, "duplicate scenario name 'same'").line == 9
    assert only(problems, "reply, exit, tool or error").line == line_of(text, "retry_after")
    assert only(problems, "only an `error: rate_limit` entry waits")


def test_validate_reports_scenario_problems_as_path_line_col(
        project: Project, make_app: Callable[..., Flask]) -> None:
    text = "flow: mini\nscenarios:\n  - name: x\n    steps:\n      - expect: {node: nowhere}\n"
    project.scenarios(text)
    app = make_app(project.root)
    result = app.test_cli_runner().invoke(args=["flows", "validate"])
    assert result.exit_code == 1
    assert "flows/mini.test.yaml:5:24: scenarios[0].steps[0].expect.node: flow 'mini' has no " \
           "node 'nowhere'" in result.output
    assert "3 files checked: 1 errors" in result.output


def test_validate_takes_a_scenario_file_on_its_own(
        project: Project, make_app: Callable[..., Flask]) -> None:
    path = project.scenarios(GOOD)
    app = make_app(project.root)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["flows", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 files checked: all good" in result.output
    path.write_text(GOOD.replace("node: chat", "node: chats"), encoding="utf-8")
    result = runner.invoke(args=["flows", "validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:{line_of(GOOD, 'node: chat')}:" in result.output


def test_the_bundled_scenario_files_validate(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    registry = load_project(root).registry
    assert registry is not None
    paths = sorted((root / "flows").glob("*.test.yaml"))
    assert {path.name for path in paths} >= {f"{flow_id}.test.yaml" for flow_id in registry.flows}
    assert load_scenarios(paths, registry.flows, root).problems == []
