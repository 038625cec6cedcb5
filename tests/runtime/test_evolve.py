"""`evolve` and `entered`, the step's cheap `dataclasses.replace` and `CallState.at`: the same
values, a new frozen state each time, the original untouched."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from engine.runtime.state import Caller, CallState, Message
from engine.runtime.step import StateChanges, entered, evolve

STATE = CallState(call_sid="CA" + "0" * 32, flow_id="f", flow_version="v1", node="ask",
                  caller=Caller(number="+15551230000"), called="+15550001000",
                  started_at=1_700_000_000.5, personality="p", step=3, turn=2, silences=1,
                  path=("greet", "ask"), history=(Message("agent", "hi", "greet"),),
                  pending="hello", errors={"network": 1}, stream="s1", stream_offset=4)

CHANGES: list[StateChanges] = [
    {},
    {"step": 4},
    {"turn": 3, "silences": 0},
    {"history": (*STATE.history, Message("caller", "yes", "ask"))},
    {"pending": None, "pending_digits": "", "errors": {}, "hold_until": 0.0, "offline": True,
     "stream": None, "stream_offset": 0, "stream_personality": None, "stream_sentences": 0},
    {"status": "completed", "ended": True},
    {"node": "other", "path": ("greet", "ask", "other"), "caller": Caller(number="+1")},
]


def test_the_changes_are_the_states_fields() -> None:
    assert typing.get_type_hints(StateChanges) == {
        spec.name: hint for spec, hint in zip(
            dataclasses.fields(CallState), typing.get_type_hints(CallState).values(),
            strict=True)}


@pytest.mark.parametrize("changes", CHANGES)
def test_evolve_is_dataclasses_replace(changes: StateChanges) -> None:
    before = dataclasses.replace(STATE)
    made = evolve(STATE, **changes)
    assert made == dataclasses.replace(STATE, **changes)
    assert type(made) is CallState and made is not STATE
    assert before == STATE  # untouched
    assert vars(made).keys() == vars(STATE).keys()
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.step = 9  # type: ignore[misc]


def test_an_unknown_field_is_refused_as_replace_refuses_it() -> None:
    with pytest.raises(TypeError):
        evolve(STATE, nope=1)  # type: ignore[call-arg]


@pytest.mark.parametrize("node", ["ask", "next", ""])
def test_entered_is_at(node: str) -> None:
    assert entered(STATE, node) == STATE.at(node)
    assert entered(STATE, node).errors == {} and STATE.errors == {"network": 1}
