"""Trying a flow from its editor: a call in the page, and the flow's scenarios with coverage.

`POST /api/flows/<id>/calls` rings the live flow as `flask call` does: a simulated Twilio
(engine/simulator.py) posts signed webhooks to this app in process, so the call goes through the
same signature check, webhooks, store and events as a real one, and is marked a test call
(`editor`). `POST /api/flows/<id>/calls/<CallSid>` is the caller's next move, `{action: say,
text}`, `{action: press, digits}`, `silence`, `dial` (`status`: completed, busy, no-answer),
`record`, `hangup`; each answer says what was heard since, what the call waits for, where it is
and whether it ended.

Between moves the simulated caller is kept in the store (engine/editor/page_calls.py), so any
server process can take the next move; it expires as a streamed reply does.

`POST /api/flows/<id>/scenarios` runs `flows/<id>.test.yaml` as `flask flows test` does and
answers each scenario's result and the flow's edge coverage (edge ids taken and never taken).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, jsonify

from engine.authoring.runner import run_scenarios
from engine.authoring.transports import app_transport
from engine.calls.test_calls import mark_test_call
from engine.editor.page_calls import PageCall, call_key, dump_call, load_call
from engine.flows.coverage import format_percent
from engine.flows.loader import SCENARIO_SUFFIX
from engine.flows.scenarios import load_scenarios
from engine.simulator import CallError, SimulatedCall
from engine.web.auth import csrf_protected, login_required
from engine.web.control import CALL_SID
from engine.web.editor_api import BadRequest, checked_id, json_body
from engine.web.services import services

editor_try = Blueprint("editor_try", __name__)

EDITOR_CALLER = "+15551230000"


def _page_call(call_sid: str) -> tuple[PageCall, bytes] | None:
    """The page's call from the store, and the blob it was read from (for the write back)."""
    svc = services()
    raw = svc.store.get_blob(call_key(call_sid))
    if not raw:
        return None
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        return load_call(raw, app_transport(app), svc.settings.twilio_auth_token,
                         clock=time.time), raw
    except ValueError:
        return None


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
                         from_=EDITOR_CALLER, clock=time.time)  # the same clock in every process
    page_call = PageCall(call, flow_id)
    try:
        call.start(f"/api/incoming-call?flow={quote(flow_id)}")
    except CallError as error:
        return jsonify(error=f"the call failed: {error}", call_sid=call.call_sid), 502
    finally:
        mark_test_call(svc.recorder, call.call_sid, "editor", svc.call_service.clock())
    page_call.close_if_ended()
    svc.store.put_blob(call_key(call.call_sid), dump_call(page_call))
    return _answer(page_call, 0), 201


@editor_try.post("/api/flows/<flow_id>/calls/<call_sid>")
@login_required
@csrf_protected
def move(flow_id: str, call_sid: str) -> Response | tuple[Response, int]:
    """POST /api/flows/<id>/calls/<CallSid>: the caller's next move, and what followed."""
    checked_id(flow_id)
    found = _page_call(call_sid) if CALL_SID.fullmatch(call_sid) else None
    if found is None or found[0].flow_id != flow_id:
        raise BadRequest("no such call from the editor (it was not rung here, or has been idle "
                         "for long): ring again", 404)
    page_call, raw = found
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
    # Only if nobody moved the call meanwhile (a second tab, a double click): that move's
    # webhooks went through; this one's answer still shows what the caller heard.
    if not services().store.compare_and_set_blob(call_key(call_sid), raw,
                                                 dump_call(page_call)):
        return jsonify(error="the call was moved from elsewhere meanwhile; ring again"), 409
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


