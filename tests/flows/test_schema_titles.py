"""Every schema and each of its definitions has a `title`, which editors show in completions
("transfer node" rather than `transfer_node`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SCHEMAS = sorted((Path(__file__).resolve().parents[2] / "schemas").glob("*.schema.json"))


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda path: path.name)
def test_every_definition_has_a_title(path: Path) -> None:
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert schema.get("title"), f"{path.name} has no title"
    untitled = [name for name, body in schema.get("$defs", {}).items() if not body.get("title")]
    assert untitled == [], f"{path.name}: $defs without a title: {', '.join(untitled)}"


def test_titles_read_as_words() -> None:
    schema = json.loads((SCHEMAS[0].parent / "flow.schema.json").read_text(encoding="utf-8"))
    assert schema["$defs"]["transfer_node"]["title"] == "transfer node"
    titles = [body["title"] for path in SCHEMAS
              for body in json.loads(path.read_text(encoding="utf-8")).get("$defs", {}).values()]
    assert all("_" not in title for title in titles)
