"""Graph checks over compiled flows. Each check is a function that reports every offender.

A check takes a `FlowContext` (the compiled flow, the document it came from for line marks, and
what it may refer to) and returns problems; `FLOW_CHECKS` lists them in the order they run. The
checks that span several files (numbers claimed twice, personality fallbacks) take the whole set.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache

from jinja2 import TemplateSyntaxError, nodes
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from engine.actions.jsonpaths import path_problem
from engine.actions.secrets import REFERENCE
from engine.flows.compile import CompiledFlow
from engine.flows.model import (
    ERROR_KINDS,
    AiNode,
    Edge,
    Flow,
    GatherNode,
    HttpNode,
    Node,
    Personality,
    RecordNode,
    Request,
    SayNode,
    SwitchNode,
    TransferNode,
)
from engine.flows.problems import Problem
from engine.flows.schema import did_you_mean
from engine.flows.yamlread import Document, KeyPath, dotted
from engine.runtime.templates import (
    CONTEXT_NAMES,
    FLOW_HELPERS,
    HELPERS,
    clock_time_problem,
    days_problem,
    parse_condition,
    parse_template,
)

PHONE_NUMBER = re.compile(r"^\+[1-9][0-9]{6,14}$")
SIP_ADDRESS = re.compile(r"^sip:[^@\s]+@[A-Za-z0-9.-]+(:[0-9]+)?(;[^\s]*)?$")
VAR_TEMPLATE = re.compile(r"^\{\{\s*vars\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


@dataclass(frozen=True)
class FlowContext:
    """What one flow's checks read: the compiled flow, the document it came from (for line
    and column), and the personalities the flow may name.
    """

    compiled: CompiledFlow
    document: Document
    personalities: Mapping[str, Personality]

    @property
    def flow(self) -> Flow:
        """The compiled flow's `Flow`."""
        return self.compiled.flow

    def at_edge(self, edge: Edge, message: str, severity: str = "error") -> Problem:
        """A problem marked where `edge` is declared: on the key for an exit, on the value
        otherwise.
        """
        # An exit names its target as a key (`exits: {goodbye: ...}`), other edges as a value.
        return self.document.problem(self.compiled.edge_paths[edge], message, severity=severity,
                                     at_key=edge.kind == "exit")

    def at_node(self, node_id: str, message: str, severity: str = "error") -> Problem:
        """A problem marked on the key that declares node `node_id`."""
        return self.document.problem(("nodes", node_id), message, severity=severity, at_key=True)


def unknown_targets(context: FlowContext) -> Iterator[Problem]:
    """An error for an unknown `start` and for every edge whose target the flow does not
    have, suggesting the closest node name.
    """
    flow = context.flow
    known = list(flow.nodes)
    if flow.start not in flow.nodes:
        yield context.document.problem(
            ("start",), f"start: unknown node '{flow.start}'{did_you_mean(flow.start, known)}")
    for edge in flow.edges:
        if edge.target not in flow.nodes:
            path = context.compiled.edge_paths[edge]
            yield context.at_edge(edge, f"{dotted(path)}: unknown node '{edge.target}'"
                                        f"{did_you_mean(edge.target, known)}")


def unknown_personalities(context: FlowContext) -> Iterator[Problem]:
    """An error for every personality the flow, a node or an `ai_failure` strategy names
    that is not among `context.personalities`.
    """
    flow, known = context.flow, sorted(context.personalities)

    def problem(path: KeyPath, name: str) -> Problem:
        return context.document.problem(
            path, f"{dotted(path)}: unknown personality '{name}'{did_you_mean(name, known)}; "
                  f"add personalities/{name}.yaml or use one of: {', '.join(known) or 'none'}")

    if flow.personality not in context.personalities:
        yield problem(("personality",), flow.personality)
    for node in flow.nodes.values():
        if node.personality and node.personality not in context.personalities:
            yield problem(("nodes", node.id, "personality"), node.personality)
    for edge in flow.edges:
        name = (edge.strategy or "").removeprefix("personality ")
        if edge.strategy and edge.strategy.startswith("personality ") \
                and name not in context.personalities:
            yield problem(context.compiled.edge_paths[edge], name)


def _reachable(flow: Flow, edges: Iterable[Edge], start: str) -> set[str]:
    seen, todo = {start}, [start]
    outgoing: dict[str, list[str]] = {}
    for edge in edges:
        outgoing.setdefault(edge.source, []).append(edge.target)
    while todo:
        for target in outgoing.get(todo.pop(), ()):
            if target not in seen and target in flow.nodes:
                seen.add(target)
                todo.append(target)
    return seen


def _closest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return close[0] if close else name


def unreachable_nodes(context: FlowContext) -> Iterator[Problem]:
    """An error for every node no edge leads to from `start`.

    Silent when `start` itself is unknown. An edge to a misspelt node counts as reaching the
    closest real name, so one typo is reported once, by `unknown_targets`.
    """
    flow = context.flow
    if flow.start not in flow.nodes:
        return  # reported by unknown_targets; everything would look unreachable
    # An edge to a misspelt node counts as reaching the node it was meant for, so one typo is
    # reported once (by unknown_targets), not again as a cascade of unreachable nodes.
    known = list(flow.nodes)
    meant = [dataclasses.replace(edge, target=_closest(edge.target, known))
             if edge.target not in flow.nodes else edge for edge in flow.edges]
    reached = _reachable(flow, meant, flow.start)
    for node_id in flow.nodes:
        if node_id not in reached:
            yield context.at_node(node_id, f"nodes.{node_id}: unreachable: no edge leads here "
                                           f"from start '{flow.start}'; link to it or remove it")


def dead_ends(context: FlowContext) -> Iterator[Problem]:
    """A problem for every node the call cannot leave as it should: a missing `next` or
    `on_fail` (error), an ai node with neither routes nor exits (warning), and a listening node
    with no `no_input` of its own or from `defaults` (error).
    """
    for node in context.flow.nodes.values():
        missing = _missing_way_out(node)
        if missing:
            severity = "warning" if isinstance(node, AiNode) else "error"
            yield context.at_node(node.id, f"nodes.{node.id}: dead end: {missing}", severity)
        if isinstance(node, (GatherNode, AiNode)) and node.no_input is None:
            yield context.at_node(node.id, f"nodes.{node.id}: dead end: a caller who says "
                                           f"nothing has nowhere to go; add `no_input` here or "
                                           f"under `defaults`")


def _missing_way_out(node: Node) -> str | None:
    if isinstance(node, HttpNode) and not node.next:
        return "an http node needs `next`, where the call goes with the answer saved"
    if isinstance(node, (SayNode, RecordNode)) and not node.next:
        return f"a {node.type} node needs `next` (use a hangup node to end the call)"
    if isinstance(node, GatherNode) and not node.next:
        return "answers that match no route have nowhere to go; add `next`"
    if isinstance(node, SwitchNode) and not node.next:
        return "when no route holds the call has nowhere to go; add `next`"
    if isinstance(node, TransferNode) and not node.on_fail:
        return "when nobody answers the call has nowhere to go; add `on_fail`"
    if isinstance(node, AiNode) and not node.routes and not node.exits:
        return "no routes or exits: the call can only leave by hanging up"
    return None


_SILENT_KINDS = {"next", "no_input", "transfer_failed", "route"}


def _taken_in_silence(edge: Edge, source: Node | None) -> bool:
    # A listening node leaves by `next` or a route only when the caller answers; in silence
    # it takes its own no_input edge. A switch routes without listening.
    if edge.kind == "route":
        return isinstance(source, SwitchNode)
    return edge.kind != "next" or source is None or not source.listens


def unbounded_no_input_loops(context: FlowContext) -> Iterator[Problem]:
    """A caller who never speaks must not keep the call going forever."""
    flow = context.flow
    if flow.limits is not None:
        return  # max_turns / max_seconds bound every loop
    silent = [edge for edge in flow.edges if edge.kind in _SILENT_KINDS and not edge.strategy
              and _taken_in_silence(edge, flow.nodes.get(edge.source))]
    for edge in flow.edges:
        if edge.kind != "no_input" or edge.target not in flow.nodes:
            continue
        if edge.source in _reachable(flow, silent, edge.target):
            yield context.at_edge(
                edge, f"nodes.{edge.source}: no-input loop with no bound: silence leads from "
                      f"'{edge.target}' back to '{edge.source}'; add `limits` to the flow or end "
                      f"the loop at a hangup node")


def ai_error_edges(context: FlowContext) -> Iterator[Problem]:
    """An error for every ai node and error kind with nowhere to go after `defaults`: no
    `then` (and, for `tts_failure`, no `voice` either).
    """
    for node in context.flow.nodes.values():
        if not isinstance(node, AiNode):
            continue
        for kind in ERROR_KINDS:
            policy = node.on_error.get(kind)
            handled = policy is not None and (policy.then or (kind == "tts_failure"
                                                              and policy.voice))
            if not handled:
                yield context.at_node(
                    node.id, f"nodes.{node.id}: no edge for error '{kind}' after defaults; add "
                             f"on_error.{kind} to the node or to `defaults`")


def _template_fields(flow: Flow, document: Document) -> Iterator[tuple[KeyPath, str, bool]]:
    """(path, text, is_condition) for every template and condition in the flow."""
    defaults = document.data.get("defaults", {})
    yield from _reprompts(("defaults",), defaults)
    for node in flow.nodes.values():
        base: KeyPath = ("nodes", node.id)
        for name in (*node.speaks, "instructions", "to"):
            value = getattr(node, name, None)
            written = document.data["nodes"][node.id].get(name)
            if isinstance(written, dict):  # a text per language: each is a template
                yield from (((*base, name, tag), text, False) for tag, text in written.items())
            elif isinstance(value, str) and not (name == "opening" and value == "ai"):
                yield (*base, name), value, False
        for index, route in enumerate(getattr(node, "routes", ())):
            yield (*base, "routes", index, "when"), route.when, True
        yield from _reprompts(base, document.data["nodes"][node.id])


def _reprompts(base: KeyPath, raw: dict[str, object]) -> Iterator[tuple[KeyPath, str, bool]]:
    """Reprompts as written (a node's own, or the defaults'), so messages point at them."""
    no_input = raw.get("no_input")
    reprompt = no_input.get("reprompt", []) if isinstance(no_input, dict) else []
    texts = [((*base, "no_input", "reprompt"), reprompt)] if not isinstance(reprompt, list) \
        else [((*base, "no_input", "reprompt", index), text) for index, text in enumerate(reprompt)]
    for path, text in texts:
        if isinstance(text, dict):  # a reprompt per language
            yield from (((*path, tag), each, False) for tag, each in text.items())
        else:
            yield path, text, False


def _names_used(tree: nodes.Template) -> tuple[set[str], set[str]]:
    """Top-level names read, and attributes read off `vars`."""
    names = {found.name for found in tree.find_all(nodes.Name) if found.ctx == "load"}
    assigned = {found.name for found in tree.find_all(nodes.Name) if found.ctx == "store"}
    var_names = set()
    for getattr_node in tree.find_all(nodes.Getattr):
        target = getattr_node.node
        if isinstance(target, nodes.Name) and target.name == "vars":
            var_names.add(getattr_node.attr)
    return names - assigned, var_names


def _parses(expression: str) -> bool:
    try:
        parse_condition(expression)
    except TemplateSyntaxError:
        return False
    return True


def _lone_equals(expression: str) -> list[int]:
    """Where `expression` has a single `=` outside quotes and brackets: a comparison meant
    (`digits = '1'`), as a keyword argument (`days='Mon-Fri'`) sits inside a call."""
    found, depth, quote = [], 0, ""
    for index, char in enumerate(expression):
        if quote:
            quote = "" if char == quote and expression[index - 1] != "\\" else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "=" and depth <= 0 and expression[index - 1:index] not in "=!<>" \
                and expression[index + 1:index + 2] != "=":
            found.append(index)
    return found


def condition_hint(expression: str, jinja_message: str) -> str:
    """What to write instead, for a `when:` that does not parse; Jinja2's own message when
    the mistake is not one the flow language can explain better."""
    inner = expression.strip()
    if inner.startswith("{{") and inner.endswith("}}"):
        inner = inner[2:-2].strip()
        return f"write the condition without {{{{ }}}} (when: is an expression already): {inner}"
    if "{{" in expression or "}}" in expression:
        return "write the condition without {{ }} (when: is an expression already)"
    equals = _lone_equals(expression)
    if equals:
        fixed = expression
        for index in reversed(equals):
            fixed = fixed[:index].rstrip() + " == " + fixed[index + 1:].lstrip()
        example = f": {fixed}" if _parses(fixed) else ""
        return f"use == to compare (a single = is not a comparison){example}"
    return jinja_message.replace("'end of template'", "end of the condition") \
        .replace("end of template", "end of the condition")


def template_hint(text: str, jinja_message: str) -> str:
    """What to write instead, for a text that does not parse; Jinja2's own message when the
    mistake is not one the flow language can explain better."""
    if "end of print statement" in jinja_message or (jinja_message == "unexpected '}'"
                                                     and "{{" in text):
        return "a {{ is not closed: close it with }}, as in {{ vars.business }}"
    if jinja_message.endswith("got '='"):
        return "use == to compare (a single = is not a comparison)"
    return jinja_message


_SINGLE_BRACES = re.compile(r"(?<!\{)\{\s*((?:vars|caller|now)\.[A-Za-z_][\w.]*|speech|digits|turn)"
                            r"\s*\}(?!\})")


def single_braces(document: Document, path: KeyPath, text: str) -> Iterator[Problem]:
    """A warning for `{vars.x}` in a text: single braces are said as they are written."""
    for found in _SINGLE_BRACES.finditer(text):
        yield document.problem(path, f"{dotted(path)}: {found.group(0)!r} is said as it is "
                                     f"written; to say the value write "
                                     f"{{{{ {found.group(1)} }}}}", severity="warning")


OFFERED_NAMES = tuple(sorted(CONTEXT_NAMES)) + tuple(sorted(FLOW_HELPERS))
"""The names an unknown-name message offers: the flow's values and helpers, not Jinja2's
own globals (which templates may still use)."""


def check_template(document: Document, path: KeyPath, text: str, is_condition: bool,
                   variables: Mapping[str, object] | None, allowed: frozenset[str]
                   ) -> Iterator[Problem]:
    """Parse errors, unknown names and helper calls whose literal arguments can never work;
    `variables=None` leaves `vars.*` unchecked."""
    try:
        tree = parse_condition(text) if is_condition else parse_template(text)
    except TemplateSyntaxError as error:
        kind = "condition" if is_condition else "template"
        reason = condition_hint(text, error.message or "") if is_condition \
            else template_hint(text, error.message or "")
        yield document.problem(path, f"{dotted(path)}: {kind} does not parse: {reason}")
        return
    if not is_condition:
        yield from single_braces(document, path, text)
    names, var_names = _names_used(tree)
    offered = [name for name in OFFERED_NAMES if name in allowed] or sorted(allowed)
    for name in sorted(names - allowed):
        yield document.problem(path, f"{dotted(path)}: unknown name '{name}'"
                                     f"{did_you_mean(name, offered)}; templates can use "
                                     f"{', '.join(offered)}")
    for message in _helper_arguments(tree):
        yield document.problem(path, f"{dotted(path)}: {message}")
    if variables is None:
        return
    for name in sorted(var_names - set(variables)):
        yield document.problem(path, f"{dotted(path)}: unknown variable 'vars.{name}'"
                                     f"{did_you_mean(name, sorted(variables))}; define it under "
                                     f"`vars`")


def _literal(node: nodes.Expr) -> tuple[bool, object]:
    if isinstance(node, nodes.Const):
        return True, node.value
    return False, None


def _helper_arguments(tree: nodes.Template) -> Iterator[str]:
    """What is wrong with the literal arguments of helper calls: a time or a days list
    open_between() cannot read, an empty or non-text phrase for said_any()/said_all()."""
    for call in tree.find_all(nodes.Call):
        if not isinstance(call.node, nodes.Name) or call.node.name not in FLOW_HELPERS:
            continue
        name = call.node.name
        keywords = {keyword.key: keyword.value for keyword in call.kwargs}
        if name == "open_between":
            unknown = sorted(set(keywords) - {"start", "end", "days"})
            if unknown:
                yield (f"open_between() takes start, end and days=; not {unknown[0]}= "
                       f"(open_between('09:00', '17:00', days='Mon-Fri'))")
            times = list(call.args[:2]) + [keywords[key] for key in ("start", "end")
                                           if key in keywords]
            if len(times) < 2:
                yield ("open_between() needs a start and an end time: "
                       "open_between('09:00', '17:00', days='Mon-Fri')")
            days = call.args[2] if len(call.args) > 2 else keywords.get("days")
            for argument in times:
                is_literal, value = _literal(argument)
                problem = clock_time_problem(value) if is_literal else None
                if problem:
                    yield f"open_between(): {problem}"
            if days is not None:
                is_literal, value = _literal(days)
                problem = days_problem(value) if is_literal else None
                if problem:
                    yield f"open_between(): {problem}"
        else:
            for argument in call.args:
                is_literal, value = _literal(argument)
                if is_literal and (not isinstance(value, str) or not re.search(r"\w", value)):
                    yield (f"{name}(): {value!r} is not a word or phrase to listen for; "
                           f"quote words: {name}('billing', 'invoice')")


@cache
def _time_zones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def time_zone(context: FlowContext) -> Iterator[Problem]:
    """An error for a `timezone` that is not an IANA time zone name (the call would run on
    UTC), suggesting the closest one."""
    data = context.document.data
    if "timezone" not in data:
        return
    name = context.flow.timezone
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        yield context.document.problem(
            ("timezone",), f"timezone: unknown time zone {name!r}"
                           f"{did_you_mean(name, _time_zones())}; use an IANA name such as "
                           f"America/New_York, Europe/London or UTC")


def known_vars(flow: Flow) -> dict[str, object]:
    """The `vars` templates may read: the flow's, and those its http nodes `save`."""
    saved = {name: None for node in flow.nodes.values() if isinstance(node, HttpNode)
             for name in node.save}
    return {**saved, **flow.vars}


def templates(context: FlowContext) -> Iterator[Problem]:
    """An error for every template or condition of the flow that does not parse, reads an
    unknown name or an undefined `vars.*`, and for every `vars.*` a personality it uses reads
    that the flow does not define.
    """
    allowed = CONTEXT_NAMES | HELPERS
    for path, text, is_condition in _template_fields(context.flow, context.document):
        yield from check_template(context.document, path, text, is_condition,
                                  known_vars(context.flow), allowed)
    for name in context.flow.personalities_used():
        personality = context.personalities.get(name)
        if personality is None:
            continue
        try:
            _, var_names = _names_used(parse_template(personality.system_prompt))
        except TemplateSyntaxError:
            continue  # reported against the personality file
        for var_name in sorted(var_names - set(context.flow.vars)):
            yield context.document.problem(
                ("personality",), f"personality '{name}' uses vars.{var_name}, which this flow "
                                  f"does not define under `vars`")


def transfer_targets(context: FlowContext) -> Iterator[Problem]:
    """An error for every transfer `to` that is not an E.164 number, a `sip:` address, or a
    `{{ vars.x }}` whose value is one (an undefined var is left to the template check).
    """
    for node in context.flow.nodes.values():
        if not isinstance(node, TransferNode):
            continue
        target, path = node.to.strip(), ("nodes", node.id, "to")
        template = VAR_TEMPLATE.match(target)
        if template:
            value = context.flow.vars.get(template.group(1))
            if value is None:
                continue  # reported by the template check
            target = str(value).strip()
        if not (PHONE_NUMBER.match(target) or SIP_ADDRESS.match(target)):
            yield context.document.problem(
                path, f"nodes.{node.id}.to: {target!r} is not a phone number in E.164 form "
                      f"(+15550001111), a SIP address (sip:desk@example.com), or a template "
                      f"of one var ({{{{ vars.front_desk }}}})")


def analysis_fields(context: FlowContext) -> Iterator[Problem]:
    """An error for every analysis field with an `enum` that is not a string field: the model
    is asked for one of the listed words, which only a string can be."""
    analysis = context.flow.analysis
    for field in analysis.fields if analysis is not None else ():
        if field.enum and field.type != "string":
            path: KeyPath = ("analysis", "fields", field.name, "enum")
            yield context.document.problem(
                path, f"analysis.fields.{field.name}.enum: only a string field takes an enum "
                      f"(this one is {field.type}); write type: string, or drop the enum",
                at_key=True)


_BRACED = re.compile(r"\$\{([^}]*)\}")


def _request_texts(request: Request, base: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """(path, text) of every template of a request: its URL, header values, body strings."""
    yield (*base, "url"), request.url
    for name, value in request.headers.items():
        yield (*base, "headers", name), value

    def strings(value: object, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
        if isinstance(value, str):
            yield path, value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from strings(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from strings(item, (*path, index))

    yield from strings(request.body, (*base, "body"))


def requests_of(flow: Flow) -> Iterator[tuple[KeyPath, Request, bool]]:
    """(path, request, is_tool) of every request the flow declares: http nodes' and tools'."""
    for node in flow.nodes.values():
        if isinstance(node, HttpNode):
            yield ("nodes", node.id, "request"), node.request, False
        elif isinstance(node, AiNode):
            for tool in node.tools:
                yield ("nodes", node.id, "tools", tool.name, "request"), tool.request, True


def secret_names(flow: Flow) -> list[str]:
    """The environment variables the flow's requests read as `${NAME}`, sorted, each once."""
    return sorted({name for _, request, _ in requests_of(flow)
                   for _, text in _request_texts(request, ())
                   for name in REFERENCE.findall(text)})


def http_requests(context: FlowContext) -> Iterator[Problem]:
    """An error for every request template that does not parse or reads an unknown name (a
    tool's may read `args`, the model's arguments), every `${...}` that is not `${NAME}`, every
    `save` that is not a JSONPath, and every tool whose `parameters` are not JSON Schema or whose
    name is one of its node's exits."""
    document = context.document
    allowed = CONTEXT_NAMES | HELPERS
    for base, request, is_tool in requests_of(context.flow):
        for path, text in _request_texts(request, base):
            for found in _BRACED.finditer(text):
                if not REFERENCE.fullmatch(found.group(0)):
                    yield document.problem(path, f"{dotted(path)}: {found.group(0)!r} is not an "
                                                 f"environment variable; write ${{NAME}} with "
                                                 f"letters, digits and _ (${{CLINIC_API_TOKEN}})")
            yield from check_template(document, path, text, False, known_vars(context.flow),
                                      allowed | {"args"} if is_tool else allowed)
    for node in context.flow.nodes.values():
        if isinstance(node, HttpNode):
            for name, expression in node.save.items():
                problem = path_problem(expression)
                if problem:
                    where: KeyPath = ("nodes", node.id, "save", name)
                    yield document.problem(where, f"{dotted(where)}: {expression!r} is not a "
                                                  f"JSONPath: {problem}")
        if not isinstance(node, AiNode):
            continue
        exits = {exit_.to for exit_ in node.exits}
        for tool in node.tools:
            path = ("nodes", node.id, "tools", tool.name)
            if tool.name in exits:
                yield document.problem(path, f"{dotted(path)}: a tool cannot share its name with "
                                             f"an exit of the node; rename the tool", at_key=True)
            unknown = sorted(set(tool.optional) - set(tool.parameters))
            if unknown:
                yield document.problem((*path, "optional"), f"{dotted(path)}.optional: "
                                       f"'{unknown[0]}' is not one of its parameters")
            try:
                Draft202012Validator.check_schema(tool.schema())
            except SchemaError as error:
                yield document.problem((*path, "parameters"), f"{dotted(path)}.parameters: not "
                                       f"JSON Schema: {error.message}")


def machine_edge(context: FlowContext) -> Iterator[Problem]:
    """The `machine` edge (`on_machine`) leads to a voicemail drop: an error when it leads back
    to `start` (the machine would hear the greeting meant for a person again), a warning when
    its node listens (a machine does not answer; the call waits out the silence)."""
    flow = context.flow
    for edge in flow.edges:
        if edge.kind != "machine" or edge.target not in flow.nodes:
            continue
        target = flow.nodes[edge.target]
        if edge.target == flow.start:
            yield context.at_edge(edge, f"on_machine: '{edge.target}' is the start node; name "
                                        f"the node that leaves the message for a machine")
        elif target.listens:
            yield context.at_edge(edge, f"on_machine: '{edge.target}' is a {target.type} node, "
                                        f"which waits for an answer a machine never gives; lead "
                                        f"to a say or hangup node that leaves the message",
                                  severity="warning")


def http_error_loops(context: FlowContext) -> Iterator[Problem]:
    """An error for every http node whose error edge leads back to it through nodes that wait
    for nothing (say, switch, http): with the API down the call would go round that loop, one
    request and one line after another, for as long as the caller stays on the line."""
    flow = context.flow
    passing = [edge for edge in flow.edges
               if isinstance(flow.nodes.get(edge.source), SayNode | SwitchNode | HttpNode)]
    for edge in flow.edges:
        if edge.kind != "error:http" or edge.strategy or edge.target not in flow.nodes:
            continue
        if edge.source in _reachable(flow, passing, edge.target):
            yield context.at_edge(edge, f"nodes.{edge.source}.on_error.http.then: leads back to "
                                        f"'{edge.source}' without the caller being asked "
                                        f"anything, so an API that stays down keeps the call in "
                                        f"that loop; use `retry` for another try, and lead "
                                        f"`then` to a node that listens, transfers or hangs up")


FLOW_CHECKS: tuple[Callable[[FlowContext], Iterable[Problem]], ...] = (
    unknown_targets, unknown_personalities, unreachable_nodes, dead_ends,
    unbounded_no_input_loops, ai_error_edges, templates, transfer_targets, time_zone,
    analysis_fields, http_requests, http_error_loops, machine_edge,
)


def check_flow(context: FlowContext) -> list[Problem]:
    """Every problem `FLOW_CHECKS` find in one flow, in check order."""
    return [problem for check in FLOW_CHECKS for problem in check(context)]


def duplicate_numbers(flows: Mapping[str, tuple[Flow, Document]]) -> Iterator[Problem]:
    """A number may route to one flow only: every later claim names the first one's flow,
    file and line."""
    owners: dict[str, tuple[str, str, int]] = {}
    for flow_id in sorted(flows):
        flow, document = flows[flow_id]
        for index, number in enumerate(flow.numbers):
            if number in owners:
                owner, path, line = owners[number]
                yield document.problem(("numbers", index),
                                       f"numbers[{index}]: {number} is already claimed by flow "
                                       f"'{owner}' ({path}:{line}); a number can route to one "
                                       f"flow only")
            else:
                owners[number] = (flow_id, document.path, document.mark(("numbers", index)).line)


def personality_fallbacks(personalities: Mapping[str, tuple[Personality, Document]]
                          ) -> Iterator[Problem]:
    """Problems of the personalities as a set: a `fallback` naming an unknown personality,
    and a `system_prompt` that does not parse or reads names other than `vars`.
    """
    known = sorted(personalities)
    for _, (personality, document) in sorted(personalities.items()):
        if personality.fallback and personality.fallback not in personalities:
            yield document.problem(("fallback",), f"fallback: unknown personality "
                                                  f"'{personality.fallback}'"
                                                  f"{did_you_mean(personality.fallback, known)}")
        yield from check_template(document, ("system_prompt",), personality.system_prompt,
                                  False, None, frozenset({"vars"}))
