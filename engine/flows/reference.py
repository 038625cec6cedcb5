"""docs/reference.md, written from the JSON schemas: every key of a flow, each node type, the
shared parts (routes, no_input, on_error, limits, requests, tools), personalities and scenario
files.

`python -m engine.flows.reference` rewrites the file; `--check` exits 1 when it is out of date
(a test runs that check, so a schema change comes with its reference).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from engine.flows.schema import NAME_PATTERN, load_schema

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
"""Where the reference is kept."""

_SIMPLE = {"string": "text", "integer": "whole number", "number": "number",
           "boolean": "true/false", "object": "mapping", "array": "list", "null": "nothing"}

_HEADER = """\
# Flow reference

Every key of a flow file (`flows/<id>.yaml`), of each node type, of a personality
(`personalities/<id>.yaml`) and of a scenario file (`flows/<id>.test.yaml`), as the schemas in
`schemas/` define them. Generated from those schemas by `python -m engine.flows.reference`;
do not edit by hand. The README's [Writing a flow](../README.md#writing-a-flow) shows them
together in a complete flow, and [docs/scenarios.md](scenarios.md) explains scenario files.
"""


def _anchor(title: str) -> str:
    return "".join(char for char in title.lower().replace(" ", "-")
                   if char.isalnum() or char in "-_")


def _ref_title(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return None
    target = root["$defs"][ref.removeprefix("#/$defs/")]
    return str(target.get("title", ref.rsplit("/", 1)[-1]))


def _kind(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    """What a value is, in a few words: `text`, `one of: a, b`, `list of text`, a link."""
    title = _ref_title(schema, root)
    if title is not None:
        # The node definition only dispatches on `type`: its section is the node types'.
        return f"[{title}](#{'node-types' if title == 'node' else _anchor(title)})"
    if "const" in schema:
        value = schema["const"]
        return f"`{str(value).lower() if isinstance(value, bool) else value}`"
    if "enum" in schema:
        return "one of: " + ", ".join(f"`{option}`" for option in schema["enum"])
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return " or ".join(_kind(branch, root) for branch in schema[combinator])
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return f"list of {_kind(items, root)}" if isinstance(items, dict) else "list"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict) \
            and "properties" not in schema:
        return f"mapping of name to {_kind(schema['additionalProperties'], root)}"
    if isinstance(kind, list):
        return " or ".join(_SIMPLE.get(str(name), str(name)) for name in kind)
    if kind == "string" and schema.get("pattern") == NAME_PATTERN:
        return "id"
    return _SIMPLE.get(str(kind), "any value") if kind else "any value"


def _bounds(schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f" ({low} to {high})"
    if low is not None:
        return f" (at least {low})"
    if high is not None:
        return f" (at most {high})"
    return ""


def _cell(text: str) -> str:
    # `<Say>` would read as an HTML tag where Markdown is rendered.
    text = text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(text.split())


def _table(schema: Mapping[str, Any], root: Mapping[str, Any], prefix: str = ""
           ) -> Iterator[str]:
    """One row a key (nested mappings as `parent.key`), required keys marked."""
    required = set(schema.get("required", ()))
    for name, body in schema.get("properties", {}).items():
        if name == "$schema":
            continue
        key = f"{prefix}{name}"
        mark = " (required)" if name in required else ""
        description = body.get("description", "")
        if "description" not in body and _ref_title(body, root) is not None:
            target = root["$defs"][body["$ref"].removeprefix("#/$defs/")]
            description = target.get("description", "")
        yield (f"| `{key}`{mark} | {_cell(_kind(body, root) + _bounds(body))} | "
               f"{_cell(description)} |")
        nested = body.get("items") if body.get("type") == "array" else body
        if isinstance(nested, dict) and nested.get("type") == "object" \
                and "properties" in nested:
            yield from _table(nested, root, f"{key}{'[]' if nested is not body else ''}.")


def _section(level: str, title: str, schema: Mapping[str, Any], root: Mapping[str, Any]
             ) -> Iterator[str]:
    yield f"{level} {title}"
    yield ""
    if schema.get("description"):
        yield _cell(str(schema["description"]))
        yield ""
    if schema.get("properties"):
        yield "| key | value | what it does |"
        yield "| --- | --- | --- |"
        yield from _table(schema, root)
        yield ""


def render_reference() -> str:
    """The whole reference, as Markdown."""
    flow, personality = load_schema("flow"), load_schema("personality")
    scenario = load_schema("scenario")
    lines = [_HEADER]
    lines += _section("##", "Flow file", flow, flow)
    lines += ["## Node types", ""]
    node_types = flow["$defs"]["node"]["properties"]["type"]["enum"]
    for node_type in node_types:
        body = flow["$defs"][f"{node_type}_node"]
        lines += _section("###", body["title"], body, flow)
    lines += ["## Parts of nodes and flows", ""]
    for name in ("route", "no_input", "on_error", "limits", "request", "http_on_error", "tool"):
        body = flow["$defs"][name]
        lines += _section("###", body["title"], body, flow)
    lines += _section("##", "Personality file", personality, personality)
    lines += _section("##", "Scenario file", scenario, scenario)
    for body in scenario["$defs"].values():
        lines += _section("###", body["title"], body, scenario)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/reference.md, or with `--check` say whether it is up to date (exit 1 if
    not)."""
    args = sys.argv[1:] if argv is None else argv
    text = render_reference()
    if "--check" in args:
        current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
        if current != text:
            print(f"{REFERENCE.name} is out of date: run python -m engine.flows.reference",
                  file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text, encoding="utf-8")
    print(f"wrote {REFERENCE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
