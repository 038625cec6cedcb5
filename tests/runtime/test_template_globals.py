"""Compiled texts and conditions keep Jinja2's globals as a plain dict (faster to copy at each
render): the same names and values as the environment's, and a value passed in still wins."""

from __future__ import annotations

from datetime import datetime

from engine.runtime import templates
from engine.runtime.templates import evaluate, make_helpers, render


def test_the_globals_are_the_environments() -> None:
    compiled = templates._template("{{ 1 }}")
    assert type(compiled.globals) is dict
    assert compiled.globals == dict(templates._environment.globals)


def test_texts_and_conditions_still_see_the_globals_and_the_values() -> None:
    values = {"turn": 3, "vars": {"business": "Acme"},
              **make_helpers("a person please", datetime(2025, 1, 15, 10, 0))}
    assert render("{% for i in range(turn) %}{{ i }}{% endfor %} {{ vars.business }}",
                  values) == "012 Acme"
    assert render("{{ dict(a=1)['a'] }}{% set ns = namespace(n=2) %}{{ ns.n }}", values) == "12"
    assert evaluate("said_any('person') and range(turn) | list == [0, 1, 2]", values)
    assert not evaluate("said_any('robot')", values)
    # A value passed in wins over a global of the same name, as before.
    assert render("{{ range }}", {"range": "mine"}) == "mine"
    assert evaluate("range == 'mine'", {"range": "mine"})
