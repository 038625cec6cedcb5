"""Writing a changed flow back into its text: comments, key order, layout and untouched entries
stay as written; what changed reads back as the data asked for."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from engine.editor import RoundTripError, apply_data, template_text
from engine.flows.yamlread import read_text

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = sorted(path for path in (ROOT / "flows").glob("*.yaml")
                 if not path.name.endswith(".test.yaml"))


def _data(text: str) -> Any:
    document, problems = read_text("flow.yaml", text)
    assert document is not None, problems
    return document.data


def _changed_lines(before: str, after: str) -> list[str]:
    return [line for line in after.splitlines() if line not in before.splitlines()]


@pytest.mark.parametrize("path", BUNDLED, ids=lambda path: path.name)
def test_the_same_data_gives_the_same_text_byte_for_byte(path: Path) -> None:
    text = path.read_text()
    assert apply_data(text, copy.deepcopy(_data(text))) == text


@pytest.mark.parametrize("path", BUNDLED, ids=lambda path: path.name)
def test_one_changed_value_changes_one_line_and_reads_back(path: Path) -> None:
    text = path.read_text()
    data = _data(text)
    lines = text.splitlines()
    # The first text a node writes on one line of its own: `    text: ...`, or one language's
    # `      en-US: ...` of a text given in several.
    candidates = []
    for node in data["nodes"].values():
        for field in ("text", "prompt", "announce", "instructions"):
            value = node.get(field)
            if isinstance(value, str) and f"    {field}: {value}" in lines:
                candidates.append((node, field, None, f"    {field}: A changed line."))
            elif isinstance(value, dict):
                for language, said in value.items():
                    if f"      {language}: {said}" in lines:
                        candidates.append((node, field, language,
                                           f"      {language}: A changed line."))
    assert candidates, "no one-line text to change"
    node, field, language, expected = candidates[0]
    if language is None:
        node[field] = "A changed line."
    else:
        node[field][language] = "A changed line."
    changed = apply_data(text, data)
    assert _changed_lines(text, changed) == [expected]
    assert len(changed.splitlines()) == len(text.splitlines())
    assert _data(changed) == data


def test_a_new_node_goes_last_set_apart_like_the_others_and_a_removed_one_goes() -> None:
    text = template_text("menu", "shop")
    data = _data(text)
    del data["nodes"]["support"]
    data["nodes"]["menu"]["next"] = "sales"
    data["nodes"]["hours"] = {"type": "say", "text": "{{ vars.business }} opens at nine.",
                              "next": "goodbye"}
    changed = apply_data(text, data)
    assert _data(changed) == data
    assert "support:" not in changed
    assert changed.endswith("    text: Thanks for calling. Goodbye!\n\n  hours:\n    type: say\n"
                            "    text: '{{ vars.business }} opens at nine.'\n"
                            "    next: goodbye\n")
    assert "    next: sales                # anything else\n" in changed  # its comment kept


def test_a_new_key_keeps_the_blank_line_after_its_node() -> None:
    text = template_text("greeting", "shop")
    data = _data(text)
    data["nodes"]["greet"]["pause"] = 1
    changed = apply_data(text, data)
    assert "    next: goodbye\n    pause: 1\n\n  goodbye:\n" in changed


def test_lists_of_words_are_written_in_flow_style_and_types_are_kept() -> None:
    text = template_text("menu", "shop")
    data = _data(text)
    data["nodes"]["menu"]["hints"] = ["sales", "support"]
    data["defaults"]["no_input"]["retries"] = 2
    changed = apply_data(text, data)
    assert "    hints: [sales, support]\n" in changed
    assert _data(changed)["defaults"]["no_input"]["retries"] == 2
    # A boolean is not an integer: true stays true, 1 becomes 1.
    flag = "flow: x\nvars: {on: true}\n"
    assert _data(apply_data(flag, {"flow": "x", "vars": {"on": 1}}))["vars"]["on"] == 1
    assert apply_data(flag, {"flow": "x", "vars": {"on": True}}) == flag


def test_text_that_is_not_a_mapping_is_refused() -> None:
    for text in ("- a\n- b\n", "flow: [\n", "just words\n"):
        with pytest.raises(RoundTripError):
            apply_data(text, {"flow": "x"})


def test_a_renamed_node_keeps_its_place_and_its_comments() -> None:
    text = template_text("menu", "shop")
    data = _data(text)
    nodes = data["nodes"]
    data["nodes"] = {("front" if key == "menu" else key): value for key, value in nodes.items()}
    data["start"] = "front"
    changed = apply_data(text, data, {"menu": "front"})
    assert _data(changed) == data
    assert list(_data(changed)["nodes"]) == ["front", "sales", "support", "goodbye"]
    assert "    next: support              # anything else\n" in changed
    assert _changed_lines(text, changed) == ["start: front", "  front:"]
