"""Graph checks: one small flow per check, each asserting the message and the line it points at.

Every check reports every offender at once, so a flow with two mistakes gets two problems.
"""

from __future__ import annotations

from engine.flows.problems import Problem
from tests.flows.conftest import Project, dedent, flow_problems, line_of, only

ERRORS_HANDLED = """\
defaults:
  no_input: {retries: 1, then: bye}
  on_error:
    network: {retry: 2, then: bye}
    rate_limit: {then: bye}
    ai_failure: {then: bye}
    tts_failure: {voice: twilio}
"""
"""Defaults that give an `ai` node every edge it needs, for flows about something else."""


def where(problem: Problem) -> tuple[int, int]:
    return problem.line, problem.column


def errors(problems: list[Problem]) -> list[Problem]:
    return [problem for problem in problems if problem.severity == "error"]


# --- unknown edge targets -------------------------------------------------------------------

TWO_BAD_TARGETS = dedent("""
    flow: t
    personality: p
    vars: {business: Acme}
    start: greet
    nodes:
      greet:
        type: say
        text: Hello.
        next: menuu
      menu:
        type: gather
        prompt: Press 1.
        routes:
          - {when: "digits == '1'", to: byee}
        next: bye
        no_input: {retries: 1, then: bye}
      bye: {type: hangup}
""")


def test_every_unknown_target_is_reported_with_a_suggestion(project: Project) -> None:
    problems = flow_problems(project, TWO_BAD_TARGETS)
    first = only(problems, "'menuu'")
    assert first.message == "nodes.greet.next: unknown node 'menuu' (did you mean 'menu'?)"
    assert first.path == "flows/t.yaml"
    assert where(first) == (line_of(TWO_BAD_TARGETS, "next: menuu"), 11)
    second = only(problems, "'byee'")
    assert second.message == "nodes.menu.routes[0].to: unknown node 'byee' (did you mean 'bye'?)"
    assert second.line == line_of(TWO_BAD_TARGETS, "to: byee")
    # The typo still counts as reaching `menu`: no cascade of "unreachable" problems.
    assert [p.message for p in problems if "unreachable" in p.message] == []
    assert len(problems) == 2


def test_an_unknown_start(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: gret
        nodes:
          greet: {type: hangup}
    """)
    problems = flow_problems(project, text)
    assert [(p.line, p.message) for p in problems] == [
        (line_of(text, "start:"), "start: unknown node 'gret' (did you mean 'greet'?)")]


def test_unknown_exit_limit_and_default_targets(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        limits: {max_turns: 5, then: goodby}
        defaults:
          no_input: {retries: 1, then: hangup}
          on_error:
            network: {then: bye}
            rate_limit: {then: bye}
            ai_failure: {then: bye}
            tts_failure: {voice: twilio}
        start: assist
        nodes:
          assist:
            type: ai
            exits:
              bye: The caller is done.
              human: >-
                The caller wants a person.
          bye: {type: hangup}
    """)
    problems = errors(flow_problems(project, text))
    assert len(problems) == 3
    limit = only(problems, "'goodby'")
    assert limit.message == "limits.then: unknown node 'goodby'"
    assert limit.line == line_of(text, "limits:")
    default = only(problems, "'hangup'")
    assert default.message == "defaults.no_input.then: unknown node 'hangup'"
    assert default.line == line_of(text, "no_input:")
    exit_ = only(problems, "'human'")
    assert exit_.message == "nodes.assist.exits.human: unknown node 'human'"
    assert where(exit_) == (line_of(text, "human:"), 7)  # at the name, not the description


def test_a_number_as_an_exit_is_one_problem_not_a_crash(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: assist
    """) + ERRORS_HANDLED + dedent("""
        nodes:
          assist:
            type: ai
            exits: {bye: Done., 1: Pressed one.}
          bye: {type: hangup}
    """)
    [problem] = flow_problems(project, text)
    assert problem.line == line_of(text, "1: Pressed")
    assert problem.message.startswith("nodes.assist.exits: '1' is not a valid name")


# --- unknown personalities ------------------------------------------------------------------

def test_every_unknown_personality_is_reported(project: Project) -> None:
    project.personality("friendly")
    text = dedent("""
        flow: t
        personality: frendly
        vars: {business: Acme}
        defaults:
          no_input: {retries: 1, then: bye}
          on_error:
            network: {then: bye}
            rate_limit: {then: bye}
            ai_failure: {personality: profesional, then: bye}
            tts_failure: {voice: twilio}
        start: assist
        nodes:
          assist:
            type: ai
            personality: witty
            exits: {bye: Done., other: Done.}
          other:
            type: ai
            exits: {bye: Done.}
            on_error:
              ai_failure: {personality: zen, then: bye}
          bye: {type: hangup}
    """)
    problems = errors(flow_problems(project, text))
    found = {(p.line, p.message.split(";")[0]) for p in problems}
    assert found == {
        (line_of(text, "personality: frendly"),
         "personality: unknown personality 'frendly' (did you mean 'friendly'?)"),
        (line_of(text, "personality: witty"),
         "nodes.assist.personality: unknown personality 'witty'"),
        (line_of(text, "personality: profesional"),
         "defaults.on_error.ai_failure.personality: unknown personality 'profesional'"),
        (line_of(text, "personality: zen"),
         "nodes.other.on_error.ai_failure.personality: unknown personality 'zen'"),
    }
    assert problems[0].message.endswith(
        "add personalities/frendly.yaml or use one of: friendly, p")


def test_an_unknown_personality_fallback(project: Project) -> None:
    text = dedent("""
        personality: q
        name: Q
        system_prompt: You answer the phone for a small business, briefly.
        voice: {twilio: Polly.Joanna-Neural}
        examples: [{input: Hi, response: Hello.}]
        fallback: pp
    """)
    project.personality("q", text)
    problems = project.problems()
    [problem] = problems
    assert problem.path == "personalities/q.yaml"
    assert where(problem) == (line_of(text, "fallback:"), 11)
    assert problem.message == "fallback: unknown personality 'pp' (did you mean 'p'?)"


def test_a_known_personality_fallback_passes(project: Project) -> None:
    project.personality("q", dedent("""
        personality: q
        name: Q
        system_prompt: You answer the phone for a small business, briefly.
        voice: {twilio: Polly.Joanna-Neural}
        examples: [{input: Hi, response: Hello.}]
        fallback: p
    """))
    assert project.problems() == []


# --- unreachable nodes ----------------------------------------------------------------------

def test_every_unreachable_node_is_reported_at_its_name(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: greet
        nodes:
          greet: {type: say, text: Hello., next: bye}
          orphan:
            type: say
            text: Nobody comes here.
            next: other_orphan
          other_orphan: {type: hangup}
          bye: {type: hangup}
    """)
    problems = flow_problems(project, text)
    assert [(where(p), p.message) for p in problems] == [
        ((line_of(text, "orphan:"), 3),
         "nodes.orphan: unreachable: no edge leads here from start 'greet'; link to it or "
         "remove it"),
        ((line_of(text, "other_orphan: {"), 3),
         "nodes.other_orphan: unreachable: no edge leads here from start 'greet'; link to it or "
         "remove it"),
    ]


def test_nodes_reached_only_by_error_and_limit_edges_are_reachable(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        limits: {max_turns: 5, then: limit_reached}
        defaults:
          no_input: {retries: 1, then: silent}
          on_error:
            network: {then: trouble}
            rate_limit: {then: hold}
            ai_failure: {then: trouble}
            tts_failure: {voice: twilio}
        start: assist
        nodes:
          assist: {type: ai, exits: {bye: Done.}}
          hold: {type: say, text: One moment., next: assist}
          trouble: {type: hangup}
          silent: {type: hangup}
          limit_reached: {type: hangup}
          bye: {type: hangup}
    """)
    assert flow_problems(project, text) == []


# --- dead ends ------------------------------------------------------------------------------

def test_every_dead_end_is_reported(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme, desk: "+15550001111"}
        start: greet
        nodes:
          greet:
            type: say
            text: Hello.
          ask:
            type: gather
            prompt: Press 1.
            routes: [{when: "digits == '1'", to: check}]
            no_input: {retries: 1, then: bye}
          check:
            type: switch
            routes: [{when: "vars.business", to: desk}]
          desk:
            type: transfer
            to: "{{ vars.desk }}"
            next: message
          message:
            type: record
          bye: {type: hangup}
    """)
    problems = flow_problems(project, text)
    dead = [p for p in problems if "dead end" in p.message]
    assert [(where(p), p.message) for p in dead] == [
        ((line_of(text, "greet:"), 3), "nodes.greet: dead end: a say node needs `next` (use a "
                                       "hangup node to end the call)"),
        ((line_of(text, "ask:"), 3), "nodes.ask: dead end: answers that match no route have "
                                     "nowhere to go; add `next`"),
        ((line_of(text, "check:"), 3), "nodes.check: dead end: when no route holds the call "
                                       "has nowhere to go; add `next`"),
        ((line_of(text, "  desk:"), 3), "nodes.desk: dead end: when nobody answers the call has "
                                      "nowhere to go; add `on_fail`"),
        ((line_of(text, "message:"), 3), "nodes.message: dead end: a record node needs `next` "
                                         "(use a hangup node to end the call)"),
    ]


def test_a_listening_node_without_no_input_is_a_dead_end(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: ask
        nodes:
          ask:
            type: gather
            prompt: Press 1.
            next: bye
          bye: {type: hangup}
    """)
    [problem] = flow_problems(project, text)
    assert where(problem) == (line_of(text, "ask:"), 3)
    assert problem.message.startswith("nodes.ask: dead end: a caller who says nothing has "
                                      "nowhere to go")


def test_an_ai_node_with_no_way_out_is_only_a_warning(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: chat
    """) + ERRORS_HANDLED + dedent("""
        nodes:
          chat: {type: ai, instructions: Chat.}
          bye: {type: hangup}
    """)
    project.flow("t", text)
    result = project.load()
    dead = only(result.problems, "dead end")
    assert dead.severity == "warning"
    assert str(dead) == (f"flows/t.yaml:{line_of(text, 'chat:')}:3: warning: nodes.chat: dead "
                         f"end: no routes or exits: the call can only leave by hanging up")
    assert result.ok  # warnings do not refuse the flows


# --- no-input loops -------------------------------------------------------------------------

NO_INPUT_LOOP = dedent("""
    flow: t
    personality: p
    vars: {business: Acme}
    start: ask
    nodes:
      ask:
        type: gather
        prompt: Press 1 to continue.
        routes: [{when: "digits == '1'", to: bye}]
        next: ask
        no_input: {retries: 2, then: again}
      again:
        type: say
        text: I did not hear you.
        next: ask
      bye: {type: hangup}
""")


def test_an_unbounded_no_input_loop(project: Project) -> None:
    [problem] = flow_problems(project, NO_INPUT_LOOP)
    assert problem.line == line_of(NO_INPUT_LOOP, "no_input:")
    assert problem.message == (
        "nodes.ask: no-input loop with no bound: silence leads from 'again' back to 'ask'; "
        "add `limits` to the flow or end the loop at a hangup node")


def test_a_no_input_loop_bounded_by_limits(project: Project) -> None:
    text = NO_INPUT_LOOP.replace("start: ask", "limits: {max_seconds: 300, then: bye}\nstart: ask")
    assert flow_problems(project, text) == []


def test_no_input_that_ends_at_a_hangup_is_not_a_loop(project: Project) -> None:
    text = NO_INPUT_LOOP.replace("then: again", "then: bye")
    assert [p.message for p in flow_problems(project, text) if "loop" in p.message] == []


def test_a_gather_leaves_by_next_only_when_the_caller_answers(project: Project) -> None:
    # Silence on `menu` leads to `confirm`, whose `next` goes back to `menu`; but silence on
    # `confirm` takes its own no_input edge, which hangs up. No loop.
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: menu
        nodes:
          menu:
            type: gather
            prompt: Say billing or sales.
            next: confirm
            no_input: {retries: 1, then: hint}
          hint: {type: say, text: You can also press 1., next: confirm}
          confirm:
            type: gather
            prompt: Shall we start again?
            routes: [{when: "said_any('no')", to: bye}]
            next: menu
            no_input: {retries: 1, then: bye}
          bye: {type: hangup}
    """)
    assert flow_problems(project, text) == []
    looping = text.replace("{retries: 1, then: bye}", "{retries: 1, then: menu}")
    problems = flow_problems(project, looping)
    assert [(p.line, p.message.split(";")[0]) for p in problems] == [
        (line_of(looping, "then: hint"),
         "nodes.menu: no-input loop with no bound: silence leads from 'hint' back to 'menu'"),
        (line_of(looping, "{retries: 1, then: menu}"),
         "nodes.confirm: no-input loop with no bound: silence leads from 'menu' back to "
         "'confirm'"),
    ]


def test_a_loop_back_through_a_switch_counts(project: Project) -> None:
    text = NO_INPUT_LOOP.replace("next: ask\n  bye", "next: route\n  bye").replace(
        "  bye: {type: hangup}",
        "  route:\n    type: switch\n    routes: [{when: \"turn > 100\", to: bye}]\n    next: ask\n"
        "  bye: {type: hangup}")
    problems = flow_problems(project, text)
    assert only(problems, "no-input loop").message.startswith(
        "nodes.ask: no-input loop with no bound: silence leads from 'again' back to 'ask'")


# --- error edges of ai nodes ----------------------------------------------------------------

AI_FLOW = dedent("""
    flow: t
    personality: p
    vars: {business: Acme}
    start: assist
    DEFAULTS
    nodes:
      assist:
        type: ai
        instructions: Help callers of {{ vars.business }}.
        exits: {bye: The caller is done.}
        NODE_ERRORS
      bye: {type: hangup}
""")


def ai_flow(defaults: str = "", node_errors: str = "") -> str:
    return AI_FLOW.replace("DEFAULTS\n", defaults).replace("    NODE_ERRORS\n", node_errors)


def test_ai_errors_covered_by_defaults_pass(project: Project) -> None:
    assert flow_problems(project, ai_flow(ERRORS_HANDLED)) == []


def test_ai_errors_covered_by_node_and_defaults_together_pass(project: Project) -> None:
    defaults = ERRORS_HANDLED.replace("    rate_limit: {then: bye}\n", "")
    node = "    on_error:\n      rate_limit: {retry: 1, then: bye}\n"
    assert flow_problems(project, ai_flow(defaults, node)) == []


def test_an_ai_node_missing_rate_limit_fails(project: Project) -> None:
    text = ai_flow(ERRORS_HANDLED.replace("    rate_limit: {then: bye}\n", ""))
    [problem] = flow_problems(project, text)
    assert where(problem) == (line_of(text, "assist:"), 3)
    assert problem.message == ("nodes.assist: no edge for error 'rate_limit' after defaults; "
                               "add on_error.rate_limit to the node or to `defaults`")


def test_an_ai_node_with_no_error_strategy_gets_one_problem_per_kind(project: Project) -> None:
    text = ai_flow("defaults:\n  no_input: {retries: 1, then: bye}\n")
    problems = flow_problems(project, text)
    assert sorted(p.message.split("'")[1] for p in problems) == [
        "ai_failure", "network", "rate_limit", "tts_failure"]
    assert {p.line for p in problems} == {line_of(text, "assist:")}


def test_tts_failure_is_handled_by_the_twilio_voice(project: Project) -> None:
    # The schema requires `voice` on tts_failure, so declaring the kind is enough.
    assert flow_problems(project, ai_flow(ERRORS_HANDLED)) == []
    text = ai_flow(ERRORS_HANDLED.replace("    tts_failure: {voice: twilio}\n", ""))
    [problem] = flow_problems(project, text)
    assert problem.message.startswith("nodes.assist: no edge for error 'tts_failure'")


# --- templates and conditions ---------------------------------------------------------------

def test_templates_and_conditions_that_do_not_parse_or_use_unknown_names(project: Project
                                                                         ) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: check
        nodes:
          check:
            type: switch
            routes:
              - {when: "digits ==", to: bye}
              - {when: "speach == 'hi'", to: bye}
              - {when: "vars.x", to: bye}
              - {when: "said_any('hi') and open_between('09:00', '17:00')", to: bye}
            next: bye
          bye:
            type: hangup
            text: "Thanks for calling {{ vars.business }}{% if %}"
    """)
    problems = flow_problems(project, text)
    assert [(p.line, p.message.split(";")[0]) for p in problems] == [
        (line_of(text, "digits =="),
         "nodes.check.routes[0].when: condition does not parse: unexpected end of the condition"),
        (line_of(text, "speach"),
         "nodes.check.routes[1].when: unknown name 'speach' (did you mean 'speech'?)"),
        (line_of(text, "vars.x"), "nodes.check.routes[2].when: unknown variable 'vars.x'"),
        (line_of(text, "{% if %}"), "nodes.bye.text: template does not parse: Expected an "
                                    "expression, got 'end of statement block'"),
    ]
    assert problems[2].message.endswith("define it under `vars`")


def test_an_unknown_variable_in_a_text_template(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        vars: {business: Acme}
        start: greet
        nodes:
          greet:
            type: say
            text: Welcome to {{ vars.busines }}, {{ vars.x }}.
            next: bye
          bye: {type: hangup}
    """)
    problems = flow_problems(project, text)
    assert [(where(p), p.message) for p in problems] == [
        ((line_of(text, "text:"), 11),
         "nodes.greet.text: unknown variable 'vars.busines' (did you mean 'business'?); define "
         "it under `vars`"),
        ((line_of(text, "text:"), 11),
         "nodes.greet.text: unknown variable 'vars.x'; define it under `vars`"),
    ]


def test_a_reprompt_in_defaults_is_checked_where_it_is_written(project: Project) -> None:
    text = ai_flow(ERRORS_HANDLED.replace(
        "no_input: {retries: 1, then: bye}",
        "no_input: {retries: 1, reprompt: [Hello, \"{{ caler.number }}\"], then: bye}"))
    [problem] = flow_problems(project, text)
    assert problem.line == line_of(text, "caler")
    assert problem.message.startswith(
        "defaults.no_input.reprompt[1]: unknown name 'caler' (did you mean 'caller'?)")


def test_a_personality_prompt_that_uses_a_var_the_flow_lacks(project: Project) -> None:
    text = dedent("""
        flow: t
        personality: p
        start: bye
        nodes:
          bye: {type: hangup}
    """)
    [problem] = flow_problems(project, text)
    assert problem.line == line_of(text, "personality: p")
    assert problem.message == ("personality 'p' uses vars.business, which this flow does not "
                               "define under `vars`")


def test_a_personality_prompt_with_an_unknown_name(project: Project) -> None:
    text = dedent("""
        personality: q
        name: Q
        system_prompt: >-
          You answer the phone for {{ vars.business }} and greet {{ caller.number }}.
        voice: {twilio: Polly.Joanna-Neural}
        examples: [{input: Hi, response: Hello.}]
    """)
    project.personality("q", text)
    [problem] = project.problems()
    assert problem.path == "personalities/q.yaml"
    assert problem.line == line_of(text, "system_prompt:")
    assert problem.message == "system_prompt: unknown name 'caller'; templates can use vars"


def test_a_personality_prompt_that_does_not_parse(project: Project) -> None:
    project.personality("q", dedent("""
        personality: q
        name: Q
        system_prompt: You answer the phone for {{ vars.business and are kind.
        voice: {twilio: Polly.Joanna-Neural}
        examples: [{input: Hi, response: Hello.}]
    """))
    [problem] = project.problems()
    assert problem.message.startswith("system_prompt: template does not parse:")


# --- transfer targets -----------------------------------------------------------------------

TRANSFER = dedent("""
    flow: t
    personality: p
    vars: {business: Acme, desk: "+15550001111", front: front desk, sip: "sip:a@pbx.example.com"}
    start: call
    nodes:
      call:
        type: transfer
        to: TARGET
        on_fail: bye
      bye: {type: hangup}
""")


def transfer_problems(project: Project, target: str) -> list[Problem]:
    return flow_problems(project, TRANSFER.replace("TARGET", target))


def test_transfer_targets_that_pass(project: Project) -> None:
    for target in ('"+15550001111"', "sip:desk@pbx.example.com", "sip:desk@10.0.0.5:5060",
                   '"{{ vars.desk }}"', '"{{vars.sip}}"'):
        assert transfer_problems(project, target) == [], target


def test_a_var_that_is_not_a_number_fails(project: Project) -> None:
    [problem] = transfer_problems(project, '"{{ vars.front }}"')
    assert where(problem) == (line_of(TRANSFER, "to: TARGET"), 9)
    assert problem.message.startswith("nodes.call.to: 'front desk' is not a phone number in "
                                      "E.164 form (+15550001111), a SIP address")


def test_a_short_number_fails(project: Project) -> None:
    [problem] = transfer_problems(project, '"12345"')
    assert problem.line == line_of(TRANSFER, "to: TARGET")
    assert problem.message.startswith("nodes.call.to: '12345' is not a phone number")


def test_other_transfer_targets_that_fail(project: Project) -> None:
    for target in ('"+1 555 000 1111"', "desk@example.com", '"{{ vars.desk }}{{ vars.front }}"',
                   '"{{ caller.number }}"'):
        problems = transfer_problems(project, target)
        assert any("is not a phone number" in p.message for p in problems), target


def test_a_transfer_to_an_undefined_var_is_reported_once(project: Project) -> None:
    [problem] = transfer_problems(project, '"{{ vars.desk2 }}"')
    assert problem.message == ("nodes.call.to: unknown variable 'vars.desk2' (did you mean "
                               "'desk'?); define it under `vars`")


# --- across files ---------------------------------------------------------------------------

def numbered(flow_id: str, numbers: str) -> str:
    return dedent("""
        flow: FLOW
        personality: p
        vars: {business: Acme}
        numbers: NUMBERS
        start: bye
        nodes:
          bye: {type: hangup}
    """).replace("FLOW", flow_id).replace("NUMBERS", numbers)


def test_duplicate_numbers_across_flows(project: Project) -> None:
    project.flow("a", numbered("a", '["+15550001000", "+15550002000"]'))
    text = numbered("b", '\n  - "+15550003000"\n  - "+15550002000"\n  - "+15550001000"')
    project.flow("b", text)
    problems = project.problems()
    assert [(p.path, p.line, p.message) for p in problems] == [
        ("flows/b.yaml", line_of(text, '"+15550002000"'),
         "numbers[1]: +15550002000 is already claimed by flow 'a' (flows/a.yaml:4); a number "
         "can route to one flow only"),
        ("flows/b.yaml", line_of(text, '"+15550001000"'),
         "numbers[2]: +15550001000 is already claimed by flow 'a' (flows/a.yaml:4); a number "
         "can route to one flow only"),
    ]


def test_distinct_numbers_pass(project: Project) -> None:
    project.flow("a", numbered("a", '["+15550001000"]'))
    project.flow("b", numbered("b", '["+15550002000"]'))
    result = project.load()
    assert result.problems == []
    assert result.registry is not None
    flow = result.registry.flow_for_number("+15550002000")
    assert flow is not None
    assert flow.id == "b"


def test_a_flow_id_that_differs_from_its_file_name(project: Project) -> None:
    text = numbered("front_desk", "[]")
    project.flow("reception", text)
    [problem] = project.problems()
    assert str(problem) == ("flows/reception.yaml:1:7: flow: id 'front_desk' differs from the "
                            "file name 'reception.yaml'; rename one so they match")


def test_a_personality_id_that_differs_from_its_file_name(project: Project) -> None:
    project.personality("q", "personality: kind\n" + "\n".join(
        dedent("""
            name: Q
            system_prompt: You answer the phone for a small business, briefly.
            voice: {twilio: Polly.Joanna-Neural}
            examples: [{input: Hi, response: Hello.}]
        """).splitlines()) + "\n")
    [problem] = project.problems()
    assert str(problem) == ("personalities/q.yaml:1:14: personality: id 'kind' differs from the "
                            "file name 'q.yaml'; rename one so they match")


def test_a_flow_with_errors_gives_no_registry(project: Project) -> None:
    project.flow("t", TWO_BAD_TARGETS)
    result = project.load()
    assert not result.ok
    assert result.registry is None


def test_problems_in_several_files_are_all_reported(project: Project) -> None:
    project.flow("a", TWO_BAD_TARGETS.replace("flow: t", "flow: a"))
    project.flow("b", NO_INPUT_LOOP.replace("flow: t", "flow: b"))
    project.flow("c", "flow: c\npersonality: p\nstart: [\n")
    paths = [p.path for p in project.problems()]
    assert paths == ["flows/a.yaml", "flows/a.yaml", "flows/b.yaml", "flows/c.yaml"]
