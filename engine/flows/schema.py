"""JSON Schema checks of flow and personality documents, with messages people can act on."""

from __future__ import annotations

import datetime
import difflib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine.flows.problems import Problem
from engine.flows.yamlread import Document, dotted

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

NAME_PATTERN = "^[a-z][a-z0-9_]*$"
"""The schemas' pattern for ids: flows, personalities, nodes."""

_NAME_RULE = "use lower case letters, digits and _, starting with a letter"

_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "null": "nothing"}


@cache
def load_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema for `kind` ("flow", "personality" or "scenario")."""
    with open(SCHEMA_DIR / f"{kind}.schema.json", encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(kind))


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A suffix for a message: " (did you mean 'x'?)" with the closest of `choices` to `word`,
    or "" when none is close.
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe(value: Any) -> str:
    for name, text in (("dict", "a mapping"), ("list", "a list"), ("str", "a string"),
                       ("bool", "true/false"), ("int", "a number"), ("float", "a number"),
                       ("datetime", "a date and time"), ("date", "a date"),
                       ("NoneType", "nothing")):
        if type(value).__name__ == name:
            return text
    return type(value).__name__


def _short(value: Any) -> str:
    text = value.isoformat() if isinstance(value, (datetime.date, datetime.time)) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _yaml_key(key: Any) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) else json.dumps(text)


def _type_hint(path: tuple[Any, ...], expected: list[str], instance: Any) -> str:
    """How to write the value the schema wanted, shown after a wrong type: a number or true
    where text is wanted is quoted, a list where a mapping is wanted is turned into one."""
    key = path[-1] if path else ""
    phone = any(part in ("numbers", "to", "from", "caller_id", "transfer") for part in path
                if isinstance(part, str))
    if expected == ["string"] and phone and isinstance(instance, int) \
            and not isinstance(instance, bool):
        return f"; quote it to keep its +: \"+{instance}\""
    if expected == ["string"] and instance is None:
        if len(path) >= 2 and path[-2] == "exits":
            return f"; say when the model should go there: {key}: when to go there"
        return f"; give {key} a value after its colon" if isinstance(key, str) else ""
    if expected == ["string"] and isinstance(instance, (datetime.date, datetime.time)):
        # YAML reads an unquoted 2026-03-04T10:00:00 as a timestamp, not as text.
        return f"; quote it to keep it as written: {key}: \"{instance.isoformat()}\""
    if expected in (["integer"], ["number"]) and isinstance(instance, str) \
            and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", instance.strip()):
        return f"; write the number without quotes: {key}: {instance.strip()}"
    if expected == ["string"] and isinstance(instance, (bool, int, float)):
        written = ("true" if instance else "false") if isinstance(instance, bool) \
            else str(instance)
        return f"; quote it to make it text: {key}: \"{written}\"" if isinstance(key, str) \
            else f"; quote it to make it text: \"{written}\""
    if "object" in expected and isinstance(instance, list) and key == "exits" \
            and all(isinstance(item, (str, int)) for item in instance) and instance:
        pairs = ", ".join(f"{_yaml_key(item)}: when to go there" for item in instance[:3])
        return (f"; exits name each node with when the model should go there: "
                f"exits: {{{pairs}}}")
    if "object" in expected and isinstance(instance, list):
        return f"; write it as `key: value` lines under {_yaml_key(key)}:, not as `- ` items" \
            if isinstance(key, str) and key else ""
    return ""


def _problems_for(error: ValidationError, document: Document) -> list[Problem]:
    path = tuple(error.absolute_path)
    where = dotted(path)
    validator = error.validator
    schema: dict[str, Any] = error.schema if isinstance(error.schema, dict) else {}
    instance: Any = error.instance
    expected: Any = error.validator_value
    if validator in ("allOf", "anyOf", "oneOf") and error.context:
        # The interesting errors are inside the branch that applied.
        best = sorted(error.context, key=lambda e: -len(e.absolute_path))
        return [problem for sub in best[:1] for problem in _problems_for(sub, document)]
    if validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extras = [key for key in instance if key not in allowed]
        return [document.problem((*path, key),
                                 f"{where}: unknown key '{key}'{did_you_mean(str(key), allowed)}; "
                                 f"allowed here: {', '.join(allowed)}", at_key=True)
                for key in extras]
    if validator == "required":
        missing = str(error.message).split("'")[1]
        return [document.problem(path, f"{where}: missing required key '{missing}'")]
    if validator == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        wanted = " or ".join(_TYPE_NAMES.get(name, name) for name in names)
        shown = "" if instance is None else f" {_short(instance)}"
        return [document.problem(path, f"{where}: expected {wanted}, "
                                       f"got {_describe(instance)}{shown}"
                                       f"{_type_hint(path, names, instance)}")]
    if validator == "enum":
        options = [str(option) for option in expected]
        hint = did_you_mean(str(instance), options)
        return [document.problem(path, f"{where}: {_short(instance)} is not allowed{hint}; "
                                       f"use one of: {', '.join(options)}")]
    if validator == "const":
        return [document.problem(path, f"{where}: must be {expected!r}")]
    if validator == "pattern" and (expected == NAME_PATTERN
                                   or "propertyNames" in error.absolute_schema_path):
        rule = _NAME_RULE if expected == NAME_PATTERN else f"it must match {expected}"
        message = f"{where}: {_short(instance)} is not a valid name: {rule}"
        if "propertyNames" in error.absolute_schema_path:
            # The bad value is a key of the mapping at `path`; point at that key.
            return [document.problem((*path, instance), message, at_key=True)]
        return [document.problem(path, message)]
    if validator == "pattern":
        return [document.problem(path, f"{where}: {_short(instance)} does not match the "
                                       f"expected form ({schema.get('description', '')})")]
    return [document.problem(path, f"{where}: {error.message}")]


def check_schema(document: Document, kind: str) -> list[Problem]:
    """Every schema violation in `document`, each at its own line."""
    if not isinstance(document.data, dict):
        return [document.problem((), f"expected a mapping at the top of the {kind} file, got "
                                     f"{_describe(document.data)}")]
    problems: list[Problem] = []
    for error in _validator(kind).iter_errors(document.data):
        problems.extend(_problems_for(error, document))
    return sorted(set(problems))
