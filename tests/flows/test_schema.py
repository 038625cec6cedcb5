"""Schema checks: each violation is one message at the line of the offending key or value."""

from __future__ import annotations

from engine.flows.problems import Problem
from engine.flows.schema import check_schema
from engine.flows.yamlread import read_text
from tests.flows.conftest import PERSONALITY, SMALL_FLOW, Project, dedent, line_of, only

VALID = SMALL_FLOW.format(id="t")


def schema_problems(text: str, kind: str = "flow") -> list[Problem]:
    document, problems = read_text(f"{kind}s/t.yaml", text)
    assert problems == []
    assert document is not None
    return check_schema(document, kind)


def test_the_small_flow_and_personality_are_valid() -> None:
    assert schema_problems(VALID) == []
    assert schema_problems(PERSONALITY.format(id="p"), "personality") == []


def test_an_unknown_key_is_marked_at_the_key_with_a_suggestion() -> None:
    text = VALID.replace("    next: bye", "    nxet: bye")
    [problem] = schema_problems(text)
    assert (problem.line, problem.column) == (line_of(text, "nxet"), 5)
    assert problem.message.startswith(
        "nodes.greet: unknown key 'nxet' (did you mean 'next'?); allowed here: ")
    assert "next, pause, personality, text, type" in problem.message


def test_an_unknown_top_level_key() -> None:
    text = VALID + "strat: greet\n"
    [problem] = schema_problems(text)
    assert problem.line == line_of(text, "strat:")
    assert "(document): unknown key 'strat' (did you mean 'start'?)" in problem.message


def test_every_unknown_key_is_reported() -> None:
    text = VALID.replace("    text: Hello.", "    txt: Hello.\n    colour: blue")
    problems = schema_problems(text)
    # `txt` also leaves the required `text` missing.
    assert {(p.line, p.message.split(";")[0]) for p in problems} >= {
        (line_of(text, "txt:"), "nodes.greet: unknown key 'txt' (did you mean 'text'?)"),
        (line_of(text, "colour:"), "nodes.greet: unknown key 'colour'"),
    }


def test_a_missing_required_key() -> None:
    text = VALID.replace("    text: Hello.\n", "")
    [problem] = schema_problems(text)
    assert problem.message == "nodes.greet: missing required key 'text'"
    assert problem.line == line_of(text, "type: say")


def test_a_missing_top_level_key() -> None:
    text = VALID.replace("start: greet\n", "")
    [problem] = schema_problems(text)
    assert problem.message == "(document): missing required key 'start'"
    assert (problem.line, problem.column) == (1, 1)


def test_a_list_where_a_mapping_belongs() -> None:
    text = VALID.replace("  bye:\n    type: hangup\n    text: Goodbye.\n",
                         "  bye:\n    - type: hangup\n")
    [problem] = schema_problems(text)
    assert problem.message == ("nodes.bye: expected a mapping, got a list [{'type': 'hangup'}]; "
                               "write it as `key: value` lines under bye:, not as `- ` items")
    assert problem.line == line_of(text, "- type: hangup")


def test_a_wrong_scalar_type() -> None:
    text = VALID.replace("    next: bye", "    next: bye\n    pause: long")
    [problem] = schema_problems(text)
    assert problem.message == "nodes.greet.pause: expected a number, got a string 'long'"
    assert (problem.line, problem.column) == (line_of(text, "pause:"), 12)


def test_an_unquoted_phone_number_is_a_number_not_a_string() -> None:
    text = VALID + "numbers: [+15550001000]\n"
    [problem] = schema_problems(text)
    assert problem.message == ("numbers[0]: expected a string, got a number 15550001000; "
                               "quote it to keep its +: \"+15550001000\"")


def test_a_bad_node_type_with_a_suggestion() -> None:
    text = VALID.replace("type: say", "type: sya")
    [problem] = schema_problems(text)
    assert problem.message == ("nodes.greet.type: 'sya' is not allowed (did you mean 'say'?); "
                               "use one of: say, gather, ai, switch, transfer, record, hangup, "
                               "http")
    assert (problem.line, problem.column) == (line_of(text, "type: sya"), 11)


def test_a_node_without_a_type() -> None:
    text = VALID.replace("    type: hangup\n", "")
    [problem] = schema_problems(text)
    assert problem.message == "nodes.bye: missing required key 'type'"


def test_an_unknown_error_kind_with_a_suggestion() -> None:
    text = VALID + "defaults:\n  on_error:\n    netwrk: {then: bye}\n"
    [problem] = schema_problems(text)
    assert problem.line == line_of(text, "netwrk")
    assert problem.message.startswith(
        "defaults.on_error: unknown key 'netwrk' (did you mean 'network'?)")


def test_a_bad_node_name_is_marked_at_the_name() -> None:
    text = VALID.replace("  bye:", "  Bye:").replace("next: bye", "next: Bye")
    problems = schema_problems(text)
    rule = "is not a valid name: use lower case letters, digits and _, starting with a letter"
    assert [(p.line, p.column, p.message) for p in problems] == [
        (line_of(text, "next: Bye"), 11, f"nodes.greet.next: 'Bye' {rule}"),
        (line_of(text, "  Bye:"), 3, f"nodes: 'Bye' {rule}"),
    ]


def test_a_bad_var_name_is_marked_at_the_name() -> None:
    text = VALID.replace("vars: {business: Acme}", "vars:\n  business: Acme\n  front desk: x")
    [problem] = schema_problems(text)
    assert (problem.line, problem.column) == (line_of(text, "front desk"), 3)
    assert problem.message.startswith("vars: 'front desk' is not a valid name")


def test_a_number_as_a_name_is_not_a_valid_name() -> None:
    text = VALID.replace("  bye:\n", "  2:\n").replace("next: bye", "next: '2'")
    problems = schema_problems(text)
    assert [(p.line, p.message) for p in problems] == [
        (line_of(text, "next: '2'"), "nodes.greet.next: '2' is not a valid name: use lower case "
                                     "letters, digits and _, starting with a letter"),
        (line_of(text, "  2:"), "nodes: '2' is not a valid name: use lower case letters, digits "
                                "and _, starting with a letter"),
    ]


def test_a_list_at_the_top_level() -> None:
    [problem] = schema_problems("- flow: t\n- personality: p\n")
    assert str(problem) == "flows/t.yaml:1:1: expected a mapping at the top of the flow file, " \
                           "got a list"


def test_a_document_that_is_only_null() -> None:
    [problem] = schema_problems("---\n")
    assert problem.message == "expected a mapping at the top of the flow file, got nothing"


def test_a_personality_schema_problem() -> None:
    text = PERSONALITY.format(id="p").replace("Polly.Joanna-Neural", "Joanna")
    [problem] = schema_problems(text, "personality")
    assert problem.line == line_of(text, "voice:")
    assert problem.message.startswith("voice.twilio: 'Joanna' does not match the expected form")


def test_the_loader_reports_a_list_at_the_top_once(project: Project) -> None:
    project.flow("t", "- type: say\n- type: hangup\n")
    problems = project.problems()
    assert [str(p) for p in problems] == [
        "flows/t.yaml:1:1: expected a mapping at the top of the flow file, got a list"]


def test_the_loader_reports_schema_problems_in_every_file(project: Project) -> None:
    project.flow("a", VALID.replace("flow: t", "flow: a").replace("type: say", "type: sya"))
    project.flow("b", dedent("""
        flow: b
        personality: p
        start: x
        nodes: []
    """))
    problems = project.problems()
    assert only(problems, "'sya' is not allowed").path == "flows/a.yaml"
    assert only(problems, "nodes: expected a mapping").path == "flows/b.yaml"
