"""Helpers to write a small project (flows/, personalities/) into tmp_path and load it.

Tests give YAML as text, so every line number they assert is the line of a string they can see;
`line_of(text, needle)` finds it rather than counting by hand.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.flows.loader import LoadResult, load_project
from engine.flows.problems import Problem

PERSONALITY = """\
personality: {id}
name: {id}
system_prompt: You answer the phone for {{{{ vars.business }}}}, briefly and kindly.
voice: {{twilio: Polly.Joanna-Neural}}
examples:
  - input: Hi
    response: Hello, how can I help?
"""
"""A minimal valid personality; `{id}` is filled in. Its prompt reads `vars.business`."""

SMALL_FLOW = """\
flow: {id}
personality: p
vars: {{business: Acme}}
start: greet
nodes:
  greet:
    type: say
    text: Hello.
    next: bye
  bye:
    type: hangup
    text: Goodbye.
"""
"""A minimal valid flow; `{id}` is filled in."""


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the `occurrence`-th line of `text` that contains `needle`."""
    found = [number for number, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(found) >= occurrence, f"{needle!r} not found {occurrence} times in:\n{text}"
    return found[occurrence - 1]


@dataclass
class Project:
    """A project directory under tmp_path, written file by file."""

    root: Path

    def flow(self, flow_id: str, text: str, *, file_name: str | None = None) -> Path:
        return self._write("flows", file_name or f"{flow_id}.yaml", dedent(text))

    def personality(self, personality_id: str, text: str | None = None, *,
                    file_name: str | None = None) -> Path:
        body = dedent(text) if text is not None else PERSONALITY.format(id=personality_id)
        return self._write("personalities", file_name or f"{personality_id}.yaml", body)

    def load(self) -> LoadResult:
        return load_project(self.root)

    def problems(self) -> list[Problem]:
        return self.load().problems

    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems() if problem.severity == "error"]

    def _write(self, folder: str, name: str, text: str) -> Path:
        path = self.root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """An empty project with one personality, `p`, for flows to speak as."""
    (tmp_path / "flows").mkdir()
    created = Project(tmp_path)
    created.personality("p")
    return created


def flow_problems(project: Project, text: str, flow_id: str = "t") -> list[Problem]:
    """Write one flow (as flows/<flow_id>.yaml) into `project` and load the whole project."""
    project.flow(flow_id, text)
    return project.problems()


def only(problems: list[Problem], needle: str) -> Problem:
    """The one problem whose message contains `needle`."""
    matching = [problem for problem in problems if needle in problem.message]
    assert len(matching) == 1, (f"expected one problem containing {needle!r}, got:\n"
                                + "\n".join(map(str, problems)))
    return matching[0]
