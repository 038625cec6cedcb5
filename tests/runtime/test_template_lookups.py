"""Texts that are only words and dotted names render without Jinja2's machinery, and always to
what Jinja2 itself renders (or with the error it raises)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import UndefinedError

from engine.runtime import templates
from engine.runtime.template_limits import begin, end, render_limited
from engine.runtime.templates import render


def by_jinja(text: str, values: dict[str, Any]) -> str:
    token = begin()
    try:
        return render_limited(templates._template(text).generate(values))
    finally:
        end(token)


NAMES = st.sampled_from(["vars", "caller", "a", "items", "keys", "missing"])
LEAVES = st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False),
                   st.booleans(), st.none(), st.lists(st.integers(), max_size=2))
VALUES = st.recursive(LEAVES, lambda inner: st.dictionaries(NAMES, inner, max_size=3),
                      max_leaves=6)
PATHS = st.lists(NAMES, min_size=1, max_size=3).map(".".join)
WORDS = st.text(st.characters(blacklist_characters="{}%#"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.tuples(WORDS, PATHS), min_size=1, max_size=3), tail=WORDS,
       values=st.dictionaries(NAMES, VALUES, max_size=4))
def test_a_text_of_dotted_names_renders_as_jinja_renders_it(
        pieces: list[tuple[str, str]], tail: str, values: dict[str, Any]) -> None:
    text = "".join(f"{words}{{{{ {path} }}}}" for words, path in pieces) + tail
    try:
        expected: str | type[Exception] = by_jinja(text, values)
    except Exception as error:  # the kind of failure is what is compared
        expected = type(error)
    if isinstance(expected, str):
        assert render(text, values) == expected
    else:
        with pytest.raises(expected):
            render(text, values)


def test_a_plain_greeting_skips_jinja(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str) -> Any:
        raise AssertionError(f"Jinja2 was asked to render {text!r}")

    text = "Thanks for calling {{ vars.business }}."
    assert templates._lookups(text) == ("Thanks for calling ", ("vars", "business"), ".")
    monkeypatch.setattr(templates, "_template", refuse)
    assert render(text, {"vars": {"business": "Acme"}}) == "Thanks for calling Acme."


@pytest.mark.parametrize("text", ["{{ vars.business | upper }}", "{{ a + 1 }}",
                                  "{% if a %}x{% endif %}", "{{ a['b'] }}", "{{ f() }}"])
def test_anything_but_dotted_names_goes_to_jinja(text: str) -> None:
    assert templates._lookups(text) is None


def test_a_missing_name_still_fails_as_jinja_fails() -> None:
    with pytest.raises(UndefinedError):
        render("Hello {{ vars.name }}", {"vars": {}})
