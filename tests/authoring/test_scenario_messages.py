"""Scenario file mistakes a newcomer makes, each with what to write instead: an unquoted time
(YAML reads it as a timestamp) and an unquoted key press (a number)."""

from __future__ import annotations

from engine.flows.scenarios import load_scenarios
from tests.authoring.conftest import Project
from tests.authoring.test_scenario_files import flows_of

TEXT = """\
flow: mini
scenarios:
  - name: unquoted values
    at: 2026-03-02T10:00:00
    steps:
      - press: 1
"""


def test_unquoted_times_and_keys_say_to_quote_them(project: Project) -> None:
    path = project.scenarios(TEXT)
    assert [str(p) for p in load_scenarios([path], flows_of(project), project.root).problems] == [
        "flows/mini.test.yaml:4:9: scenarios[0].at: expected a string, got a date and time "
        "2026-03-02T10:00:00; quote it to keep it as written: at: \"2026-03-02T10:00:00\"",
        "flows/mini.test.yaml:6:16: scenarios[0].steps[0].press: expected a string, got a "
        "number 1; quote it to make it text: press: \"1\""]
