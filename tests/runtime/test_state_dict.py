"""`state_to_dict` / `state_from_dict`: the hand-written serialisation is `dataclasses.asdict`'s
output, exactly, and what it writes reads back as the same state."""

from __future__ import annotations

import dataclasses
import json

from engine.runtime.state import Caller, CallState, Message, state_from_dict, state_to_dict


def rich_state() -> CallState:
    """Every field away from its default, nested values included."""
    return CallState(
        call_sid="CA" + "a" * 32, flow_id="receptionist", flow_version="v1-abc", node="ask",
        caller=Caller(number="+15550002222", city="Springfield", state="IL", country="US",
                      zip="62701", name="Ana Émile"),
        called="+15550001000", started_at=1_700_000_000.25, personality="friendly", step=7,
        turn=4, silences=2, status="completed", ended=True, path=("greet", "ask", "ask"),
        history=(Message("agent", "Hello, how can I help?", "greet"),
                 Message("caller", "I'd like a cleaning — next week?", "ask")),
        pending="next tuesday", pending_digits="12#", errors={"network": 1, "rate_limit": 2},
        hold_until=1_700_000_010.5, offline=True, relay_lost="ask", stream="stream:abc",
        stream_offset=42,
        stream_personality="calm", stream_sentences=3, sentiments=(0.49, -0.25, -0.868),
        language="es-US", detected_language="en-US",
        vars={"first_slot": "9am", "slots": ["9am", "2pm"]}, request="CA1:3:check:0")


def test_every_field_is_set_away_from_its_default() -> None:
    state, default = rich_state(), CallState(
        call_sid="", flow_id="", flow_version="", node="", caller=Caller(), called="",
        started_at=0.0, personality="")
    same = [spec.name for spec in dataclasses.fields(CallState)
            if getattr(state, spec.name) == getattr(default, spec.name)]
    assert same == []  # else the equality below would not test that field


def test_state_to_dict_is_exactly_asdict() -> None:
    for state in (rich_state(), CallState(
            call_sid="CA1", flow_id="f", flow_version="v", node="n", caller=Caller(),
            called="", started_at=0.0, personality="p")):
        mine, theirs = state_to_dict(state), dataclasses.asdict(state)
        assert mine == theirs
        assert list(mine) == list(theirs)  # the same key order, so the same JSON text
        assert list(mine["caller"]) == list(theirs["caller"])
        assert type(mine["path"]) is type(theirs["path"])
        assert type(mine["history"]) is type(theirs["history"])
        assert json.dumps(mine) == json.dumps(theirs)


def test_state_to_dict_copies_the_mutable_parts() -> None:
    state = rich_state()
    out = state_to_dict(state)
    out["errors"]["network"] = 99
    out["caller"]["name"] = "changed"
    assert state.errors["network"] == 1
    assert state.caller.name == "Ana Émile"


def test_round_trip_through_json() -> None:
    state = rich_state()
    assert state_from_dict(state_to_dict(state)) == state
    assert state_from_dict(json.loads(json.dumps(state_to_dict(state)))) == state


def test_state_from_dict_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    data = state_to_dict(rich_state())
    data["added_by_a_newer_version"] = {"x": 1}
    for key in ("turn", "errors", "history", "path", "stream"):
        del data[key]
    read = state_from_dict(data)
    assert read == dataclasses.replace(rich_state(), turn=0, errors={}, history=(), path=(),
                                       stream=None)
    assert read.path == () and isinstance(read.errors, dict)
