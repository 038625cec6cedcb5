"""docs/reference.md is what `python -m engine.flows.reference` writes from the schemas today,
and names every node type and every key of each."""

from __future__ import annotations

from engine.flows.reference import REFERENCE, main, render_reference
from engine.flows.schema import load_schema


def test_the_reference_is_up_to_date() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(), (
        "docs/reference.md is out of date: run `python -m engine.flows.reference`")
    assert main(["--check"]) == 0


def test_every_node_type_and_key_is_in_the_reference() -> None:
    text = render_reference()
    flow = load_schema("flow")
    for node_type in flow["$defs"]["node"]["properties"]["type"]["enum"]:
        body = flow["$defs"][f"{node_type}_node"]
        assert f"### {body['title']}\n" in text
        for key in body["properties"]:
            assert f"| `{key}`" in text, (node_type, key)
    for key in flow["properties"]:
        assert key == "$schema" or f"| `{key}`" in text, key
