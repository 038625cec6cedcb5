"""`flask flows test`: scenarios through the real webhooks, PASS/FAIL lines, edge coverage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result
from flask import Flask

from tests.authoring.conftest import ROOT, Project, dedent, line_of

EVERY_EDGE = """\
flow: mini
scenarios:
  - name: asks for the desk, nobody answers
    steps:
      - expect: {heard: ["Hello from Acme", "How can I help?"], node: chat}
      - say: The desk please
        expect: {node: desk, transfer: "+15550009999", heard: Putting you through}
      - dial: no-answer
        expect: {node: bye, hangup: true, heard: Goodbye}
  - name: presses 0, the desk answers
    steps:
      - press: "0"
        expect: {transfer: "+15550009999"}
      - dial: answered
        expect: {hangup: true}
  - name: the model answers after a retry, then says goodbye
    at: "2026-03-02T10:00:00"
    from: "+15551112222"
    steps:
      - say: Are you open?
        model: [{error: network}, {reply: "Yes, until five."}]
        expect: {heard: until five, hangup: false,
                 vars: {turn: 1, caller.number: "+15551112222", now.hour: 10}}
      - say: Bye
        model: {exit: bye}
        expect: {node: bye, hangup: true}
  - name: errors past the strategy apologise
    steps:
      - say: One
        model: [{error: network}, {error: network}]
        expect: {node: sorry, heard: Sorry about that, hangup: true}
  - name: rate limited
    steps:
      - say: Two
        model: {error: rate_limit, retry_after: 3}
        expect: {node: sorry}
  - name: an unusable answer
    steps:
      - say: Three
        model: {error: ai_failure}
        expect: {node: sorry, events: [call.error]}
  - name: speech fails, Twilio's voice speaks
    steps:
      - say: Four
        model: [{error: tts_failure}, {reply: Still here.}]
        expect: {heard: Still here, node: chat}
  - name: silence
    steps:
      - silence: true
        expect: {heard: "Still there?"}
      - silence: true
        expect: {node: bye, hangup: true}
  - name: too many turns
    vars: {business: Other Co}
    steps:
      - expect: {heard: Hello from Other Co}
      - say: a
        model: {reply: one}
      - say: b
        model: {reply: two}
      - say: c
        model: {reply: three}
      - say: d
        expect: {node: bye, hangup: true}
"""


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["flows", "test", *args])


def test_scenarios_that_take_every_edge_pass_at_full_coverage(
        project: Project, make_app: Callable[..., Flask]) -> None:
    project.scenarios(EVERY_EDGE)
    result = run(make_app(project.root), "--min-coverage", "100")
    assert result.exit_code == 0, result.output
    assert "PASS mini: asks for the desk, nobody answers" in result.output
    assert "PASS mini: too many turns" in result.output
    assert "mini: 13/13 edges (100%)" in result.output
    assert "✗ never" not in result.output
    assert "9 passed, 0 failed" in result.output


def test_a_wrong_expectation_names_the_scenario_the_step_and_what_differed(
        project: Project, make_app: Callable[..., Flask]) -> None:
    text = dedent("""\
        flow: mini
        scenarios:
          - name: expects the wrong greeting
            steps:
              - press: "0"
                expect: {transfer: "+15550009999"}
              - dial: busy
                expect: {heard: "See you soon", node: sorry, hangup: true}
              - say: never reached
        """)
    project.scenarios(text)
    result = run(make_app(project.root))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    failing = lines.index("FAIL mini: expects the wrong greeting")
    detail = lines[failing + 1].strip()
    assert detail.startswith(f"flows/mini.test.yaml:{line_of(text, 'dial: busy')}: "
                             f"step 2 (dial busy): ")
    assert "expected to hear 'See you soon'; heard 'Goodbye.'" in detail
    assert "expected to reach node 'sorry'; reached bye" in detail
    assert "0 passed, 1 failed" in result.output


def test_a_model_request_nothing_scripted_for_fails_clearly(
        project: Project, make_app: Callable[..., Flask]) -> None:
    text = dedent("""\
        flow: mini
        scenarios:
          - name: forgets the model
            steps:
              - say: What time is it?
                expect: {node: chat}
          - name: scripts too much
            steps:
              - say: The desk please
                model: {reply: unused}
        """)
    project.scenarios(text)
    result = run(make_app(project.root))
    assert result.exit_code == 1
    assert ("step 1 (say 'What time is it?'): the flow asked the model on node 'chat' (the "
            "caller said 'What time is it?') but no model answer was scripted") in result.output
    assert "1 scripted model answer(s) were not used: reply 'unused'" in result.output
    assert "Unscripted" not in result.output  # the engine's log of it is not repeated


def test_coverage_below_the_minimum_fails(project: Project,
                                          make_app: Callable[..., Flask]) -> None:
    project.scenarios("""\
        flow: mini
        scenarios:
          - name: just the desk
            steps:
              - press: "0"
              - dial: answered
        """)
    app = make_app(project.root)
    result = run(app, "--min-coverage", "90")
    assert result.exit_code == 1
    assert "PASS mini: just the desk" in result.output
    assert "mini: 2/13 edges (15.3%)" in result.output
    assert "  ✗ never   chat -error:ai_failure-> sorry" in result.output
    assert "mini: edge coverage 15.3% is below --min-coverage 90%" in result.output
    assert run(app, "--min-coverage", "15").exit_code == 0


def test_a_scenario_file_sets_the_coverage_its_flow_must_reach(
        project: Project, make_app: Callable[..., Flask]) -> None:
    just_the_desk = """\
        flow: mini
        min_coverage: {minimum}
        scenarios:
          - name: just the desk
            steps:
              - press: "0"
              - dial: answered
        """
    project.scenarios(just_the_desk.format(minimum=15))
    app = make_app(project.root)
    assert run(app, "--min-coverage", "100").exit_code == 0  # the file's own 15% wins
    project.scenarios(just_the_desk.format(minimum=80))
    result = run(make_app(project.root), "--min-coverage", "10")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == \
        "mini: edge coverage 15.3% is below min_coverage 80% of flows/mini.test.yaml"


def test_the_coverage_failure_is_the_last_line(project: Project,
                                               make_app: Callable[..., Flask]) -> None:
    project.scenarios("flow: mini\nscenarios:\n  - name: x\n    steps:\n      - press: '0'\n")
    result = run(make_app(project.root), "--min-coverage", "100")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[-2:] == ["1 passed, 0 failed",
                          "mini: edge coverage 15.3% is below --min-coverage 100%"], lines[-4:]


def test_a_min_coverage_outside_0_to_100_is_a_validation_error(
        project: Project, make_app: Callable[..., Flask]) -> None:
    project.scenarios("flow: mini\nmin_coverage: 120\nscenarios:\n  - name: x\n"
                      "    steps:\n      - press: '0'\n")
    result = run(make_app(project.root))
    assert result.exit_code == 1
    assert "flows/mini.test.yaml:2:" in result.output and "PASS" not in result.output


def test_a_flow_without_scenarios_counts_as_uncovered(
        project: Project, make_app: Callable[..., Flask]) -> None:
    project.write("flows/other.yaml", (project.root / "flows/mini.yaml").read_text()
                  .replace("flow: mini", "flow: other").replace('"+15550007000"',
                                                                 '"+15550007001"'))
    project.scenarios("flow: mini\nscenarios:\n  - name: x\n    steps:\n      - press: '0'\n")
    app = make_app(project.root)
    result = run(app, "--min-coverage", "1")
    assert result.exit_code == 1
    assert "other: no scenarios (write flows/other.test.yaml); 0/13 edges" in result.output
    assert run(app, "mini").exit_code == 0  # only the flows asked for
    unknown = run(app, "minnie")
    assert unknown.exit_code == 1 and "unknown flow 'minnie' (did you mean 'mini'?)" in \
        unknown.output


def test_invalid_scenario_files_are_reported_not_run(
        project: Project, make_app: Callable[..., Flask]) -> None:
    project.scenarios("flow: mini\nscenarios:\n  - name: x\n    steps:\n"
                      "      - expect: {node: nope}\n")
    result = run(make_app(project.root))
    assert result.exit_code == 1
    assert "flows/mini.test.yaml:5:" in result.output and "PASS" not in result.output


def test_the_bundled_flows_are_fully_covered(make_app: Callable[..., Flask]) -> None:
    result = run(make_app(ROOT), "--min-coverage", "100")
    assert result.exit_code == 0, result.output
    for flow_id in ("receptionist", "after_hours", "support_triage", "concierge",
                    "family_clinic", "reminder"):
        assert f"{flow_id}: " in result.output and "(100%)" in result.output
    assert "FAIL" not in result.output


def test_scenario_stores_stay_out_of_the_project(project: Project,
                                                 make_app: Callable[..., Flask]) -> None:
    project.scenarios(EVERY_EDGE)
    before = sorted(path.relative_to(project.root) for path in project.root.rglob("*"))
    assert run(make_app(project.root)).exit_code == 0
    after = sorted(path.relative_to(project.root) for path in Path(project.root).rglob("*"))
    assert after == before
