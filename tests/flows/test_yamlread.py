"""Reading YAML: line marks, YAML 1.2 scalars, duplicate keys, and every way a file can be bad."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from engine.flows.yamlread import MAX_FILE_BYTES, Mark, read_file, read_text
from tests.flows.conftest import dedent, line_of

NESTED = dedent("""
    # a comment first, so line numbers are not trivially the index
    flow: marks
    nodes:
      greet:
        type: say
        text: Hello.
        next: menu
      menu:
        type: gather
        hints: [billing, sales]
        routes:
          - when: digits == '1'
            to: billing
          - {when: "digits == '2'", to: sales}
""")


def test_marks_are_one_based_for_nested_keys_and_list_items() -> None:
    document, problems = read_text("x.yaml", NESTED)
    assert problems == []
    assert document is not None
    next_line = line_of(NESTED, "next: menu")
    assert document.mark(("nodes", "greet", "next")) == Mark(next_line, 11)
    assert document.key_mark(("nodes", "greet", "next")) == Mark(next_line, 5)
    assert document.key_mark(("nodes", "menu")) == Mark(line_of(NESTED, "menu:"), 3)
    # Block list items: the item starts after "- ", its keys on their own lines.
    first_route = line_of(NESTED, "- when: digits == '1'")
    assert document.mark(("nodes", "menu", "routes", 0)) == Mark(first_route, 9)
    assert document.mark(("nodes", "menu", "routes", 0, "to")) == Mark(first_route + 1, 13)
    # Flow-style items, on one line.
    second_route = line_of(NESTED, "to: sales}")
    assert document.mark(("nodes", "menu", "routes", 1)) == Mark(second_route, 9)
    assert document.mark(("nodes", "menu", "routes", 1, "to")) == Mark(second_route, 37)
    hints = line_of(NESTED, "hints:")
    assert document.mark(("nodes", "menu", "hints", 1)) == Mark(hints, 22)


def test_a_missing_path_is_marked_at_its_closest_enclosing_value() -> None:
    document, _ = read_text("x.yaml", NESTED)
    assert document is not None
    assert document.mark(("nodes", "greet", "no_such_key")) == document.mark(("nodes", "greet"))
    assert document.mark(("nodes", "greet")) == Mark(line_of(NESTED, "type: say"), 5)
    assert document.problem(("nodes", "greet", "next"), "m").line == line_of(NESTED, "next: menu")


def test_yaml_1_1_booleans_stay_strings_and_times_are_not_numbers() -> None:
    text = dedent("""
        a: yes
        b: no
        c: on
        d: off
        e: Yes
        f: y
        t: true
        u: false
        v: True
        closes: 17:30
        octal: 0o17
        hex: 0x1f
        plain: 017
        ratio: 1.5
        nothing: ~
    """)
    document, problems = read_text("x.yaml", text)
    assert problems == []
    assert document is not None
    assert document.data == {
        "a": "yes", "b": "no", "c": "on", "d": "off", "e": "Yes", "f": "y",
        "t": True, "u": False, "v": True, "closes": "17:30",
        "octal": 15, "hex": 31, "plain": 17, "ratio": 1.5, "nothing": None,
    }
    assert type(document.data["t"]) is bool


def test_keys_are_names_as_written() -> None:
    text = "vars:\n  1: one\n  true: yes\n  ~: nothing\n  0x1f: hex\n"
    document, problems = read_text("x.yaml", text)
    assert problems == []
    assert document is not None
    assert document.data == {"vars": {"1": "one", "true": "yes", "~": "nothing", "0x1f": "hex"}}
    # A key "1" is a name in the path, never mistaken for the list index 1.
    assert document.key_mark(("vars", "1")) == Mark(2, 3)
    assert document.problem(("vars", "1"), "m").line == 2


def test_duplicate_keys_are_reported_with_both_lines() -> None:
    text = dedent("""
        nodes:
          greet:
            type: say
            text: Hello.
          greet:
            type: hangup
    """)
    _, problems = read_text("x.yaml", text)
    assert len(problems) == 1
    problem = problems[0]
    assert (problem.line, problem.column) == (line_of(text, "greet:", 2), 3)
    assert f"first defined on line {line_of(text, 'greet:')}" in problem.message
    assert "nodes.greet: duplicate key 'greet'" in problem.message


def test_a_merge_key_override_is_not_a_duplicate() -> None:
    text = dedent("""
        base: &base {retries: 2, then: goodbye}
        no_input:
          <<: *base
          then: menu
          then: again
    """)
    document, problems = read_text("x.yaml", text)
    assert document is not None
    assert document.data["no_input"] == {"retries": 2, "then": "again"}
    # Overriding the merged `then` is fine; writing `then` twice yourself is not.
    assert [(p.line, "duplicate key 'then'" in p.message) for p in problems] == \
        [(line_of(text, "then: again"), True)]


def test_a_syntax_error_names_the_line() -> None:
    text = "flow: x\nnodes:\n  greet:\n    text: Say: hello\n"
    _, problems = read_text("x.yaml", text)
    assert len(problems) == 1
    assert problems[0].line == 4
    assert problems[0].message.startswith("YAML syntax error: mapping values are not allowed")
    assert "must be quoted" in problems[0].message


def test_a_tab_gets_a_hint() -> None:
    _, problems = read_text("x.yaml", "flow: x\nnodes:\n\tgreet: {}\n")
    assert [(p.line, "not tabs" in p.message) for p in problems] == [(3, True)]


def test_an_unclosed_bracket_says_where_it_opened() -> None:
    _, problems = read_text("x.yaml", "flow: x\nnumbers: [+1555\nstart: a\n")
    assert len(problems) == 1
    # Noticed on the next line, so the message points back at the bracket.
    assert problems[0].line == 3
    assert problems[0].message == ("YAML syntax error: expected ',' or ']', but got ':' (while "
                                   "parsing a flow sequence that starts on line 2)")


def test_an_unclosed_quote_is_reported_at_the_quote() -> None:
    _, problems = read_text("x.yaml", 'flow: x\ndescription: "Acme\nstart: a\n')
    assert [str(p) for p in problems] == [
        'x.yaml:2:14: YAML syntax error: the quote " opened here is not closed on its line; '
        'close it (YAML read on to the end of the file)']


def test_an_unclosed_quote_that_a_later_quote_closes_is_reported_at_the_first() -> None:
    text = ("flow: x\nnodes:\n  greet:\n    type: say\n    text: \"Hello there\n"
            "    next: bye\n  bye:\n    type: hangup\n    text: \"Goodbye.\"\n")
    _, problems = read_text("x.yaml", text)
    assert [str(p) for p in problems] == [
        'x.yaml:5:11: YAML syntax error: the quote " opened here is not closed on its line; '
        "close it (YAML read on to line 9: expected <block end>, but found '<scalar>')"]


def test_quotes_that_close_or_sit_inside_plain_text_are_not_blamed() -> None:
    text = ("flow: x  # it's a \"test\ndescription: 'it''s fine'\nd: \"a \\\" b\"\n"
            "e: It's \"open\nnodes: [a, 'b\n")
    _, problems = read_text("x.yaml", text)
    assert [(p.line, "the quote ' opened here" in p.message) for p in problems] == [(5, True)]


def test_an_empty_file_says_so() -> None:
    for text in ("", "   \n\n"):
        document, problems = read_text("x.yaml", text)
        assert document is None
        assert [str(p) for p in problems] == \
            ["x.yaml:1:1: the file is empty; it should hold one YAML mapping"]


def test_a_comment_only_file_is_empty() -> None:
    document, problems = read_text("x.yaml", "# flow: x\n\n   # start: a\n")
    assert document is None
    assert [p.message for p in problems] == ["the file is empty; it should hold one YAML mapping"]


def test_two_documents_in_one_file_are_refused() -> None:
    _, problems = read_text("x.yaml", "flow: a\n---\nflow: b\n")
    assert [str(p) for p in problems] == [
        "x.yaml:2:1: YAML syntax error: expected a single document in the stream, but found "
        "another document"]


def test_python_tags_are_refused() -> None:
    _, problems = read_text("x.yaml", "a: !!python/name:os.system\n")
    assert len(problems) == 1
    assert "could not determine a constructor" in problems[0].message


def test_a_file_that_is_not_utf8_says_so_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes("flow: x\ndescription: Caf\u00e9\n".encode("latin-1"))
    document, problems = read_file(path, "flows/latin.yaml")
    assert document is None
    assert [str(p) for p in problems] == ["flows/latin.yaml:2:1: the file is not UTF-8 text"]


def test_a_file_over_the_limit_is_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1) + "flow: big\n", encoding="utf-8")
    started = time.perf_counter()
    document, problems = read_file(path, "flows/big.yaml")
    assert time.perf_counter() - started < 1
    assert document is None
    assert len(problems) == 1
    assert problems[0].message.startswith("the file is 1.0 MB;")
    assert "limited to 1 MB" in problems[0].message


def test_a_missing_file_is_one_problem(tmp_path: Path) -> None:
    document, problems = read_file(tmp_path / "gone.yaml", "flows/gone.yaml")
    assert document is None
    assert [p.message.startswith("cannot read the file") for p in problems] == [True]


def _laughs(levels: int, as_keys: bool = False) -> str:
    """The "billion laughs": each level is nine aliases of the one before."""
    names = [f"l{level}" for level in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    if as_keys:
        # The same anchors defined in keys, where nothing counts them as values.
        lines = [f"? {line.split(': ', 1)[1]}\n: {index}" for index, line in enumerate(lines)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly() -> None:
    text = _laughs(9)
    assert len(text) < 1000  # 9**9 values from a few hundred bytes
    started = time.perf_counter()
    document, problems = read_text("x.yaml", text)
    assert time.perf_counter() - started < 5
    assert document is None
    assert len(problems) == 1
    assert "aliases used as a bomb?" in problems[0].message


def test_an_alias_bomb_in_keys_is_refused_quickly() -> None:
    started = time.perf_counter()
    _, problems = read_text("x.yaml", _laughs(9, as_keys=True))
    assert time.perf_counter() - started < 5
    assert problems
    assert all("a key must be a plain name, not a list" in p.message for p in problems)


def test_deep_nesting_is_one_problem() -> None:
    _, problems = read_text("x.yaml", "a: " + "[" * 20000 + "]" * 20000 + "\n")
    assert [p.message for p in problems] == ["the document is nested too deeply to read"]


def test_unquoted_braces_say_to_quote_a_text_and_drop_them_from_a_condition() -> None:
    text = ("flow: x\nnodes:\n  a:\n    text: {{ vars.business }}\n    routes:\n"
            "      - when: {{ digits == '1' }}\n        to: b\n")
    _, problems = read_text("x.yaml", text)
    assert [str(p) for p in problems] == [
        'x.yaml:4:12: nodes.a.text: a text that starts with {{ must be quoted, or YAML reads it '
        'as a mapping: text: "{{ vars.business }}"',
        "x.yaml:6:16: nodes.a.routes[0].when: write the condition without {{ }} (when: is an "
        "expression already): when: digits == '1'"]


def test_unquoted_braces_before_more_text_get_a_hint() -> None:
    _, problems = read_text("x.yaml", "flow: x\nnodes:\n  a:\n    text: {{ vars.x }} is open\n")
    assert [p.message.endswith("(a value that starts with { is read as a mapping: quote a "
                               "text that starts with {{, and write a when: without {{ }})")
            for p in problems] == [True]
