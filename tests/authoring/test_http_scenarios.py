"""Scenario files script the API: `http:` answers (status and JSON, or a failure) taken by the
flow's requests in order, the edges they lead along counted, and a request with no answer
scripted (or an answer never used) named in the failure."""

from __future__ import annotations

from pathlib import Path

from engine.authoring.runner import RunReport, run_scenarios
from engine.flows.loader import load_project
from engine.flows.scenarios import load_scenarios
from engine.web.app import create_app
from tests.authoring.conftest import PERSONALITY, dedent

FLOW = dedent("""
    flow: slots
    personality: p
    vars: {business: Acme, day: monday}
    start: check
    nodes:
      check:
        type: http
        request:
          url: "https://api.example.com/slots?day={{ vars.day }}"
          headers: {Authorization: "Bearer ${SLOTS_TOKEN}"}
        save: {first_slot: "$.slots[0].label"}
        next: offer
        on_error: {http: {retry: 1, then: sorry}}
      offer: {type: say, text: "The first slot is {{ vars.first_slot }}.", next: bye}
      sorry: {type: say, text: "I could not check.", next: bye}
      bye: {type: hangup, text: Goodbye.}
""")

SCENARIOS = dedent("""
    flow: slots
    scenarios:
      - name: a slot is offered
        steps:
          - http: {json: {slots: [{label: 9am}]}}
            expect: {heard: "The first slot is 9am.", vars: {vars.first_slot: 9am}}
      - name: the API fails, then answers
        steps:
          - http: [{status: 503}, {json: {slots: [{label: 2pm}]}}]
            expect: {heard: "The first slot is 2pm.", events: [call.http, call.error]}
      - name: the API keeps timing out
        steps:
          - http: [{error: timeout}, {error: bad_json}]
            expect: {heard: "I could not check.", hangup: true}
""")


def run(tmp_path: Path, scenarios: str) -> RunReport:
    (tmp_path / "flows").mkdir()
    (tmp_path / "personalities").mkdir()
    (tmp_path / "flows" / "slots.yaml").write_text(FLOW, encoding="utf-8")
    (tmp_path / "personalities" / "p.yaml").write_text(PERSONALITY, encoding="utf-8")
    path = tmp_path / "flows" / "slots.test.yaml"
    path.write_text(scenarios, encoding="utf-8")
    project = load_project(tmp_path)
    assert project.registry is not None, project.problems
    loaded = load_scenarios([path], project.registry.flows, tmp_path)
    assert loaded.problems == []
    return run_scenarios(loaded.files, tmp_path, project.registry.flows, create_app)


def test_scripted_answers_take_every_edge_of_the_http_node(tmp_path: Path) -> None:
    report = run(tmp_path, SCENARIOS)
    assert [result.failure for result in report.results] == [None, None, None]
    coverage = report.coverage["slots"]
    assert coverage.never == [] and coverage.percent == 100.0


def test_a_request_with_no_answer_scripted_is_named(tmp_path: Path) -> None:
    report = run(tmp_path, SCENARIOS.split("  - name: the API fails")[0].replace(
        "      - http: {json: {slots: [{label: 9am}]}}\n        expect", "      - expect"))
    [result] = report.results
    assert result.failure is not None
    assert ("the flow sent GET https://api.example.com/slots?day=monday but no http answer was "
            "scripted for this step") in result.failure


def test_an_answer_never_used_is_named(tmp_path: Path) -> None:
    report = run(tmp_path, SCENARIOS.split("  - name: the API fails")[0].replace(
        "{json: {slots: [{label: 9am}]}}", "[{json: {slots: [{label: 9am}]}}, {status: 500}]"))
    [result] = report.results
    assert result.failure is not None
    assert "1 scripted http answer(s) were not used: status 500" in result.failure


TOOL_FLOW = dedent("""
    flow: slots
    personality: p
    vars: {business: Acme}
    defaults:
      no_input: {retries: 1, then: bye}
      on_error:
        network: {then: bye}
        rate_limit: {then: bye}
        ai_failure: {then: bye}
        tts_failure: {voice: twilio}
    start: assist
    nodes:
      assist:
        type: ai
        opening: How can I help?
        exits: {bye: The caller is done.}
        tools:
          find_slots:
            description: Free slots on a day.
            parameters: {day: {type: string, enum: [monday, tuesday]}}
            request: {url: "https://api.example.com/slots?day={{ args.day }}"}
      bye: {type: hangup, text: Goodbye.}
""")

TOOL_SCENARIOS = dedent("""
    flow: slots
    scenarios:
      - name: the model looks a day up
        steps:
          - say: anything on monday
            model: [{tool: find_slots, args: {day: monday}}, {reply: Monday at 9am is free.}]
            http: {json: {slots: [9am]}}
            expect: {heard: Monday at 9am is free., events: [call.http]}
      - name: a call with wrong arguments is not sent
        steps:
          - say: friday
            model: [{tool: find_slots, args: {day: friday}}, {reply: "Monday or Tuesday?"}]
            expect: {heard: "Monday or Tuesday?", events: [call.error]}
      - name: a model looping on a tool is cut off
        steps:
          - say: monday
            model:
              - {tool: find_slots, args: {day: monday}}
              - {tool: find_slots, args: {day: monday}}
              - {tool: find_slots, args: {day: monday}}
              - {tool: find_slots, args: {day: monday}}
            http: [{json: []}, {json: []}, {json: []}]
            expect: {heard: Goodbye., hangup: true}
""")


def run_tools(tmp_path: Path, scenarios: str) -> RunReport:
    (tmp_path / "flows").mkdir()
    (tmp_path / "personalities").mkdir()
    (tmp_path / "flows" / "slots.yaml").write_text(TOOL_FLOW, encoding="utf-8")
    (tmp_path / "personalities" / "p.yaml").write_text(PERSONALITY, encoding="utf-8")
    path = tmp_path / "flows" / "slots.test.yaml"
    path.write_text(scenarios, encoding="utf-8")
    project = load_project(tmp_path)
    assert project.registry is not None, project.problems
    loaded = load_scenarios([path], project.registry.flows, tmp_path)
    assert loaded.problems == []
    return run_scenarios(loaded.files, tmp_path, project.registry.flows, create_app)


def test_tool_calls_are_scripted_as_model_entries(tmp_path: Path) -> None:
    report = run_tools(tmp_path, TOOL_SCENARIOS)
    assert [result.failure for result in report.results] == [None, None, None]


def test_a_tool_the_flow_does_not_have_is_named(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "personalities").mkdir()
    (tmp_path / "flows" / "slots.yaml").write_text(TOOL_FLOW, encoding="utf-8")
    (tmp_path / "personalities" / "p.yaml").write_text(PERSONALITY, encoding="utf-8")
    path = tmp_path / "flows" / "slots.test.yaml"
    path.write_text(TOOL_SCENARIOS.replace("{tool: find_slots, args: {day: friday}}",
                                           "{tool: find_slot, args: {day: friday}}"),
                    encoding="utf-8")
    project = load_project(tmp_path)
    assert project.registry is not None
    [problem] = load_scenarios([path], project.registry.flows, tmp_path).problems
    assert "no ai node of flow 'slots' has a tool 'find_slot' (did you mean 'find_slots'?)" \
        in problem.message
