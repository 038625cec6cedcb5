"""A scenario step that says what looks like key presses (`say: "#2"`) is speech, not keys: a
warning at its line suggests `press:`; the step still runs as speech."""

from __future__ import annotations

from engine.flows.scenarios import load_scenarios
from tests.authoring.conftest import Project, line_of
from tests.authoring.test_scenario_files import flows_of

TEXT = """\
flow: mini
scenarios:
  - name: keys said instead of pressed
    steps:
      - say: "#2"
      - say: "1"
      - say: I'd like option 2
      - press: "2"
"""


def test_spoken_keys_warn_and_suggest_press(project: Project) -> None:
    path = project.scenarios(TEXT)
    loaded = load_scenarios([path], flows_of(project), project.root)
    hash_line, one_line = line_of(TEXT, '"#2"'), line_of(TEXT, 'say: "1"')
    assert [str(problem) for problem in loaded.problems] == [
        f"flows/mini.test.yaml:{hash_line}:14: warning: "
        "scenarios[0].steps[0].say: '#2' is said, not pressed: the caller speaks these "
        "characters; to press keys write press: \"2\"",
        f"flows/mini.test.yaml:{one_line}:14: warning: "
        "scenarios[0].steps[1].say: '1' is said, not pressed: the caller speaks these "
        "characters; to press keys write press: \"1\""]
    assert len(loaded.files) == 1  # a warning: the scenarios still run
