"""Messages a newcomer meets, in the flow language's words rather than Jinja2's or YAML's:
a comparison written with `=`, braces inside `when:`, unknown names (offering only the flow's
own), exits written as a list, a key press not quoted, a time zone or helper argument that
could never work, and a number claimed twice (with the other flow's file and line)."""

from __future__ import annotations

from tests.flows.conftest import Project, dedent, flow_problems, line_of

SWITCH = """
    flow: t
    personality: p
    vars: {{business: Acme}}
    timezone: {timezone}
    start: check
    nodes:
      check:
        type: switch
        routes:
          - when: "{when}"
            to: bye
        next: bye
      bye:
        type: hangup
        text: Goodbye.
"""


def _messages(project: Project, when: str, timezone: str = "UTC") -> list[str]:
    text = dedent(SWITCH.format(when=when, timezone=timezone))
    return [str(problem) for problem in flow_problems(project, text)]


def test_a_single_equals_says_to_compare_with_two(project: Project) -> None:
    assert _messages(project, "said_any('menu') or digits = '1'") == [
        "flows/t.yaml:10:15: nodes.check.routes[0].when: condition does not parse: use == to "
        "compare (a single = is not a comparison): said_any('menu') or digits == '1'"]


def test_a_keyword_argument_is_not_taken_for_a_comparison(project: Project) -> None:
    assert _messages(project, "open_between('09:00', '17:00', days='Mon-Fri') and "
                              "digits = '1'") == [
        "flows/t.yaml:10:15: nodes.check.routes[0].when: condition does not parse: use == to "
        "compare (a single = is not a comparison): open_between('09:00', '17:00', "
        "days='Mon-Fri') and digits == '1'"]


def test_braces_in_a_condition_say_to_write_it_without(project: Project) -> None:
    assert _messages(project, "{{ digits == '1' }}") == [
        "flows/t.yaml:10:15: nodes.check.routes[0].when: condition does not parse: write the "
        "condition without {{ }} (when: is an expression already): digits == '1'"]


def test_an_unknown_name_offers_only_the_flows_own_names(project: Project) -> None:
    assert _messages(project, "said_ani('menu')") == [
        "flows/t.yaml:10:15: nodes.check.routes[0].when: unknown name 'said_ani' (did you mean "
        "'said_any'?); templates can use call, caller, confidence, detected_language, digits, "
            "language, node, now, sentiment, "
        "sentiment_avg, sentiment_trend, speech, turn, vars, open_between, said_all, said_any"]


def test_a_misspelt_mood_name_is_offered_the_right_one(project: Project) -> None:
    assert "(did you mean 'sentiment_trend'?)" in _messages(project, "sentiment_trnd < -0.5")[0]


def test_jinja_globals_stay_usable(project: Project) -> None:
    assert _messages(project, "digits in range(3) | map('string') | list") == []


def test_an_unknown_time_zone_suggests_the_closest(project: Project) -> None:
    assert _messages(project, "digits == '1'", timezone="America/NewYork") == [
        "flows/t.yaml:4:11: timezone: unknown time zone 'America/NewYork' (did you mean "
        "'America/New_York'?); use an IANA name such as America/New_York, Europe/London or UTC"]


def test_open_between_with_times_or_days_it_cannot_read(project: Project) -> None:
    assert _messages(project, "open_between('00:00', '11pm', days='Weekdays')") == [
        "flows/t.yaml:10:15: nodes.check.routes[0].when: open_between(): '11pm' is not a time "
        "as HH:MM on a 24-hour clock ('09:00', '17:30', '23:00')",
        "flows/t.yaml:10:15: nodes.check.routes[0].when: open_between(): days='Weekdays' is not "
        "a list of days: write day names Mon to Sun, ranges and commas ('Mon-Fri', 'Sat,Sun', "
        "'Mon-Sun')"]


def test_open_between_with_good_arguments_passes(project: Project) -> None:
    for when in ("open_between('00:00', '23:59', days='Mon-Sun')",
                 "open_between('22:00', '06:00', days='Fri,Sat')",
                 "open_between('09:00', '17:00', days='Monday-Friday')",
                 "open_between(vars_start, '17:00')".replace("vars_start", "caller.city")):
        assert _messages(project, when) == [], when


def test_open_between_without_an_end(project: Project) -> None:
    assert _messages(project, "open_between('09:00')") == [
        "flows/t.yaml:10:15: nodes.check.routes[0].when: open_between() needs a start and an "
        "end time: open_between('09:00', '17:00', days='Mon-Fri')"]


def test_said_any_of_a_number(project: Project) -> None:
    assert _messages(project, "said_any(1)") == [
        "flows/t.yaml:10:15: nodes.check.routes[0].when: said_any(): 1 is not a word or phrase "
        "to listen for; quote words: said_any('billing', 'invoice')"]


def test_exits_as_a_list_show_the_mapping(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: chat
        nodes:
          chat:
            type: ai
            exits: [confirm, kitchen]
            no_input: {retries: 1, then: confirm}
          confirm: {type: hangup}
          kitchen: {type: hangup}
    """)
    assert [str(p) for p in flow_problems(project, text)] == [
        f"flows/t.yaml:{line_of(text, 'exits:')}:12: nodes.chat.exits: expected a mapping, got "
        "a list ['confirm', 'kitchen']; exits name each node with when the model should go "
        "there: exits: {confirm: when to go there, kitchen: when to go there}"]


def test_a_number_where_text_is_wanted_says_to_quote_it(project: Project) -> None:
    text = dedent(SWITCH.format(when="digits == '1'", timezone="UTC")).replace(
        "text: Goodbye.", "text: 42")
    assert [str(p) for p in flow_problems(project, text)] == [
        f"flows/t.yaml:{line_of(text, 'text: 42')}:11: nodes.bye.text: expected a string, got "
        "a number 42; quote it to make it text: text: \"42\""]


def test_a_number_claimed_twice_names_the_other_file_and_line(project: Project) -> None:
    first = dedent("""
        flow: a
        personality: p
        vars: {business: Acme}
        numbers:
          - "+15550001000"
        start: bye
        nodes: {bye: {type: hangup}}
    """)
    project.flow("a", first)
    project.flow("b", first.replace("flow: a", "flow: b"))
    assert [str(p) for p in project.problems()] == [
        "flows/b.yaml:5:5: numbers[0]: +15550001000 is already claimed by flow 'a' "
        "(flows/a.yaml:5); a number can route to one flow only"]


def test_a_quoted_number_says_to_drop_the_quotes(project: Project) -> None:
    text = dedent(SWITCH.format(when="digits == '1'", timezone="UTC")).replace(
        "type: hangup", "type: hangup\n    description: x").replace(
        "    next: bye\n  bye:", "    next: ask\n  ask:\n    type: gather\n    prompt: Hi\n"
        "    timeout: \"25\"\n    next: bye\n    no_input: {retries: 0, then: bye}\n  bye:")
    assert [str(p) for p in flow_problems(project, text)] == [
        f"flows/t.yaml:{line_of(text, 'timeout:')}:14: nodes.ask.timeout: expected a whole "
        "number, got a string '25'; write the number without quotes: timeout: 25"]


def _text_messages(project: Project, text_field: str) -> list[str]:
    text = dedent(SWITCH.format(when="digits == '1'", timezone="UTC")).replace(
        "text: Goodbye.", f"text: {text_field}")
    return [str(problem) for problem in flow_problems(project, text)]


def test_an_unclosed_print_in_a_text_says_to_close_it(project: Project) -> None:
    expected = ["flows/t.yaml:15:11: nodes.bye.text: template does not parse: a {{ is not "
                "closed: close it with }}, as in {{ vars.business }}"]
    assert _text_messages(project, '"Bye from {{ vars.business }"') == expected
    assert _text_messages(project, '"Bye from {{ vars.business"') == expected


def test_single_braces_in_a_text_warn_that_they_are_said_as_written(project: Project) -> None:
    assert _text_messages(project, "Bye from {vars.business}.") == [
        "flows/t.yaml:15:11: warning: nodes.bye.text: '{vars.business}' is said as it is "
        "written; to say the value write {{ vars.business }}"]


def test_exits_without_descriptions_say_to_give_them(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: chat
        nodes:
          chat:
            type: ai
            exits: {confirm, kitchen}
            no_input: {retries: 1, then: confirm}
          confirm: {type: hangup}
          kitchen: {type: hangup}
    """)
    assert [p.message for p in flow_problems(project, text)] == [
        "nodes.chat.exits.confirm: expected a string, got nothing; say when the model "
        "should go there: confirm: when to go there",
        "nodes.chat.exits.kitchen: expected a string, got nothing; say when the model "
        "should go there: kitchen: when to go there"]
