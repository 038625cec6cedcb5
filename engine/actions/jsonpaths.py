"""`save:` of an `http` node: JSONPath expressions into an answer, values into `vars`.

The expressions are RFC 9535 JSONPath, read by python-jsonpath (maintained, pure Python, no
I/O): `$.slots[0].label`, `$.patient.name`, `$.slots[*].label` (a list). Pure functions, so the
runtime may use them and validation can check an expression before any call.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jsonpath


def path_problem(expression: str) -> str | None:
    """Why `expression` is not a JSONPath, in one line, or None when it is one."""
    try:
        _compiled(expression)
    except jsonpath.JSONPathError as error:
        return str(error).splitlines()[0]
    if not expression.startswith("$"):
        return "a JSONPath starts with $ (the whole answer), such as $.slots[0].label"
    return None


@lru_cache(maxsize=512)
def _compiled(expression: str) -> jsonpath.JSONPath | jsonpath.CompoundJSONPath:
    return jsonpath.compile(expression)


def pick(data: Any, expression: str) -> Any:
    """What `expression` selects in `data`: the one value it finds, a list when its selectors
    can find several (`[*]`, filters, slices), None when it finds nothing."""
    path = _compiled(expression)
    if isinstance(data, str | bytes):
        # python-jsonpath reads a str as a JSON document; an answer that *is* a string is a value.
        found: list[Any] = [data] if expression.strip() == "$" else []
    else:
        found = path.findall(data)
    # A compound path (`$.a | $.b`) has no singular_query: one value found is that value.
    singular = path.singular_query() if isinstance(path, jsonpath.JSONPath) else len(found) <= 1
    if singular:
        return found[0] if found else None
    return found


def save(data: Any, paths: Mapping[str, str]) -> dict[str, Any]:
    """`vars` names to what their expressions select in `data` (None where nothing is found)."""
    return {name: pick(data, expression) for name, expression in paths.items()}
