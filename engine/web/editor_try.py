"""Trying a flow from its editor: a call in the page, and the flow's scenarios with coverage.

`POST /api/flows/<id>/calls` rings the live flow as `flask call` does: a simulated Twilio
(engine/simulator.py) posts signed webhooks to this app in process, so the call goes through the
same signature check, webhooks, store and events as a real one, and is marked a test call
(`editor`). `POST /api/flows/<id>/calls/<CallSid>` is the caller's next move, `{action: say,
text}`, `{action: press, digits}`, `silence`, `dial` (`status`: completed, busy, no-answer),
`record`, `hangup`; each answer says what was heard since, what the call waits for, where it is
and whether it ended.

The simulated caller lives in the server process that rang it (a few at a time, each dropped
after IDLE_SECONDS without a move): with several server processes, a move that lands on
another one is answered 404 and the page says to ring again.

`POST /api/flows/<id>/scenarios` runs `flows/<id>.test.yaml` as `flask flows test` does and
answers each scenario's result and the flow's edge coverage (edge ids taken and never taken).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, jsonify

from engine.authoring.runner import run_scenarios
from engine.authoring.transports import app_transport
from engine.calls.test_calls import mark_test_call
from engine.flows.coverage import format_percent
from engine.flows.loader import SCENARIO_SUFFIX
from engine.flows.scenarios import load_scenarios
from engine.simulator import CallError, SimulatedCall
from engine.web.auth import csrf_protected, login_required
from engine.web.editor_api import BadRequest, checked_id, json_body
from engine.web.services import services

editor_try = Blueprint("editor_try", __name__)

EXTENSION = "phoney.editor_calls"
MAX_CALLS = 8
IDLE_SECONDS = 600.0
EDITOR_CALLER = "+15551230000"


@dataclass
class PageCall:
    """One call rung from an editor page, and when it last moved."""

    call: SimulatedCall
    flow_id: str
    moved: float = field(default_factory=time.monotonic)
    closed: bool = False

    def close_if_ended(self) -> None:
        """After a `<Hangup>`, send the status callback Twilio would, once: the call ends."""
        if self.call.ended and not self.closed:
            self.closed = True
            self.call.hang_up()


@dataclass
class PageCalls:
    """The calls rung from editor pages in this process."""

    calls: dict[str, PageCall] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, page_call: PageCall) -> None:
        """Keep `page_call`, dropping idle ones and, past MAX_CALLS, the one idle longest."""
        with self.lock:
            now = time.monotonic()
            for sid in [sid for sid, item in self.calls.items()
                        if now - item.moved > IDLE_SECONDS]:
                del self.calls[sid]
            while len(self.calls) >= MAX_CALLS:
                del self.calls[min(self.calls, key=lambda sid: self.calls[sid].moved)]
            self.calls[page_call.call.call_sid] = page_call

    def get(self, call_sid: str) -> PageCall | None:
        """The call, when this process rang it and it has not been dropped."""
        with self.lock:
            return self.calls.get(call_sid)


def _calls(app: Flask) -> PageCalls:
    found = app.extensions.get(EXTENSION)
    if not isinstance(found, PageCalls):
        found = app.extensions[EXTENSION] = PageCalls()
    return found


def _answer(page_call: PageCall, heard_from: int) -> Response:
    call = page_call.call
    waiting = call.waiting
    listens = (waiting.verb.get("input", "dtmf") if waiting.verb is not None else "")
    state = services().store.get_state(call.call_sid)
    return jsonify(call_sid=call.call_sid, flow=page_call.flow_id,
                   heard=[item.text or item.audio_url for item in call.heard[heard_from:]],
                   heard_total=len(call.heard), waiting=waiting.kind, listens=listens,
                   ended=call.ended, node=state.node if state is not None else None,
                   path=list(state.path) if state is not None else [])


@editor_try.post("/api/flows/<flow_id>/calls")
@login_required
@csrf_protected
def ring(flow_id: str) -> tuple[Response, int]:
    """POST /api/flows/<id>/calls: ring the live flow in process; what the caller heard."""
    checked_id(flow_id)
    svc = services()
    flow = svc.library.live.flows.get(flow_id) if svc.library.ok else None
    if flow is None:
        raise BadRequest(f"no live flow {flow_id!r}; save it without errors first", 404)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    call = SimulatedCall(app_transport(app), svc.settings.public_base_url or "http://localhost",
                         svc.settings.twilio_auth_token,
                         to=flow.numbers[0] if flow.numbers else "+15550001000",
                         from_=EDITOR_CALLER, clock=time.monotonic)
    page_call = PageCall(call, flow_id)
    try:
        call.start(f"/api/incoming-call?flow={quote(flow_id)}")
    except CallError as error:
        return jsonify(error=f"the call failed: {error}", call_sid=call.call_sid), 502
    finally:
        mark_test_call(svc.recorder, call.call_sid, "editor", svc.call_service.clock())
    page_call.close_if_ended()
    _calls(app).add(page_call)
    return _answer(page_call, 0), 201


@editor_try.post("/api/flows/<flow_id>/calls/<call_sid>")
@login_required
@csrf_protected
def move(flow_id: str, call_sid: str) -> Response | tuple[Response, int]:
    """POST /api/flows/<id>/calls/<CallSid>: the caller's next move, and what followed."""
    checked_id(flow_id)
    page_call = _calls(current_app).get(call_sid)
    if page_call is None or page_call.flow_id != flow_id:
        raise BadRequest("no such call in this server process (it ended, was idle too long, "
                         "or another process rang it): ring again", 404)
    body = json_body()
    action = body.get("action")
    call = page_call.call
    before = len(call.heard)
    try:
        if action == "say":
            call.say(str(body.get("text", "")))
        elif action == "press":
            call.press(str(body.get("digits", "")))
        elif action == "silence":
            call.silence()
        elif action == "dial":
            call.dial_ends(str(body.get("status", "completed")))
        elif action == "record":
            call.record(int(body.get("seconds", 10)))
        elif action == "hangup":
            if not call.ended:
                page_call.closed = True
                call.hang_up()
        else:
            raise BadRequest("action must be one of: say, press, silence, dial, record, hangup")
        page_call.close_if_ended()
    except CallError as error:
        return jsonify(error=str(error)), 409
    page_call.moved = time.monotonic()
    return _answer(page_call, before)


@editor_try.post("/api/flows/<flow_id>/scenarios")
@login_required
@csrf_protected
def run(flow_id: str) -> tuple[Response, int] | Response:
    """POST /api/flows/<id>/scenarios: run the flow's scenario file; results and coverage."""
    checked_id(flow_id)
    svc = services()
    root = svc.settings.project_root
    flow = svc.library.live.flows.get(flow_id) if svc.library.ok else None
    if flow is None:
        raise BadRequest(f"no live flow {flow_id!r}", 404)
    path = root / "flows" / f"{flow_id}{SCENARIO_SUFFIX}"
    if not path.is_file():
        return jsonify(flow=flow_id, file=None, results=[], coverage=_coverage_json(None, flow),
                       message=f"no scenarios: write flows/{flow_id}{SCENARIO_SUFFIX}")
    loaded = load_scenarios([path], {flow_id: flow}, root)
    errors = [problem for problem in loaded.problems if problem.severity == "error"]
    if errors:
        return jsonify(error="the scenario file does not validate",
                       problems=[str(problem) for problem in errors]), 422
    report = run_scenarios(loaded.files, root, {flow_id: flow}, svc.make_app)
    return jsonify(flow=flow_id, file=f"flows/{flow_id}{SCENARIO_SUFFIX}",
                   passed=len(report.results) - len(report.failed), failed=len(report.failed),
                   results=[{"name": result.scenario.name, "passed": result.passed,
                             "lines": result.lines()} for result in report.results],
                   coverage=_coverage_json(report.coverage.get(flow_id), flow))


def _coverage_json(coverage: Any, flow: Any) -> dict[str, Any]:
    if coverage is None:
        return {"percent": 0.0, "text": "0.0%", "taken": {}, "never": [e.id for e in flow.edges]}
    return {"percent": coverage.percent, "text": format_percent(coverage.percent),
            "taken": {edge.id: count for edge, count in coverage.taken.items()},
            "never": [edge.id for edge in coverage.never]}


