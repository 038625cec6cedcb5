"""A condition that fails while a call runs counts as false and the call goes on: `flask call`
and `flask flows test` say so, with the field and the error."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from tests.authoring.conftest import Project

FLOW = """\
flow: sums
personality: p
vars: {business: Acme, count: 1}
start: check
nodes:
  check:
    type: switch
    routes:
      - when: "vars.count + 'x' == 'y'"
        to: bye
    next: hello
  hello:
    type: say
    text: Hello from {{ vars.business }}.
    next: bye
  bye:
    type: hangup
"""

FAILED = ("! condition failed at run time, counted as false: nodes.check.routes[0].when: "
          "TypeError: unsupported operand type(s) for +: 'int' and 'str'")


def _project(project: Project) -> Project:
    project.write("flows/sums.yaml", FLOW)
    return project


def test_flask_call_shows_a_condition_that_failed(project: Project,
                                                  make_app: Callable[..., Flask]) -> None:
    app = make_app(_project(project).root)
    result = app.test_cli_runner().invoke(args=["call", "sums"], input="")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"  {FAILED}" in lines, result.output  # as it happens, before the call ends
    assert lines.index(f"  {FAILED}") < lines.index("☎ the call ended")


def test_flows_test_shows_a_condition_that_failed(project: Project,
                                                  make_app: Callable[..., Flask]) -> None:
    _project(project).scenarios("""\
        flow: sums
        scenarios:
          - name: greets
            steps:
              - expect: {heard: Hello from Acme, hangup: true}
        """, "sums")
    app = make_app(project.root)
    result = app.test_cli_runner().invoke(args=["flows", "test", "sums"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("PASS sums: greets")
    assert lines[start + 1] == f"    {FAILED}"
