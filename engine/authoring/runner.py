"""Run scenario files through the real app: `create_app`, signed webhooks, the call simulator.

Each flow file gets its own app on a fresh SQLite store in a temporary directory, with a
scripted model (`engine.ai.scripted`) and a clock that starts at the scenario's `at` and moves
only when Twilio would wait (a `<Pause>`) or a step says `wait`. A call on a ConversationRelay
node talks over a real WebSocket to the same app, served on a local port
(`engine.authoring.relay_caller`): `say`, `press`, `interrupt`, `silence` and `hangup` go over
it, and its steps wait until the session has answered. A scenario that changes the
flow's `vars` runs on a copy of the project with those vars written in, so it still goes through
the loader like any edit would. A scenario is one call; its first failing step ends it, and the
failure names the file and line, the scenario, the step and what differed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import secrets
import shutil
import tempfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask

from engine.actions.scripted import ScriptedHttp
from engine.ai.scripted import (
    ScriptedResponder,
    SpeechFailures,
    Unscripted,
    scripted_voicing,
)
from engine.ai.scripted_analysis import run_scripted_analysis
from engine.ai.tools import ToolRunner
from engine.authoring.relay_caller import RelayCaller
from engine.authoring.run_errors import template_failures
from engine.authoring.transports import LocalServer, app_transport
from engine.calls.test_calls import mark_test_call
from engine.flows.coverage import Coverage
from engine.flows.model import Flow
from engine.flows.scenarios import Expect, Scenario, ScenarioFile, Step
from engine.flows.yamlread import read_file
from engine.relay.simulator import RelayError
from engine.runtime.context import values
from engine.runtime.state import CallState
from engine.settings import ENV_KEYS, Settings
from engine.simulator import CallError, HttpAnswer, SimulatedCall, Transport
from engine.store import CallStore, StoredEvent
from engine.web.services import AppFactory, Services

BASE_URL = "http://localhost"
DEFAULT_CALLED = "+15550001000"
LOG_LINES = 5
"""Log lines of the engine kept with a failure (the rest is noise once the step is named)."""

RELAY_ACTIONS = ("say", "press", "interrupt", "silence", "hangup")
"""What a caller does on a relay session; a transfer or recording outcome is not one."""

_WAITING = {
    "gather": "is waiting for the caller to speak or press keys",
    "dial": "is dialing a transfer (script its outcome with `dial: ...`)",
    "record": "is recording (script it with `record: SECONDS`)",
    "relay": "is in a ConversationRelay session (the caller can say, press, interrupt, stay "
             "silent or hang up)",
    "ended": "has ended",
    "idle": "has not started",
}


class StepFailed(Exception):
    """A step did not go as scripted; `line` is the step's line in the scenario file."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


class ScenarioClock:
    """The calls' `now`: set from a scenario's `at`, moved by pauses and waits only."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move `now` forward by `seconds`."""
        self.now += seconds


def epoch(moment: datetime, timezone: str) -> float:
    """A scenario's `at` (local to the flow unless it carries an offset) in epoch seconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.timestamp()


def paused_seconds(twiml: str) -> float:
    """How long Twilio would pause while playing an answer (`<Pause length>`, default 1)."""
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError:
        return 0.0
    return float(sum(int(pause.get("length", "1") or 1) for pause in root.iter("Pause")))


@dataclass
class Harness:
    """One app and the scripted parts its scenarios share."""

    app: Flask
    clock: ScenarioClock
    responder: ScriptedResponder
    speech: SpeechFailures
    token: str
    http: ScriptedHttp = field(default_factory=ScriptedHttp)
    local: LocalServer = field(init=False)

    def __post_init__(self) -> None:
        self.local = LocalServer(self.app)  # relay WebSockets; started by the first session

    @property
    def services(self) -> Services:
        """The app's `Services` (store, flow library, ...), from `app.extensions['phoney']`."""
        found: Services = self.app.extensions["phoney"]
        return found

    def flow(self, flow_id: str) -> Flow | None:
        """The live flow `flow_id`, or None when it does not exist or the library did not load."""
        library = self.services.library
        return library.live.flows.get(flow_id) if library.ok else None

    def transport(self) -> Transport:
        """A transport into the app that moves the clock on by every `<Pause>` of each answer,
        as Twilio would play it before posting again.
        """
        post = app_transport(self.app)

        def timed(url: str, params: Mapping[str, str],
                  headers: Mapping[str, str]) -> HttpAnswer:
            answer = post(url, params, headers)
            self.clock.advance(paused_seconds(answer.body))  # Twilio plays the pause first
            return answer

        return timed

    def close(self) -> None:
        """Stop serving relay sockets and close the app's store."""
        self.local.close()
        self.services.store.close()


@dataclass
class ScenarioResult:
    """How one scenario went: `failure` (`path:line: what differed`, None when it passed),
    the `call.node` events of its call for coverage, and the engine's warnings while it ran.
    """

    path: str
    flow_id: str
    scenario: Scenario
    failure: str | None = None
    node_events: list[dict[str, Any]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    template_failures: list[str] = field(default_factory=list)  # see engine.authoring.run_errors

    @property
    def passed(self) -> bool:
        """True when no step failed."""
        return self.failure is None

    def lines(self) -> list[str]:
        """`PASS flow: name`, or FAIL with the detail (and the engine's log) indented."""
        head = f"{'PASS' if self.passed else 'FAIL'} {self.flow_id}: {self.scenario.name}"
        # A condition that failed while the call ran counts as false, so a scenario may pass
        # by the wrong way: say so either way.
        failed = [f"    ! {line}" for line in self.template_failures]
        if self.passed:
            return [head, *failed]
        detail = [f"    {line}" for line in (self.failure or "").splitlines()]
        log = [f"    log: {line}" for line in self.log[-LOG_LINES:]]
        return [head, *detail, *failed, *log]


@dataclass
class RunReport:
    """What `run_scenarios` gives: every scenario's result, and each chosen flow's edge
    coverage.
    """

    results: list[ScenarioResult] = field(default_factory=list)
    coverage: dict[str, Coverage] = field(default_factory=dict)

    @property
    def failed(self) -> list[ScenarioResult]:
        """The results that did not pass, in run order."""
        return [result for result in self.results if not result.passed]


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, Unscripted):
            return  # the step's failure says it better
        if error is not None:
            line += f" ({type(error).__name__}: {error})"
        self.lines.append(line)


@contextmanager
def captured_engine_log() -> Iterator[_Capture]:
    """Keep the engine's warnings for the report instead of the terminal."""
    logger, capture = logging.getLogger("engine"), _Capture()
    propagate = logger.propagate
    logger.addHandler(capture)
    logger.propagate = False
    try:
        yield capture
    finally:
        logger.removeHandler(capture)
        logger.propagate = propagate


# -- apps ----------------------------------------------------------------------------------------

_DEFAULTS = {spec.name.upper(): spec.default for spec in dataclasses.fields(Settings)
             if spec.default is not dataclasses.MISSING}
"""Each setting's default, by its environment name."""


def make_harness(root: Path, workdir: Path, make_app: AppFactory) -> Harness:
    """An app over the project at `root`, its store in `workdir`, nothing from the environment:
    made by `make_app` (`create_app`) with a scripted model and scripted speech failures as its
    responder and voicing."""
    token = secrets.token_hex(16)
    clock = ScenarioClock()
    # Every setting at its default, whatever the environment says: a blank would not do for a
    # setting that must name something (OIDC_ROLES_CLAIM).
    config: dict[str, Any] = {key: _DEFAULTS.get(key, "") for key in ENV_KEYS}
    config.update(PROJECT_ROOT=str(root), STORE_URL=f"sqlite:///{workdir / 'calls.sqlite3'}",
                  TWILIO_AUTH_TOKEN=token, DASHBOARD_PASSWORD=token, SECRET_KEY=token,
                  DEFAULT_FLOW="receptionist", RELOAD=False, PUBLISHER=False,
                  CALLER_CALL_LIMIT="off")  # every scenario calls from the same number
    responder, speech, http = ScriptedResponder(clock), SpeechFailures(), ScriptedHttp()
    app = make_app(config, clock=clock, responder=responder, voicing=scripted_voicing(speech),
                   http=http)
    harness = Harness(app, clock, responder, speech, token, http)
    responder.tools = ToolRunner(http, harness.services.recorder, clock)  # tool entries
    return harness


def project_with_vars(root: Path, flow_id: str, changes: Mapping[str, Any],
                      workdir: Path) -> Path:
    """A copy of the project's flows and personalities with `changes` made to one flow's vars."""
    target = workdir / "project"
    for folder in ("flows", "personalities"):
        shutil.copytree(root / folder, target / folder)
    path = target / "flows" / f"{flow_id}.yaml"
    document, _ = read_file(path)
    if document is None or not isinstance(document.data, dict):
        raise ValueError(f"cannot read {path} to change its vars")
    document.data["vars"] = {**document.data.get("vars", {}), **changes}
    # JSON is YAML, and writing it keeps every value's type exactly.
    path.write_text(json.dumps(document.data, ensure_ascii=False, indent=1), encoding="utf-8")
    return target


# -- one step ------------------------------------------------------------------------------------

@dataclass
class Outcome:
    """What happened in answer to one step."""

    heard: str
    events: list[StoredEvent]
    reached: list[str]
    dialed: list[str]
    ended: bool
    waiting: str
    state: CallState | None


def _act(call: SimulatedCall, step: Step) -> None:
    if step.action == "say":
        call.say(str(step.value))
    elif step.action == "press":
        call.press(str(step.value))
    elif step.action == "silence":
        call.silence()
    elif step.action == "dial":
        status = "completed" if step.value == "answered" else str(step.value)
        call.dial_ends(status)
    elif step.action == "record":
        call.record(int(step.value))
    elif step.action == "hangup":
        call.hang_up()
    elif step.action == "interrupt":
        raise CallError("only a ConversationRelay session can be talked over; this call "
                        f"waits for {call.waiting.kind}")


TTS_ERROR = "TTS error: speech synthesis failed (a scripted tts_failure)"
"""The `error` the simulated Twilio reports for a scripted tts_failure on a relay call."""


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def interrupt_problem(heard: str, spoken: str | None) -> str | None:
    """Why a caller who talked over `spoken` (the last thing said to them; None: nothing)
    cannot have heard `heard` of it, or None when `heard` is how it began (any case and
    punctuation)."""
    words = _words(heard)
    if not words:
        return None
    if spoken is None:
        return f"the caller cannot have heard {heard!r}: nothing was said to them yet"
    said = _words(spoken)
    if said[:len(words)] != words:
        return (f"the caller cannot have heard {heard!r}: it is not how the last reply began "
                f"({spoken!r})")
    return None


def _heard_text(call: SimulatedCall, since: int) -> str:
    return " ".join(item.text or f"[audio {item.audio_url}]" for item in call.heard[since:])


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


_MISSING = object()


def _lookup(context: Mapping[str, Any], dotted_name: str) -> Any:
    value: Any = context
    for part in dotted_name.split("."):
        if isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        else:
            value = getattr(value, part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def check_expect(expect: Expect, outcome: Outcome, flow: Flow, now: float) -> list[str]:
    """What differed from `expect`, one sentence each; empty when everything held."""
    problems: list[str] = []
    heard = repr(outcome.heard) if outcome.heard else "nothing"
    problems += [f"expected to hear {text!r}; heard {heard}" for text in expect.heard
                 if _normal(text) not in _normal(outcome.heard)]
    if expect.heard_matches and not re.search(expect.heard_matches, outcome.heard):
        problems.append(f"expected what was heard to match /{expect.heard_matches}/; "
                        f"heard {heard}")
    if expect.node and expect.node not in outcome.reached:
        problems.append(f"expected to reach node '{expect.node}'; reached "
                        f"{', '.join(outcome.reached) or 'no node'}")
    if expect.transfer and expect.transfer not in outcome.dialed:
        problems.append(f"expected a transfer to {expect.transfer}; dialed "
                        f"{', '.join(outcome.dialed) or 'nothing'}")
    if expect.hangup is True and not outcome.ended:
        problems.append(f"expected the call to end; it {outcome.waiting}")
    if expect.hangup is False and outcome.ended:
        problems.append("expected the call to go on; it ended")
    if expect.vars:
        problems += _check_vars(expect.vars, outcome.state, flow, now)
    names = [event.name for event in outcome.events]
    problems += [f"expected a {name} event; recorded {', '.join(dict.fromkeys(names))}"
                 for name in expect.events if name not in names]
    return problems


def _check_vars(expected: Mapping[str, Any], state: CallState | None, flow: Flow,
                now: float) -> list[str]:
    if state is None:
        return ["expected vars, but the call has no stored state"]
    context = {**values(flow, state, now), "personality": state.personality,
               "status": state.status, "silences": state.silences, "pending": state.pending}
    problems = []
    for name, wanted in expected.items():
        found = _lookup(context, name)
        if found is _MISSING:
            problems.append(f"expected {name} = {wanted!r}; there is no {name}")
        elif found != wanted:
            problems.append(f"expected {name} = {wanted!r}; it is {found!r}")
    return problems


class ScenarioRun:
    """One scenario: one simulated call, driven step by step."""

    def __init__(self, harness: Harness, flow: Flow, scenario: Scenario) -> None:
        self.harness = harness
        self.flow = flow
        self.scenario = scenario
        harness.clock.now = epoch(scenario.at, flow.timezone)
        harness.responder.clear()
        harness.http.clear()
        harness.speech.pending = 0
        called = scenario.called or (flow.numbers[0] if flow.numbers else DEFAULT_CALLED)
        # An outbound call answered by what the scenario says (Twilio's AnsweredBy).
        placed = {"Direction": "outbound-api", "AnsweredBy": scenario.answered_by} \
            if scenario.answered_by else None
        self.call = SimulatedCall(harness.transport(), BASE_URL, harness.token, to=called,
                                  from_=scenario.caller, clock=harness.clock,  # simulated time
                                  extra=placed)
        self.seen_event = 0
        self.failures: list[str] = []  # template_failures of the call, once it has ended
        self.asked_before = 0
        self.relay = RelayCaller(self.call, address=harness.local.address, store=self.store,
                                 stop_early=self._unscripted)

    def _unscripted(self) -> bool:
        """The model was asked, during the step, for an answer the step does not script: the
        session will not reply (the failure says why)."""
        return any(asked.answered_with is None
                   for asked in self.harness.responder.asked[self.asked_before:])

    @property
    def store(self) -> CallStore:
        """The harness app's call store."""
        return self.harness.services.store

    def ring(self) -> None:
        """Ring the call in, on the scenario's flow (`?flow=`)."""
        self.call.start(f"/api/incoming-call?flow={self.flow.id}")
        services = self.harness.services  # a test call: the dashboard can tell and hide it
        mark_test_call(services.recorder, self.call.call_sid, "scenario",
                       services.call_service.clock())

    def run(self) -> None:
        """Run every step in order, ringing first when the first step has a caller action.
        Raises StepFailed at the first step that does not go as scripted.
        """
        steps = list(self.scenario.steps)
        if not self.scenario.rings_with_first_step:
            self.step(Step(number=0, line=self.scenario.line, action=None), ring=True)
        for index, step in enumerate(steps):
            self.step(step, ring=index == 0 and self.scenario.rings_with_first_step)

    def step(self, step: Step, ring: bool = False) -> None:
        """Carry out one step (or ring, with `ring=True`) after its `wait`, with its model
        answers scripted; then check them all used and its `expect` held.

        Raises StepFailed, naming the step's line, when the caller cannot act now, the model was
        asked for an answer the step does not script (or a scripted one went unused), or an
        expectation did not hold.
        """
        harness = self.harness
        harness.clock.advance(step.wait)
        harness.responder.script(step.model)
        harness.http.script(step.http)
        sent_before = len(harness.http.sent)
        harness.speech.pending = sum(entry.error == "tts_failure" for entry in step.model)
        asked_before, heard_before = len(harness.responder.asked), len(self.call.heard)
        dialed_before = len(self.call.dialed)
        self.asked_before = asked_before
        what = "ring" if ring else step.action_text()
        try:
            if ring:
                self.ring()
            elif self.relay.in_session and step.action in RELAY_ACTIONS:
                self._talk(step)
            else:
                _act(self.call, step)
            self.relay.connect()  # Twilio opens the session as soon as it reads <Connect>
        except CallError as error:
            raise StepFailed(step.line, f"{self._label(step, ring)}: the caller cannot {what} "
                             f"now: the call {_WAITING.get(self.call.waiting.kind, 'is busy')} "
                             f"({error})") from error
        except RelayError as error:
            raise StepFailed(step.line, f"{self._label(step, ring)}: the relay session did "
                             f"not answer as Twilio expects: {error}") from error
        problems = self._model_problems(asked_before) + self._http_problems(sent_before)
        if not problems:
            outcome = self._outcome(heard_before, dialed_before, ring)
            problems = check_expect(step.expect, outcome, self.flow, harness.clock())
        if problems:
            raise StepFailed(step.line, f"{self._label(step, ring)}: " + "; ".join(problems))

    def _talk(self, step: Step) -> None:
        """A step on a relay session: over its socket, then a scripted tts_failure reported
        as Twilio reports one (an `error` about the speech)."""
        if step.action == "say":
            self.relay.say(str(step.value))
        elif step.action == "press":
            self.relay.press(str(step.value))
        elif step.action == "interrupt":
            heard = str(step.value)
            spoken = next((item.text for item in reversed(self.call.heard) if item.text), None)
            problem = interrupt_problem(heard, spoken)
            if problem:
                raise StepFailed(step.line, f"{step.describe()}: {problem}")
            self.relay.interrupt(heard)
        elif step.action == "silence":
            state = self.store.get_state(self.call.call_sid)
            node = self.flow.nodes.get(state.node) if state is not None else None
            self.relay.silence(float(getattr(node, "timeout", 5)))
        elif step.action == "hangup":
            self.call.hang_up()
        if self.harness.speech.pending and self.relay.in_session:
            self.harness.speech.pending -= 1
            self.relay.report_error(TTS_ERROR)

    @staticmethod
    def _label(step: Step, ring: bool) -> str:
        return "the call ringing in" if ring and step.number == 0 else step.describe()

    def _model_problems(self, asked_before: int) -> list[str]:
        harness = self.harness
        problems = [f"the flow asked the model on node '{asked.node}' (the caller said "
                    f"{asked.utterance!r}) but no model answer was scripted for this step; "
                    f"add `model: {{reply: ...}}`" if asked.utterance is not None else
                    f"the flow asked the model to open the conversation on node "
                    f"'{asked.node}' but no answer was scripted for this step"
                    for asked in harness.responder.asked[asked_before:]
                    if asked.answered_with is None]
        unused = harness.responder.unused()
        if unused:
            problems.append(f"{len(unused)} scripted model answer(s) were not used: "
                            f"{', '.join(entry.describe() for entry in unused)} (the flow "
                            f"asked the model {len(harness.responder.asked) - asked_before} "
                            f"time(s) in this step)")
            harness.responder.clear()
        if harness.speech.pending:
            problems.append("a scripted tts_failure was not used: nothing was spoken")
            harness.speech.pending = 0
        return problems

    def _http_problems(self, sent_before: int) -> list[str]:
        http = self.harness.http
        problems = [f"the flow sent {sent.method} {sent.url} but no http answer was scripted "
                    f"for this step; add `http: {{json: ...}}` (or `http: {{error: timeout}}`)"
                    for sent in http.sent[sent_before:] if sent.answered_with is None]
        unused = http.unused()
        if unused:
            problems.append(f"{len(unused)} scripted http answer(s) were not used: "
                            f"{', '.join(entry.describe() for entry in unused)} (the flow sent "
                            f"{len(http.sent) - sent_before} request(s) in this step)")
            http.clear()
        return problems

    def _outcome(self, heard_before: int, dialed_before: int, ring: bool) -> Outcome:
        call_sid = self.call.call_sid
        events = self.store.events_after(self.seen_event, call_sid, limit=10_000)
        if events:
            self.seen_event = events[-1].id
        state = self.store.get_state(call_sid)
        reached = [self.flow.start] if ring else []
        reached += [str(event.data.get("node")) for event in events if event.name == "call.node"]
        if state is not None:
            reached.append(state.node)
        return Outcome(heard=_heard_text(self.call, heard_before), events=events,
                       reached=list(dict.fromkeys(reached)),
                       dialed=self.call.dialed[dialed_before:], ended=self.call.ended,
                       waiting=_WAITING.get(self.call.waiting.kind, "is busy"), state=state)

    def finish(self) -> list[dict[str, Any]]:
        """Send the status callback Twilio sends at the end (closing a relay session still
        open); the call.node events of the call."""
        self.call.hang_up()
        events = self.store.events_after(0, self.call.call_sid, limit=100_000)
        self.failures = template_failures(events)
        return [dict(event.data) for event in events if event.name == "call.node"]


def run_scenario(harness: Harness, flow: Flow, path: str, scenario: Scenario) -> ScenarioResult:
    """Run one scenario as one call on `harness`, its engine warnings captured.

    Never raises StepFailed: a failing step becomes the result's `failure`. The call always
    ends with Twilio's status callback, so its `call.node` events are complete for coverage.
    """
    result = ScenarioResult(path, flow.id, scenario)
    with captured_engine_log() as log:
        run = ScenarioRun(harness, flow, scenario)
        try:
            run.run()
        except StepFailed as failure:
            result.failure = f"{path}:{failure.line}: {failure}"
        finally:
            result.node_events = run.finish()
            result.template_failures = run.failures
        script = scenario.analysis
        if result.failure is None and script is not None:  # the call has ended: analyse it
            problems = run_scripted_analysis(run.store, flow, run.call.call_sid, script,
                                             harness.clock())
            if problems:
                result.failure = f"{path}:{script.line}: the analysis: " + "; ".join(problems)
        result.log = log.lines
    return result


# -- many scenarios ------------------------------------------------------------------------------

class Runner:
    """Runs scenario files; one app per flow file and per set of changed vars."""

    def __init__(self, root: Path, workdir: Path, make_app: AppFactory) -> None:
        self.root = root
        self.workdir = workdir
        self.make_app = make_app
        self.harnesses: dict[str, Harness] = {}

    def harness(self, flow_id: str, changes: Mapping[str, Any]) -> Harness:
        """The harness for `flow_id` with `changes` to its vars, built on first use and then
        shared by every scenario asking for the same flow and changes.
        """
        key = json.dumps([flow_id, dict(changes)], sort_keys=True, default=str)
        if key not in self.harnesses:
            workdir = self.workdir / f"app{len(self.harnesses)}"
            workdir.mkdir(parents=True)
            root = project_with_vars(self.root, flow_id, changes, workdir) if changes \
                else self.root
            with captured_engine_log():
                self.harnesses[key] = make_harness(root, workdir, self.make_app)
        return self.harnesses[key]

    def run_file(self, scenarios: ScenarioFile,
                 on_result: Callable[[ScenarioResult], None] | None = None
                 ) -> list[ScenarioResult]:
        """Run every scenario of one file in order; `on_result` sees each result as it comes.
        A flow that does not load fails each of its scenarios instead of raising.
        """
        results = []
        for scenario in scenarios.scenarios:
            harness = self.harness(scenarios.flow_id, scenario.vars)
            flow = harness.flow(scenarios.flow_id)
            if flow is None:
                problems = "; ".join(map(str, harness.services.library.refused[:3]))
                result = ScenarioResult(scenarios.path, scenarios.flow_id, scenario,
                                        failure=f"{scenarios.path}:{scenario.line}: flow "
                                                f"'{scenarios.flow_id}' did not load: {problems}")
            else:
                result = run_scenario(harness, flow, scenarios.path, scenario)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results

    def close(self) -> None:
        """Close every harness's store."""
        for harness in self.harnesses.values():
            harness.close()


def run_scenarios(files: Sequence[ScenarioFile], root: Path, flows: Mapping[str, Flow],
                  make_app: AppFactory,
                  on_result: Callable[[ScenarioResult], None] | None = None) -> RunReport:
    """Run every scenario of `files`, each on an app `make_app` builds; coverage for each flow
    of `flows` (0% without any)."""
    report = RunReport(coverage={flow_id: Coverage(flow) for flow_id, flow in flows.items()})
    with tempfile.TemporaryDirectory(prefix="phoney-scenarios-") as workdir:
        runner = Runner(root, Path(workdir), make_app)
        try:
            for scenario_file in files:
                results = runner.run_file(scenario_file, on_result)
                report.results += results
                coverage = report.coverage.get(scenario_file.flow_id)
                if coverage is not None:
                    for result in results:
                        coverage.add(result.node_events)
        finally:
            runner.close()
    return report
