"""Sandboxed Jinja2 for the text fields and `when:` conditions of flows.

Flows are data, not code: they run in Jinja2's sandbox, see only the names listed in
`CONTEXT_NAMES` and `HELPERS`, and fail closed (an error in a condition means "does not hold").
The sandbox is `engine.runtime.template_limits.LimitedEnvironment`: a render produces at most
`MAX_OUTPUT` characters and takes at most `MAX_STEPS` loop iterations and calls, and refuses
what would pass them (`'x' * 10**9`, `range(10**9)`) with a `TemplateLimitError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, time
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.environment import TemplateExpression

from engine.runtime.template_limits import (
    MAX_OUTPUT,
    MAX_STEPS,
    LimitedEnvironment,
    TemplateLimitError,
    begin,
    end,
    render_limited,
)

CONTEXT_NAMES = frozenset({"speech", "digits", "confidence", "caller", "vars", "turn", "now",
                           "node", "call", "sentiment", "sentiment_avg", "sentiment_trend",
                           "language", "detected_language"})
"""Values a template or condition may read; see `context()`."""

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _contains_phrase(heard: list[str], phrase: str) -> bool:
    wanted = _words(phrase)
    if not wanted:
        return False
    return any(heard[i:i + len(wanted)] == wanted for i in range(len(heard) - len(wanted) + 1))


def _parse_days(days: str) -> set[int]:
    chosen: set[int] = set()
    for part in days.lower().replace(" ", "").split(","):
        if "-" in part:
            first, last = (_DAYS.index(day[:3]) for day in part.split("-", 1))
            span = range(first, last + 1) if first <= last else [*range(first, 7),
                                                                 *range(0, last + 1)]
            chosen.update(span)
        elif part:
            chosen.add(_DAYS.index(part[:3]))
    return chosen


_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def clock_time_problem(text: object) -> str | None:
    """Why `text` is not a time of day open_between() reads (HH:MM, 24-hour), or None."""
    if isinstance(text, str) and _CLOCK.match(text):
        return None
    return f"{text!r} is not a time as HH:MM on a 24-hour clock ('09:00', '17:30', '23:00')"


def days_problem(days: object) -> str | None:
    """Why `days` is not what open_between() reads (day names Mon..Sun or in full, ranges
    and commas: 'Mon-Fri', 'Sat,Sun'), or None."""
    parts = days.lower().replace(" ", "").split(",") if isinstance(days, str) else [""]
    for part in parts:
        for day in part.split("-", 1) if "-" in part else [part]:
            if day[:3] not in _DAYS or day not in (day[:3], _DAY_NAMES[_DAYS.index(day[:3])]):
                return (f"days={days!r} is not a list of days: write day names Mon to Sun, "
                        f"ranges and commas ('Mon-Fri', 'Sat,Sun', 'Mon-Sun')")
    return None


def make_helpers(speech: str, now: datetime) -> dict[str, Callable[..., Any]]:
    """The helper functions, bound to one caller utterance and one moment."""
    heard = _words(speech)

    def said_any(*phrases: str) -> bool:
        """True when the caller said any of the words or phrases (whole words, any case)."""
        return any(_contains_phrase(heard, phrase) for phrase in phrases)

    def said_all(*phrases: str) -> bool:
        return all(_contains_phrase(heard, phrase) for phrase in phrases)

    def open_between(start: str, end: str, days: str = "Mon-Sun") -> bool:
        """True when `now` is within [start, end) on one of `days` ('Mon-Fri', 'Sat,Sun')."""
        begin, finish = time.fromisoformat(start), time.fromisoformat(end)
        if now.weekday() not in _parse_days(days):
            return False
        moment = now.time().replace(tzinfo=None)
        if begin <= finish:
            return begin <= moment < finish
        return moment >= begin or moment < finish  # spans midnight

    return {"said_any": said_any, "said_all": said_all, "open_between": open_between}


_environment = LimitedEnvironment(undefined=StrictUndefined, autoescape=False,
                                  keep_trailing_newline=False)

HELPERS = frozenset(make_helpers("", datetime(2000, 1, 1))) | frozenset(_environment.globals) \
    | {"loop"}
"""Helper names, Jinja2's own globals (range, dict, ...) and `loop` inside a for block."""

FLOW_HELPERS = frozenset(make_helpers("", datetime(2000, 1, 1)))
"""The flow language's own helpers (said_any, said_all, open_between), without Jinja2's
globals: the names messages offer."""


def parse_template(text: str) -> nodes.Template:
    """Parse a text field; raises TemplateSyntaxError."""
    return _environment.parse(text)


def parse_condition(expression: str) -> nodes.Template:
    """Parse a `when:` expression (as the body of `{{ ... }}`); raises TemplateSyntaxError."""
    _environment.compile_expression(expression)  # rejects statements and trailing junk
    return _environment.parse("{{ (" + expression + ") }}")


# Compiling is most of the cost of a render (a system prompt: milliseconds, on every model
# turn), and flows are compiled once and kept, so their few distinct texts are compiled once
# too. The texts come from flow files only, never from a caller; the cache is bounded all the
# same (a hot reload brings new texts), and a compiled template still runs in the sandbox.
TEMPLATE_CACHE = 4096


def _plain_globals(template: Template) -> Template:
    """`template` with its globals as a plain dict. Jinja2 keeps them as a ChainMap over the
    environment's and copies that into a new dict at every render, key by key in Python (most
    of a short text's render); a dict copies at C speed. Same names, same values: the
    environment's globals never change once this module is imported."""
    template.globals = dict(template.globals)
    return template


@lru_cache(maxsize=TEMPLATE_CACHE)
def _template(text: str) -> Template:
    return _plain_globals(_environment.from_string(text))


@lru_cache(maxsize=TEMPLATE_CACHE)
def _expression(expression: str) -> TemplateExpression:
    compiled = _environment.compile_expression(expression, undefined_to_none=False)
    inner = getattr(compiled, "_template", None)  # Jinja2's own; left alone if it moves
    if isinstance(inner, Template):
        _plain_globals(inner)
    return compiled


def is_template(text: str) -> bool:
    """Whether `text` may hold Jinja2 syntax; one that cannot (no `{`) renders as itself."""
    return "{" in text


# Most texts in flows are literal words around a dotted name or two (`Thanks for calling
# {{ vars.business }}.`), and Jinja2's machinery around such a render (a new context, the
# sandbox's attribute checks, the output limits) costs far more than the lookups themselves, on
# every greeting of every call. Such a text is rendered here by the lookups alone, when every
# one lands on a plain value in plain dicts; anything else, and every failure, goes to Jinja2,
# which then gives the same answer or raises its own error.
_Lookup = tuple[str, ...]
_PLAIN_VALUES = (str, int, float, bool, type(None))
_DICT_ATTRIBUTES = frozenset(dir(dict))  # `vars.items` is the method to Jinja2, not a key


def _dotted(node: nodes.Node) -> _Lookup | None:
    names: list[str] = []
    while isinstance(node, nodes.Getattr):
        names.append(node.attr)
        node = node.node
    if not isinstance(node, nodes.Name) or node.ctx != "load":
        return None
    names.append(node.name)
    return tuple(reversed(names))


@lru_cache(maxsize=TEMPLATE_CACHE)
def _lookups(text: str) -> tuple[str | _Lookup, ...] | None:
    """`text` as its literal pieces and dotted-name lookups, in order, when that is all it
    holds (no filters, calls, operators, statements); None otherwise."""
    try:
        tree = _environment.parse(text)
    except TemplateSyntaxError:
        return None
    parts: list[str | _Lookup] = []
    for output in tree.body:
        if not isinstance(output, nodes.Output):
            return None
        for child in output.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(child.data)
                continue
            found = _dotted(child)
            if found is None:
                return None
            parts.append(found)
    return tuple(parts)


def _render_lookups(parts: tuple[str | _Lookup, ...], values: Mapping[str, Any]) -> str | None:
    """The text of `parts` with `values`, as Jinja2 would render it; None when a lookup is
    not a plain one (a missing name or key, an object, an attribute of dict itself)."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        name = part[0]
        if name not in values:
            return None
        value = values[name]
        for attribute in part[1:]:
            if type(value) is not dict or attribute in _DICT_ATTRIBUTES \
                    or attribute not in value:
                return None
            value = value[attribute]
        if type(value) not in _PLAIN_VALUES:
            return None
        out.append(value if isinstance(value, str) else str(value))
    text = "".join(out)
    return text if len(text) <= MAX_OUTPUT else None


def render(text: str, values: Mapping[str, Any]) -> str:
    """Render a text field. Unknown names raise, so a typo never speaks as silence; so does
    going over the limits (TemplateLimitError, see the module docstring)."""
    if not is_template(text):
        return text
    parts = _lookups(text)
    if parts is not None:
        plain = _render_lookups(parts, values)
        if plain is not None:
            return plain
    token = begin()
    try:
        return render_limited(_template(text).generate(values))
    finally:
        end(token)


def evaluate(expression: str, values: Mapping[str, Any]) -> bool:
    """Evaluate a condition; raises on errors (the limits' included) so the caller can record
    them."""
    token = begin()
    try:
        return bool(_expression(expression)(**values))
    finally:
        end(token)


__all__ = ["CONTEXT_NAMES", "FLOW_HELPERS", "HELPERS", "MAX_OUTPUT", "MAX_STEPS",
           "TemplateLimitError", "TemplateSyntaxError", "clock_time_problem", "days_problem",
           "evaluate", "is_template", "make_helpers", "parse_condition", "parse_template",
           "render"]
