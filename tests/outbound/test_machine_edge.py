"""The `machine` edge (`on_machine:`): compiled from `start`, checked, drawn, and taken by the
pure step when Twilio says a machine answered, on the first webhook or later."""

from __future__ import annotations

from typing import Any

from engine.flows.compile import compile_flow
from engine.flows.export import to_dot, to_mermaid
from engine.flows.model import Flow
from engine.runtime.state import (
    Caller,
    CallStarted,
    Emit,
    Hangup,
    Heard,
    Listen,
    MachineAnswered,
    Say,
)
from engine.runtime.step import start_state, step
from tests.flows.conftest import Project, flow_problems, line_of, only
from tests.flows.conftest import project as project

REMINDER: dict[str, Any] = {
    "flow": "r", "personality": "p", "start": "ask", "on_machine": "message",
    "limits": {"max_turns": 5, "then": "bye"},
    "defaults": {"no_input": {"retries": 0, "then": "bye"}},
    "nodes": {
        "ask": {"type": "gather", "prompt": "Press 1 to confirm.", "input": ["dtmf"],
                "routes": [{"when": "digits == '1'", "to": "bye"}], "next": "ask"},
        "message": {"type": "hangup", "text": "Hello {{ vars.name }}, see you Monday."},
        "bye": {"type": "hangup", "text": "Goodbye."},
    },
}


def flow() -> Flow:
    return compile_flow(REMINDER).flow


def started(flow: Flow) -> Any:
    state = start_state(flow, "v1", "CA" + "0" * 32, Caller("+15551230000"), "+15550005000",
                        1000.0)
    return state.__class__(**{**state.__dict__, "vars": {"name": "Ada"}})


def test_the_machine_edge_leaves_the_start_node() -> None:
    [edge] = [edge for edge in flow().edges if edge.kind == "machine"]
    assert (edge.id, edge.source, edge.target) == ("ask/machine", "ask", "message")
    assert flow().on_machine == "message"


def test_a_machine_on_the_first_webhook_hears_the_message_not_the_question() -> None:
    f = flow()
    state, actions = step(f, started(f), CallStarted(1000.0, answered_by="machine_end_beep"))
    said = [a.text for a in actions if isinstance(a, Say)]
    assert said == ["Hello Ada, see you Monday."]
    assert isinstance(actions[-1], Hangup) and state.node == "message"
    moves = [a.data for a in actions if isinstance(a, Emit) and a.name == "call.node"]
    assert moves == [{"node": "message", "source": "ask", "edge": "machine",
                      "edge_id": "ask/machine", "answered_by": "machine_end_beep"}]


def test_a_person_or_an_unsure_detection_gets_the_flow_as_usual() -> None:
    f = flow()
    for answered_by in ("human", "unknown", ""):
        state, actions = step(f, started(f), CallStarted(1000.0, answered_by=answered_by))
        assert state.node == "ask" and isinstance(actions[-1], Listen), answered_by


def test_a_late_detection_takes_the_call_from_wherever_it_is() -> None:
    f = flow()
    state, _ = step(f, started(f), CallStarted(1000.0))
    state, _ = step(f, state, Heard(1001.0, "", 0.0, "9"))  # back to ask, listening
    state, actions = step(f, state, MachineAnswered(1002.0, "machine_end_silence"))
    assert state.node == "message" and state.ended  # the hangup node ends it
    assert [a.text for a in actions if isinstance(a, Say)] == ["Hello Ada, see you Monday."]
    assert isinstance(actions[-1], Hangup)


def test_without_on_machine_a_detection_is_news_only() -> None:
    data = {**REMINDER}
    del data["on_machine"]
    f = compile_flow(data).flow
    state, _ = step(f, started(f), CallStarted(1000.0, answered_by="machine_start"))
    assert state.node == "ask"
    after, actions = step(f, state, MachineAnswered(1001.0, "machine_start"))
    assert after.node == "ask"
    assert [a.name for a in actions if isinstance(a, Emit)] == ["call.machine"]
    assert not [a for a in actions if isinstance(a, Say | Listen | Hangup)]


def test_export_draws_the_machine_edge() -> None:
    assert 'n_ask -->|"machine<br/>answered by a machine"| n_message' in to_mermaid(flow())
    assert '"ask" -> "message" [label="machine\\nanswered by a machine"];' in to_dot(flow())


FLOW = """\
flow: t
personality: p
start: ask
on_machine: {target}
defaults: {{no_input: {{retries: 0, then: bye}}}}
nodes:
  ask:
    type: gather
    prompt: Press 1.
    next: bye
  message:
    type: say
    text: Hello.
    next: bye
  other:
    type: gather
    prompt: Anyone?
    next: bye
  bye:
    type: hangup
"""


def test_checks_name_an_unknown_target_with_its_line(project: Project) -> None:
    text = FLOW.format(target="mesage")
    problem = only(flow_problems(project, text), "unknown node 'mesage'")
    assert problem.line == line_of(text, "on_machine")
    assert "did you mean 'message'" in problem.message


def test_checks_refuse_the_start_node_and_warn_of_a_listening_one(project: Project) -> None:
    assert only(flow_problems(project, FLOW.format(target="ask")),
                "is the start node").severity == "error"
    warned = only(flow_problems(project, FLOW.format(target="other")), "never gives")
    assert warned.severity == "warning"
    clean = [p for p in flow_problems(project, FLOW.format(target="message"))
             if "on_machine" in p.message]
    assert clean == []
