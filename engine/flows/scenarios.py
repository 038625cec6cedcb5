"""Scenario files (`flows/<flow>.test.yaml`): read, check and compile them into plain values.

The same steps as the flow loader: read YAML with marks, check `schemas/scenario.schema.json`,
compile to frozen dataclasses, then check what the scenarios name against the flows (the flow
itself, nodes, exits, vars), each problem at its file and line. Running them is
`engine.authoring.runner`'s job; this module does no I/O beyond reading the files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.flows.checks import known_vars
from engine.flows.loader import SCENARIO_SUFFIX, display_path
from engine.flows.model import AiNode, Flow, frozen_mapping
from engine.flows.problems import Problem
from engine.flows.schema import check_schema, did_you_mean
from engine.flows.yamlread import Document, KeyPath, dotted, read_file
from engine.runtime.state import Caller

ACTIONS = ("say", "press", "silence", "dial", "record", "hangup", "interrupt")
"""What a caller can do in one step; a step does at most one of them (`interrupt`: on a
ConversationRelay call only)."""

DEFAULT_AT = "2026-03-04T10:00:00"
"""When a scenario without `at` rings: a Wednesday morning, fixed so that a scenario never
depends on the day it runs."""

DEFAULT_CALLER = "+15551230000"

STATE_NAMES = ("personality", "status", "silences", "pending")
"""Call state fields an `expect.vars` name may read besides the template context."""

CONTEXT_NAMES = ("speech", "digits", "confidence", "caller", "vars", "turn", "now", "node",
                 "call", "sentiment", "sentiment_avg", "sentiment_trend", "language",
                 "detected_language", *STATE_NAMES)


@dataclass(frozen=True)
class ModelScript:
    """One answer of the scripted model: a reply and/or exit, or an error of a flow kind."""

    reply: str = ""
    exit: str | None = None
    error: str | None = None
    retry_after: float = 0.0
    detail: str = ""
    tool: str | None = None  # the model calls this tool of the node, with `args`
    args: Mapping[str, Any] = field(default_factory=frozen_mapping)

    def describe(self) -> str:
        """`reply 'Hello' and exit goodbye`, `error network`, `tool find_slots`: the entry as
        one phrase for failure messages.
        """
        if self.error:
            return f"error {self.error}"
        if self.tool:
            return f"tool {self.tool}"
        text = f"reply {self.reply!r}" if self.reply else ""
        return " and ".join(part for part in (text, f"exit {self.exit}" if self.exit else "")
                            if part)


@dataclass(frozen=True)
class HttpScript:
    """One answer of the scripted API: a status and its JSON, or a failure of the request
    (`error`: one of engine.actions.exchange.Reason but `status`)."""

    status: int = 200
    json: Any = None
    error: str | None = None
    detail: str = ""

    def describe(self) -> str:
        """`status 200`, `error timeout`: the entry as one phrase for failure messages."""
        return f"error {self.error}" if self.error else f"status {self.status}"


@dataclass(frozen=True)
class Expect:
    """What a step expects once its action is answered; a field left unset is not checked."""

    heard: tuple[str, ...] = ()
    heard_matches: str | None = None
    node: str | None = None
    transfer: str | None = None
    hangup: bool | None = None
    vars: Mapping[str, Any] = field(default_factory=frozen_mapping)
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One step of a scenario: at most one caller action, the model's scripted answers, and
    what must hold afterwards.
    """

    number: int  # 1-based, in the order of the file
    line: int
    action: str | None  # one of ACTIONS, or None: only checks (or the call ringing in)
    value: Any = None
    wait: float = 0.0
    model: tuple[ModelScript, ...] = ()
    expect: Expect = field(default_factory=Expect)
    http: tuple[HttpScript, ...] = ()

    def action_text(self) -> str:
        """`say 'Can I talk to a person?'`, `dial no-answer`, `silence`, ..."""
        if self.action is None:
            return "ring" if self.number == 1 else "check"  # see Scenario.rings_with_first_step
        if self.action in ("silence", "hangup"):
            return self.action
        if self.action in ("say", "interrupt"):
            return f"{self.action} {self.value!r}"
        return f"{self.action} {self.value}"

    def describe(self) -> str:
        """`step 2 (say 'Can I talk to a person?')`."""
        return f"step {self.number} ({self.action_text()})"


ANALYSIS_STATUSES = ("ok", "failed", "offline", "empty")


@dataclass(frozen=True)
class AnalysisScript:
    """A scenario's post-call analysis: the model's answers (`model`: JSON objects or texts,
    in order; `scripted` False means the offline analysis) and what the result must hold
    (each `None` not checked; `fields` only the names given)."""

    line: int
    model: tuple[Any, ...] = ()
    scripted: bool = False
    status: str | None = None
    summary: str | None = None
    fields: Mapping[str, Any] = field(default_factory=frozen_mapping)
    reason: str | None = None

    def check(self, result: Mapping[str, Any]) -> list[str]:
        """What differs between the stored analysis `result` and this script's expectations."""
        problems: list[str] = []
        if self.status is not None and result.get("status") != self.status:
            why = f" ({result.get('reason')})" if result.get("reason") else ""
            problems.append(f"expected the analysis to be {self.status}; it is "
                            f"{result.get('status')}{why}")
        summary = str(result.get("summary") or "")
        if self.summary is not None and self.summary.lower() not in summary.lower():
            problems.append(f"expected the analysis summary to contain {self.summary!r}; it "
                            f"is {summary or 'empty'!r}")
        reason = str(result.get("reason") or "")
        if self.reason is not None and self.reason.lower() not in reason.lower():
            problems.append(f"expected the analysis reason to contain {self.reason!r}; it is "
                            f"{reason or 'empty'!r}")
        found = result.get("fields") or {}
        for name, wanted in self.fields.items():
            if found.get(name) != wanted:
                problems.append(f"expected analysis field {name} = {wanted!r}; it is "
                                f"{found.get(name)!r}")
        return problems


@dataclass(frozen=True)
class Scenario:
    """One scripted call: who calls whom, when, with which `vars`, and its steps in order."""

    name: str
    line: int
    at: datetime  # naive: local time in the flow's timezone; aware when `at` had an offset
    caller: str
    called: str | None
    vars: Mapping[str, Any]
    steps: tuple[Step, ...]
    analysis: AnalysisScript | None = None  # checked once the call has ended
    answered_by: str = ""  # an outbound call's AnsweredBy on its first webhook; '': none

    @property
    def rings_with_first_step(self) -> bool:
        """A first step without a caller action is the call ringing in."""
        return bool(self.steps) and self.steps[0].action is None


@dataclass(frozen=True)
class ScenarioFile:
    """The compiled scenarios of one `flows/<flow>.test.yaml`."""

    path: str  # as shown in messages
    flow_id: str
    scenarios: tuple[Scenario, ...]
    min_coverage: float | None = None  # percent of edges to take; None: the command's flag


@dataclass
class ScenarioLoad:
    """What `load_scenarios` found: the files that compiled, every problem (sorted, no
    duplicates), and the paths read, as shown in messages.
    """

    files: list[ScenarioFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def is_scenario_file(path: Path) -> bool:
    """Whether `path` names a scenario file (ends in `.test.yaml`); the file is not read."""
    return path.name.endswith(SCENARIO_SUFFIX)


def scenario_files(paths: Iterable[Path]) -> list[Path]:
    """The scenario files among `paths`: given ones, and those inside given directories."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and is_scenario_file(p))
        elif is_scenario_file(path):
            found.append(path)
    return found


def flow_of(path: Path) -> str:
    """The flow id a scenario file's name stands for: `receptionist.test.yaml` -> `receptionist`."""
    return path.name.removesuffix(SCENARIO_SUFFIX)


# -- compile (the document passed its schema) --------------------------------------------------

def _model(raw: Any) -> tuple[ModelScript, ...]:
    entries = raw if isinstance(raw, list) else [raw] if raw is not None else []
    return tuple(ModelScript(reply=entry.get("reply", ""), exit=entry.get("exit"),
                             error=entry.get("error"),
                             retry_after=float(entry.get("retry_after", 0.0)),
                             detail=entry.get("detail", ""), tool=entry.get("tool"),
                             args=frozen_mapping(entry.get("args", {}))) for entry in entries)


def _http(raw: Any) -> tuple[HttpScript, ...]:
    entries = raw if isinstance(raw, list) else [raw] if raw is not None else []
    return tuple(HttpScript(status=int(entry.get("status", 200)), json=entry.get("json"),
                            error=entry.get("error"), detail=entry.get("detail", ""))
                 for entry in entries)


def _expect(raw: Mapping[str, Any]) -> Expect:
    heard = raw.get("heard", ())
    return Expect(heard=(heard,) if isinstance(heard, str) else tuple(heard),
                  heard_matches=raw.get("heard_matches"), node=raw.get("node"),
                  transfer=raw.get("transfer"), hangup=raw.get("hangup"),
                  vars=frozen_mapping(raw.get("vars", {})), events=tuple(raw.get("events", ())))


def _step(number: int, raw: Mapping[str, Any], line: int) -> Step:
    action = next((name for name in ACTIONS if name in raw), None)
    return Step(number=number, line=line, action=action,
                value=raw.get(action) if action else None, wait=float(raw.get("wait", 0)),
                model=_model(raw.get("model")), expect=_expect(raw.get("expect", {})),
                http=_http(raw.get("http")))


def _analysis(raw: Mapping[str, Any] | None, line: int) -> AnalysisScript | None:
    if raw is None:
        return None
    model = raw.get("model")
    expect = raw.get("expect", {})
    return AnalysisScript(line=line, model=tuple(model if isinstance(model, list) else
                                                 [model] if model is not None else []),
                          scripted=model is not None, status=expect.get("status"),
                          summary=expect.get("summary"),
                          fields=frozen_mapping(expect.get("fields", {})),
                          reason=expect.get("reason"))


def _at(text: str | None) -> datetime:
    return datetime.fromisoformat((text or DEFAULT_AT).replace("Z", "+00:00"))


def compile_scenarios(document: Document) -> ScenarioFile:
    """Compile a schema-valid scenario document (checked with `check_scenarios` first)."""
    scenarios = []
    for index, raw in enumerate(document.data["scenarios"]):
        base: KeyPath = ("scenarios", index)
        scenarios.append(Scenario(
            name=raw["name"], line=document.mark(base).line, at=_at(raw.get("at")),
            caller=raw.get("from", DEFAULT_CALLER), called=raw.get("to"),
            vars=frozen_mapping(raw.get("vars", {})),
            answered_by=raw.get("answered_by", ""),
            steps=tuple(_step(at + 1, step, document.mark((*base, "steps", at)).line)
                        for at, step in enumerate(raw["steps"])),
            analysis=_analysis(raw.get("analysis"), document.key_mark(
                (*base, "analysis")).line if "analysis" in raw else 0)))
    minimum = document.data.get("min_coverage")
    return ScenarioFile(document.path, document.data["flow"], tuple(scenarios),
                        None if minimum is None else float(minimum))


# -- checks: each reports every offender -------------------------------------------------------

def _steps(document: Document) -> Iterator[tuple[KeyPath, Mapping[str, Any]]]:
    for index, scenario in enumerate(document.data["scenarios"]):
        for number, step in enumerate(scenario["steps"]):
            yield ("scenarios", index, "steps", number), step


def _model_entries(step: Mapping[str, Any], path: KeyPath
                   ) -> Iterator[tuple[KeyPath, Mapping[str, Any]]]:
    raw = step.get("model")
    if isinstance(raw, list):
        yield from (((*path, "model", i), entry) for i, entry in enumerate(raw))
    elif raw is not None:
        yield (*path, "model"), raw


_KEYS_SPOKEN = re.compile(r"^\s*#?[0-9*#]+\s*$")
"""A `say:` that looks like key presses (`#2`, `1`, `*9#`): as in `flask call`'s `#1`."""


def _shape(document: Document) -> Iterator[Problem]:
    """What the schema cannot say well: one action a step, model entries that make sense."""
    names: dict[str, int] = {}
    for index, scenario in enumerate(document.data["scenarios"]):
        name = scenario["name"]
        if name in names:
            yield document.problem(("scenarios", index, "name"),
                                   f"scenarios[{index}].name: duplicate scenario name {name!r} "
                                   f"(first on line {names[name]}); give each a name of its own")
        names.setdefault(name, document.mark(("scenarios", index, "name")).line)
        if "at" in scenario:
            try:
                _at(scenario["at"])
            except ValueError as error:
                yield document.problem(("scenarios", index, "at"),
                                       f"scenarios[{index}].at: {error}")
    for path, step in _steps(document):
        spoken = step.get("say")
        if isinstance(spoken, str) and _KEYS_SPOKEN.match(spoken):
            keys = spoken.strip().removeprefix("#") or spoken.strip()
            yield document.problem((*path, "say"), f"{dotted((*path, 'say'))}: {spoken!r} is "
                                   f"said, not pressed: the caller speaks these characters; to "
                                   f"press keys write press: \"{keys}\"", severity="warning")
        actions = [name for name in ACTIONS if name in step]
        if len(actions) > 1:
            yield document.problem((*path, actions[1]), f"{dotted(path)}: a step does one thing; "
                                   f"this one has {' and '.join(actions)}: split it in two steps",
                                   at_key=True)
        for where, entry in _model_entries(step, path):
            if not any(key in entry for key in ("reply", "exit", "error", "tool")):
                yield document.problem(where, f"{dotted(where)}: say what the model does: "
                                              "reply, exit, tool or error")
            if "tool" in entry and any(key in entry for key in ("reply", "exit", "error")):
                yield document.problem(where, f"{dotted(where)}: a tool entry is the call alone; "
                                              "script what the model says next as the next entry")
            if "args" in entry and "tool" not in entry:
                yield document.problem((*where, "args"), f"{dotted(where)}.args: only a `tool` "
                                       "entry has arguments", at_key=True)
            if "error" in entry and ("reply" in entry or "exit" in entry):
                yield document.problem(where, f"{dotted(where)}: an error entry cannot also "
                                              "reply or exit; script the reply as the next entry")
            if "retry_after" in entry and entry.get("error") != "rate_limit":
                yield document.problem((*where, "retry_after"), f"{dotted(where)}.retry_after: "
                                       "only an `error: rate_limit` entry waits", at_key=True)
        http = step.get("http")
        for index, entry in enumerate(http if isinstance(http, list) else [http] if http else []):
            where = (*path, "http", index) if isinstance(http, list) else (*path, "http")
            if "error" in entry and ("status" in entry or "json" in entry):
                yield document.problem(where, f"{dotted(where)}: an error entry has no status "
                                              "or json; script the answer as the next entry")
        pattern = step.get("expect", {}).get("heard_matches")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as error:
                where = (*path, "expect", "heard_matches")
                yield document.problem(where, f"{dotted(where)}: not a valid regular "
                                              f"expression: {error}")


def _references(document: Document, flow: Flow) -> Iterator[Problem]:
    """Nodes, exits and vars the scenarios name must exist in the flow."""
    nodes = list(flow.nodes)
    exits = sorted({exit_.to for node in flow.nodes.values() if isinstance(node, AiNode)
                    for exit_ in node.exits})
    tools = sorted({tool.name for node in flow.nodes.values() if isinstance(node, AiNode)
                    for tool in node.tools})
    for index, scenario in enumerate(document.data["scenarios"]):
        for name in scenario.get("vars", {}):
            if name not in flow.vars:
                where: KeyPath = ("scenarios", index, "vars", name)
                yield document.problem(where, f"{dotted(where)}: flow '{flow.id}' has no var "
                                       f"'{name}'{did_you_mean(name, list(flow.vars))}",
                                       at_key=True)
    for index, scenario in enumerate(document.data["scenarios"]):
        yield from _analysis_references(document, flow, index, scenario.get("analysis"))
    for path, step in _steps(document):
        node = step.get("expect", {}).get("node")
        if node is not None and node not in flow.nodes:
            where = (*path, "expect", "node")
            yield document.problem(where, f"{dotted(where)}: flow '{flow.id}' has no node "
                                          f"'{node}'{did_you_mean(node, nodes)}")
        for name in step.get("expect", {}).get("vars", {}):
            problem = _context_name(str(name), flow)
            if problem:
                where = (*path, "expect", "vars", name)
                yield document.problem(where, f"{dotted(where)}: {problem}", at_key=True)
        for where, entry in _model_entries(step, path):
            tool = entry.get("tool")
            if tool is not None and tool not in tools:
                yield document.problem((*where, "tool"), f"{dotted(where)}.tool: no ai node of "
                                       f"flow '{flow.id}' has a tool '{tool}'"
                                       f"{did_you_mean(tool, tools)}; its tools: "
                                       f"{', '.join(tools) or 'none'}")
            target = entry.get("exit")
            if target is None or target in exits:
                continue
            if target not in flow.nodes:
                message = f"flow '{flow.id}' has no node '{target}'{did_you_mean(target, nodes)}"
            else:
                message = (f"no ai node of flow '{flow.id}' has an exit to '{target}'; its "
                           f"exits: {', '.join(exits) or 'none'}")
            yield document.problem((*where, "exit"), f"{dotted(where)}.exit: {message}")


def _analysis_references(document: Document, flow: Flow, index: int,
                         raw: Mapping[str, Any] | None) -> Iterator[Problem]:
    """A scripted analysis needs a flow that declares one, and names only its fields."""
    if raw is None:
        return
    where: KeyPath = ("scenarios", index, "analysis")
    if flow.analysis is None:
        yield document.problem(where, f"{dotted(where)}: flow '{flow.id}' declares no "
                                      f"analysis; add `analysis:` to the flow or remove this",
                               at_key=True)
        return
    known = [item.name for item in flow.analysis.fields]
    for name in raw.get("expect", {}).get("fields", {}):
        if name not in known:
            path = (*where, "expect", "fields", name)
            yield document.problem(path, f"{dotted(path)}: the analysis of flow '{flow.id}' has "
                                         f"no field '{name}'{did_you_mean(name, known)}; its "
                                         f"fields: {', '.join(known) or 'none'}", at_key=True)


def _context_name(name: str, flow: Flow) -> str | None:
    first, _, rest = name.partition(".")
    if first not in CONTEXT_NAMES:
        return (f"unknown name '{first}'{did_you_mean(first, CONTEXT_NAMES)}; "
                f"use one of: {', '.join(CONTEXT_NAMES)}")
    name = rest.partition(".")[0]
    known = known_vars(flow)  # the flow's, and those its http nodes save
    if first == "vars" and name not in known:
        return f"flow '{flow.id}' has no var '{name}'{did_you_mean(name, list(known))}"
    fields = [spec.name for spec in dataclasses.fields(Caller)]
    if first == "caller" and rest and name not in fields:
        return (f"the caller has no '{name}'{did_you_mean(name, fields)}; "
                f"use one of: {', '.join(fields)}")
    return None


def check_scenarios(document: Document, flows: Mapping[str, Flow] | None,
                    file_name: str, complete: bool = True) -> list[Problem]:
    """Every problem of one scenario document; `flows` None skips the reference checks.
    `complete` False says `flows` lacks the flows that do not load: a flow missing from it is
    then not checked (a warning), rather than unknown."""
    problems = check_schema(document, "scenario")
    if problems:
        return problems
    flow_id = document.data["flow"]
    expected = file_name.removesuffix(SCENARIO_SUFFIX)
    if flow_id != expected:
        problems.append(document.problem(("flow",), f"flow: '{flow_id}' differs from the file "
                                         f"name '{file_name}'; scenarios for flow '{flow_id}' "
                                         f"go in flows/{flow_id}{SCENARIO_SUFFIX}"))
    problems += _shape(document)
    if flows is None:
        problems.append(document.problem(("flow",), "flow: the flows do not load, so the "
                                         "nodes and exits named here were not checked",
                                         severity="warning"))
    elif flow_id not in flows and not complete:
        problems.append(document.problem(("flow",), f"flow: flow '{flow_id}' does not load, so "
                                         "the nodes and exits named here were not checked",
                                         severity="warning"))
    elif flow_id not in flows:
        problems.append(document.problem(("flow",), f"flow: unknown flow '{flow_id}'"
                                         f"{did_you_mean(flow_id, list(flows))}; known flows: "
                                         f"{', '.join(sorted(flows)) or 'none'}"))
    else:
        problems += _references(document, flows[flow_id])
    return sorted(set(problems))


def load_scenarios(paths: Iterable[Path], flows: Mapping[str, Flow] | None,
                   root: Path | None = None, complete: bool = True) -> ScenarioLoad:
    """Read, check and compile scenario files; a file with errors is not compiled.
    `complete` as for `check_scenarios`."""
    result = ScenarioLoad()
    for path in paths:
        shown = display_path(path, root)
        result.paths.append(shown)
        document, problems = read_file(path, shown)
        if document is not None and not problems:
            problems = check_scenarios(document, flows, path.name, complete)
        result.problems += problems
        if document is not None and not any(p.severity == "error" for p in problems):
            result.files.append(compile_scenarios(document))
    result.problems = sorted(set(result.problems))
    return result
