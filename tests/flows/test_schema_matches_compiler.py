"""The schema and the compiler accept the same keys.

A key the schema allows but the compiler ignores is a setting that silently does nothing; a key
the compiler reads but the schema refuses can never be set. Node keys come from the node
dataclasses (`node_keys`), top-level keys from `FLOW_KEYS` / `PERSONALITY_KEYS`, and a recording
mapping checks that those constants are what the compiler really reads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from engine.flows.blend import BLEND_KEY
from engine.flows.compile import (
    EDITOR_KEYS,
    FLOW_KEYS,
    PERSONALITY_KEYS,
    compile_flow,
    compile_personality,
    node_keys,
)
from engine.flows.model import (
    ERROR_KINDS,
    NODE_TYPES,
    ErrorPolicy,
    Example,
    Limits,
    NoInput,
    OpenAIVoice,
    RelayVoice,
    Route,
    Style,
    Voice,
)
from engine.flows.schema import load_schema
from engine.flows.yamlread import read_file

ROOT = Path(__file__).resolve().parents[2]
FLOW_SCHEMA = load_schema("flow")
PERSONALITY_SCHEMA = load_schema("personality")
DEFS = FLOW_SCHEMA["$defs"]


def properties(schema: dict[str, Any]) -> set[str]:
    return set(schema["properties"])


def field_names(cls: type[Any]) -> set[str]:
    return {spec.name for spec in dataclasses.fields(cls)}


class Recording(dict[str, Any]):
    """A mapping that remembers every key looked up in it."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)


def bundled(folder: str, name: str) -> dict[str, Any]:
    document, problems = read_file(ROOT / folder / f"{name}.yaml")
    assert problems == []
    assert document is not None
    data: dict[str, Any] = document.data
    return data


@pytest.mark.parametrize("node_type", sorted(NODE_TYPES))
def test_node_keys_match(node_type: str) -> None:
    schema = DEFS[f"{node_type}_node"]
    assert properties(schema) == node_keys(NODE_TYPES[node_type])
    assert schema["additionalProperties"] is False
    assert schema["properties"]["type"]["const"] == node_type


def test_node_types_match() -> None:
    assert set(DEFS["node"]["properties"]["type"]["enum"]) == set(NODE_TYPES)
    assert {name.removesuffix("_node") for name in DEFS if name.endswith("_node")} == \
        set(NODE_TYPES)
    branches = {branch["if"]["properties"]["type"]["const"]: branch["then"]["$ref"]
                for branch in DEFS["node"]["allOf"]}
    assert branches == {node_type: f"#/$defs/{node_type}_node" for node_type in NODE_TYPES}


def test_flow_keys_match() -> None:
    assert properties(FLOW_SCHEMA) == FLOW_KEYS | EDITOR_KEYS
    assert set(FLOW_SCHEMA["required"]) <= FLOW_KEYS


def test_personality_keys_match() -> None:
    # `blend` is read by engine/flows/blend.py, which compiles the rest as compile_personality.
    assert properties(PERSONALITY_SCHEMA) == PERSONALITY_KEYS | {BLEND_KEY} | EDITOR_KEYS
    assert set(PERSONALITY_SCHEMA["required"]) <= PERSONALITY_KEYS


def test_compile_flow_reads_exactly_the_flow_keys() -> None:
    data = Recording(bundled("flows", "receptionist"))
    compile_flow(data)
    assert data.read == FLOW_KEYS


def test_compile_personality_reads_exactly_the_personality_keys() -> None:
    data = Recording(bundled("personalities", "professional"))
    compile_personality(data)
    assert data.read == PERSONALITY_KEYS


def test_the_compiler_ignores_editor_keys() -> None:
    data = bundled("flows", "receptionist")
    with_schema = {"$schema": "../schemas/flow.schema.json", **data}
    assert compile_flow(with_schema).flow == compile_flow(data).flow


def test_nested_flow_keys_match() -> None:
    assert properties(DEFS["route"]) == field_names(Route)
    assert properties(DEFS["no_input"]) == field_names(NoInput)
    assert properties(DEFS["limits"]) == field_names(Limits)
    assert properties(FLOW_SCHEMA["properties"]["defaults"]) == {"no_input", "on_error",
                                                                 "conversation"}


def test_error_kinds_match() -> None:
    kinds = DEFS["on_error"]["properties"]
    assert set(kinds) == set(ERROR_KINDS)
    # Each kind allows its own subset of the policy; together they are the whole policy.
    allowed = set().union(*(properties(kind) for kind in kinds.values()))
    assert allowed == field_names(ErrorPolicy) - {"kind"}


def test_nested_personality_keys_match() -> None:
    top = PERSONALITY_SCHEMA["properties"]
    assert properties(top["style"]) == field_names(Style)
    # `by_language` is compiled from voices given as maps from language to voice.
    assert properties(top["voice"]) == field_names(Voice) - {"by_language"}
    voices = PERSONALITY_SCHEMA["$defs"]
    assert properties(voices["openai_voice"]) == field_names(OpenAIVoice)
    assert properties(voices["relay_voice"]) == field_names(RelayVoice)
    assert properties(top["examples"]["items"]) == field_names(Example)
