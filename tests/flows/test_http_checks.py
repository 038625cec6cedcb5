"""Validation of http nodes and ai tools: the schema's bounds, JSONPaths, `${NAME}`, templates
(a tool's reading `args`), parameters that must be JSON Schema, names that must not clash."""

from __future__ import annotations

from engine.flows.checks import secret_names
from engine.flows.compile import compile_flow
from engine.flows.model import HttpNode
from engine.flows.yamlread import read_text
from tests.flows.conftest import Project, dedent, flow_problems, line_of

FLOW = dedent("""
    flow: t
    personality: p
    vars: {business: Acme, day: monday}
    defaults:
      no_input: {retries: 1, then: bye}
      on_error:
        network: {then: bye}
        rate_limit: {then: bye}
        ai_failure: {then: bye}
        tts_failure: {voice: twilio}
    start: check
    nodes:
      check:
        type: http
        request:
          method: post
          url: "https://api.example.com/slots?day={{ vars.day }}"
          headers: {Authorization: "Bearer ${CLINIC_API_TOKEN}"}
          body: {day: "{{ vars.day }}", source: phone}
          timeout: 3
        save: {first_slot: "$.slots[0].label"}
        say_while_waiting: One moment while I check.
        next: assist
        on_error: {http: {retry: 1, then: bye}}
      assist:
        type: ai
        instructions: Offer {{ vars.first_slot }} at {{ vars.business }}.
        exits: {bye: The caller is done.}
        tools:
          book:
            description: Book a slot for the caller.
            parameters:
              slot: {type: string, description: The slot's label.}
              name: {type: string}
            optional: [name]
            request:
              method: POST
              url: "https://api.example.com/book?slot={{ args.slot | urlencode }}"
              headers: {X-Key: "${BOOKING_KEY}"}
      bye: {type: hangup, text: Goodbye.}
""")


def test_a_valid_http_node_and_tool_pass_and_compile(project: Project) -> None:
    assert flow_problems(project, FLOW) == []
    document, problems = read_text("clinic.yaml", FLOW)
    assert document is not None and problems == []
    flow = compile_flow(document.data).flow
    node = flow.nodes["check"]
    assert isinstance(node, HttpNode) and node.request.method == "POST"
    assert node.request.timeout == 3.0 and dict(node.save) == {"first_slot": "$.slots[0].label"}
    assert [edge.id for edge in flow.edges_from("check")] == [
        "check/next", "check/error:http/retry", "check/error:http/then"]
    assert node.on_error["http"].retry == 1 and set(node.on_error) == {"http"}
    assert secret_names(flow) == ["BOOKING_KEY", "CLINIC_API_TOKEN"]
    [tool] = flow.nodes["assist"].tools  # type: ignore[attr-defined]
    assert tool.schema()["required"] == ["slot"]


def test_a_timeout_over_ten_seconds_is_refused(project: Project) -> None:
    text = FLOW.replace("timeout: 3", "timeout: 30")
    [problem] = flow_problems(project, text)
    assert problem.line == line_of(text, "timeout: 30")
    assert "nodes.check.request.timeout" in problem.message and "10" in problem.message


def test_an_http_node_needs_its_error_edge_and_next(project: Project) -> None:
    text = FLOW.replace("    on_error: {http: {retry: 1, then: bye}}\n", "")
    [problem] = flow_problems(project, text)
    assert "on_error" in problem.message
    text = FLOW.replace("    next: assist\n", "    next: assist_\n")
    messages = [problem.message for problem in flow_problems(project, text)]
    assert any("unknown node 'assist_'" in message for message in messages)


def test_save_must_be_jsonpath(project: Project) -> None:
    text = FLOW.replace('"$.slots[0].label"', '"slots[0].label"')
    [problem] = flow_problems(project, text)
    assert problem.line == line_of(text, "save:")
    assert problem.message.startswith("nodes.check.save.first_slot: 'slots[0].label' is not a "
                                      "JSONPath")


def test_a_secret_reference_must_name_a_variable(project: Project) -> None:
    text = FLOW.replace("${CLINIC_API_TOKEN}", "${clinic-token}")
    [problem] = flow_problems(project, text)
    assert problem.message.startswith("nodes.check.request.headers.Authorization: "
                                      "'${clinic-token}' is not an environment variable")


def test_request_templates_are_checked_and_only_tools_read_args(project: Project) -> None:
    text = FLOW.replace("?day={{ vars.day }}", "?day={{ vars.dya }}&n={{ args.slot }}")
    messages = sorted(problem.message for problem in flow_problems(project, text))
    assert any(m.startswith("nodes.check.request.url: unknown name 'args'") for m in messages)
    assert any(m.startswith("nodes.check.request.url: unknown variable 'vars.dya'")
               for m in messages)
    assert len(messages) == 2


def test_saved_vars_are_known_to_templates(project: Project) -> None:
    text = FLOW.replace("{{ vars.first_slot }}", "{{ vars.first_slott }}")
    [problem] = flow_problems(project, text)
    assert "unknown variable 'vars.first_slott' (did you mean 'first_slot'?)" in problem.message


def test_tool_parameters_and_names(project: Project) -> None:
    text = FLOW.replace("slot: {type: string, description: The slot's label.}",
                        "slot: {type: text}").replace("book:", "bye:", 1)
    messages = sorted(problem.message for problem in flow_problems(project, text))
    assert messages[1].startswith("nodes.assist.tools.bye: a tool cannot share its name")
    assert messages[0].startswith("nodes.assist.tools.bye.parameters: not JSON Schema")
    assert len(messages) == 2
    text = FLOW.replace("optional: [name]", "optional: [nmae]")
    [problem] = flow_problems(project, text)
    assert "'nmae' is not one of its parameters" in problem.message


def test_an_error_edge_back_to_its_node_through_nodes_that_do_not_wait(project: Project) -> None:
    text = FLOW.replace("on_error: {http: {retry: 1, then: bye}}",
                        "on_error: {http: {retry: 1, then: again}}").replace(
        "  bye: {type: hangup, text: Goodbye.}",
        "  again: {type: say, text: Let me try again., next: check}\n"
        "  bye: {type: hangup, text: Goodbye.}")
    [problem] = flow_problems(project, text)
    assert problem.line == line_of(text, "then: again")
    assert problem.message.startswith("nodes.check.on_error.http.then: leads back to 'check' "
                                      "without the caller being asked anything")
    # Through a node that listens, the caller bounds the loop.
    text = text.replace("  again: {type: say, text: Let me try again., next: check}",
                        "  again: {type: gather, prompt: \"Shall I try again?\", next: check}")
    assert flow_problems(project, text) == []
