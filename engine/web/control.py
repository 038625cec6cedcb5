"""Call control from the dashboard: transfer or end a live call through Twilio's REST API.

A transfer replaces what the call is doing with inline TwiML: a short announcement, then a
`<Dial>` whose action is the voice blueprint's dial callback at the call's current step, so when
the transferred leg ends Twilio comes back to the flow (a dial result on a node that is not a
transfer node re-enters that node). Only targets the call's own flow declares (its transfer
nodes' `to`, rendered with the flow's vars) or `TRANSFER_ALLOW` lists may be dialled: the
dashboard must not become a way to ring any number on the account's bill.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import requests
from flask import Blueprint, Response, jsonify, request, session
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.twiml.voice_response import VoiceResponse

from engine.calls import urls
from engine.calls.library import Pinned
from engine.flows.model import TransferNode
from engine.runtime.state import FINAL_STATUSES, CallState
from engine.runtime.templates import render
from engine.store import NewEvent
from engine.web.auth import csrf_protected, login_required
from engine.web.services import Services, services
from engine.web.twilio_rest import NotConfigured, TwilioRest

log = logging.getLogger(__name__)

control = Blueprint("control", __name__)

CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
MAX_INLINE_TWIML = 4000  # Twilio's limit for `Twiml` in a call update (error 32018)
TRANSFER_TEXT = "Transferring you now."
DEFAULT_DIAL_TIMEOUT = 30
CALL_NOT_IN_PROGRESS = 21220  # Twilio: the call has ended (its status callback may be on its way)
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")

JsonAnswer = tuple[Response, int]


def _error(http_status: int, message: str, /, **extra: Any) -> JsonAnswer:
    return jsonify(error=message, **extra), http_status


def _fields() -> Mapping[str, Any]:
    if request.is_json:
        body = request.get_json(silent=True)
        return body if isinstance(body, dict) else {}
    return request.form


def _field(fields: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = fields.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def normalize_target(target: str) -> str:
    """`+1 (555) 000-1111` and `+15550001111` are one number; SIP URIs are kept as they are."""
    target = target.strip()
    if target.lower().startswith("sip:"):
        return target
    return _PHONE_PUNCTUATION.sub("", target)


def declared_targets(pinned: Pinned | None) -> dict[str, TransferNode | None]:
    """Targets of the flow's transfer nodes, rendered with its vars, with the node of each."""
    found: dict[str, TransferNode | None] = {}
    if pinned is None:
        return found
    flow = pinned.flow
    for node in flow.nodes.values():
        if not isinstance(node, TransferNode):
            continue
        try:
            target = normalize_target(render(node.to, {"vars": flow.vars}))
        except Exception as error:  # a `to` that needs more than vars cannot be checked here
            log.info("flow %s: transfer node %s: cannot render %r from vars alone (%s)",
                     flow.id, node.id, node.to, type(error).__name__)
            continue
        if target:
            found.setdefault(target, node)
    return found


def allowed_targets(svc: Services, state: CallState) -> dict[str, TransferNode | None]:
    """The normalized targets the dashboard may transfer `state`'s call to, each with the
    transfer node that declares it: the flow version the call runs on, then TRANSFER_ALLOW
    (node None).
    """
    pinned = svc.library.pinned(state.flow_id, state.flow_version)
    allowed = declared_targets(pinned)
    for extra in svc.settings.transfer_allow:
        allowed.setdefault(normalize_target(extra), None)
    return allowed


def dial_callback_url(svc: Services, step: int) -> str:
    """Absolute (Twilio refuses relative action URLs in a call update, error 15004).

    On PUBLIC_BASE_URL when set, else on the scheme and host this request came to (forwarded
    ones only through TRUSTED_PROXIES, engine/web/proxy.py), which is what the voice webhooks
    check signatures against.
    """
    base = svc.settings.public_base_url or f"{request.scheme}://{request.host}"
    return f"{base.rstrip('/')}{urls.DIAL_RESULT}?step={step}"


def transfer_twiml(target: str, action: str, *, timeout: int = DEFAULT_DIAL_TIMEOUT,
                   caller_id: str | None = None, voice: str = "Polly.Joanna-Neural",
                   language: str = "en-US") -> str:
    """The inline TwiML of a dashboard transfer: `TRANSFER_TEXT` in `voice`, then a `<Dial>`
    of `target` (a `<Sip>` for `sip:`, else a `<Number>`) that posts its result to `action`.
    """
    response = VoiceResponse()
    response.say(TRANSFER_TEXT, voice=voice, language=language)
    dial = response.dial(action=action, method="POST", timeout=timeout, caller_id=caller_id)
    if target.lower().startswith("sip:"):
        dial.sip(target)
    else:
        dial.number(target)
    return str(response)


def _user() -> str:
    return str(session.get("user") or "")


def _rest(svc: Services) -> TwilioRest:
    if svc.twilio is None:
        svc.twilio = TwilioRest.from_settings(svc.settings)
    return svc.twilio


def _live_call(svc: Services, call_sid: str) -> CallState | JsonAnswer:
    """The call's state, or the JSON error to answer instead."""
    if not call_sid:
        return _error(400, "CallSid is required")
    if not CALL_SID.fullmatch(call_sid):
        return _error(400, "CallSid must be 'CA' followed by 32 hexadecimal digits")
    state = svc.store.get_state(call_sid)
    if state is None:
        return _error(404, f"unknown call {call_sid}")
    summary = svc.store.get_call(call_sid)
    if state.ended or state.status in FINAL_STATUSES or (
            summary is not None and summary.ended_at is not None):
        status = summary.status if summary is not None else state.status
        return _error(409, f"call {call_sid} has already ended ({status})", status=status)
    return state


def _update(svc: Services, call_sid: str, what: str, **changes: Any) -> JsonAnswer | None:
    """`calls(sid).update(**changes)`; None when Twilio accepted it, else the JSON error."""
    try:
        _rest(svc).client().calls(call_sid).update(**changes)
    except NotConfigured as error:
        return _error(503, str(error))
    except (TwilioRestException, TwilioServiceException) as error:
        said = error.msg if isinstance(error, TwilioRestException) else (
            f"{error.title}: {error.detail}" if error.detail else error.title)
        message = f"Twilio refused to {what} call {call_sid}: {said}"
        log.warning("%s (HTTP %s, code %s)", message, error.status, error.code)
        _record_error(svc, call_sid, message)
        status = 409 if error.code == CALL_NOT_IN_PROGRESS else 502
        return _error(status, message, twilio_status=error.status, twilio_code=error.code)
    except (TwilioException, requests.RequestException, OSError) as error:
        message = f"could not reach Twilio to {what} call {call_sid}: {type(error).__name__}"
        log.warning("%s: %s", message, error)
        _record_error(svc, call_sid, message)
        return _error(502, message)
    return None


def _record(svc: Services, call_sid: str, event: NewEvent) -> None:
    """Record, but never turn what Twilio has already done into a failed request."""
    try:
        svc.recorder.record(call_sid, [event], svc.call_service.clock())
    except Exception:
        log.exception("call %s: could not record %s", call_sid, event.name)


def _record_error(svc: Services, call_sid: str, detail: str) -> None:
    _record(svc, call_sid, NewEvent("call.error", {
        "kind": "control", "detail": detail, "source": "dashboard"}))


def _not_configured(svc: Services) -> JsonAnswer | None:
    if _rest(svc).configured:
        return None
    return _error(503, "call control needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")


@control.post("/api/transfer-call")
@login_required
@csrf_protected
def transfer_call() -> JsonAnswer:
    """POST /api/transfer-call: dial a live call to a target its flow or TRANSFER_ALLOW allows."""
    svc = services()
    refused = _not_configured(svc)
    if refused:
        return refused
    fields = _fields()
    call_sid = _field(fields, "CallSid", "call_sid")
    state = _live_call(svc, call_sid)
    if not isinstance(state, CallState):
        return state
    wanted = _field(fields, "To", "to", "target", "Target")
    if not wanted:
        return _error(400, "a target is required (To or target)")
    allowed = allowed_targets(svc, state)
    target = normalize_target(wanted)
    if target not in allowed:
        log.warning("call %s: transfer to %r refused (not declared by flow %s)", call_sid,
                    wanted[:60], state.flow_id)
        names = ", ".join(sorted(allowed)) or "none"
        return _error(403, f"{wanted[:60]!r} is not a transfer target of flow "
                           f"'{state.flow_id}' or TRANSFER_ALLOW; allowed: {names}",
                      allowed=sorted(allowed))
    node = allowed[target]
    pinned = svc.library.pinned(state.flow_id, state.flow_version)
    voice, language = "Polly.Joanna-Neural", "en-US"
    if pinned is not None:
        language = pinned.flow.language
        personality = pinned.registry.personalities.get(state.personality
                                                        or pinned.flow.personality)
        if personality is not None:
            voice = personality.voice.twilio
    twiml = transfer_twiml(target, dial_callback_url(svc, state.step),
                           timeout=node.timeout if node else DEFAULT_DIAL_TIMEOUT,
                           caller_id=node.caller_id if node else None,
                           voice=voice, language=language)
    if len(twiml) > MAX_INLINE_TWIML:
        return _error(500, f"the transfer TwiML would be {len(twiml)} characters, over "
                           f"Twilio's {MAX_INLINE_TWIML} for inline TwiML (error 32018)")
    failed = _update(svc, call_sid, "transfer", twiml=twiml)
    if failed:
        return failed
    _record(svc, call_sid, NewEvent("call.transfer", {
        "node": state.node, "to": target, "status": "requested", "source": "dashboard",
        "by": _user()}))
    log.info("call %s: transferred to %s from the dashboard", call_sid, target)
    return jsonify(ok=True, call_sid=call_sid, to=target), 200


@control.post("/api/end-call")
@login_required
@csrf_protected
def end_call() -> JsonAnswer:
    """POST /api/end-call: hang up a live call through Twilio's REST API; JSON ok or error."""
    svc = services()
    refused = _not_configured(svc)
    if refused:
        return refused
    call_sid = _field(_fields(), "CallSid", "call_sid")
    state = _live_call(svc, call_sid)
    if not isinstance(state, CallState):
        return state
    failed = _update(svc, call_sid, "end", status="completed")
    if failed:
        return failed
    _record(svc, call_sid, NewEvent("call.end", {
        "node": state.node, "status": "requested", "source": "dashboard", "by": _user()}))
    log.info("call %s: ended from the dashboard", call_sid)
    return jsonify(ok=True, call_sid=call_sid), 200
