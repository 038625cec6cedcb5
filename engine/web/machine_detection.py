"""Answering-machine detection of outbound calls, as Twilio reports it asynchronously.

A call placed with `AsyncAmd=true` is answered at once (the callee hears the flow's start
without waiting on detection); Twilio then posts the result to the call's
`AsyncAmdStatusCallback` (`MACHINE_RESULT`) with `AnsweredBy`. When a machine answered and the
call's flow declares `on_machine`, the call is redirected through the REST API (`Url`) to
`MACHINE`, a voice webhook that steps it along the `machine` edge: a `Url` rather than inline
TwiML, so the redirected webhook's own URL resolves the paths in its answer, as every other
webhook's does. With `DetectMessageEnd` the result of a machine comes once its greeting has
ended, so the message is left after the beep.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import requests
from twilio.base.exceptions import TwilioException

from engine.calls import urls
from engine.calls.service import EMPTY_ANSWER
from engine.runtime.state import MACHINE_ANSWERS
from engine.store import NewEvent
from engine.web.twilio_rest import NotConfigured, TwilioRest

if TYPE_CHECKING:
    from engine.web.voice import Webhook

log = logging.getLogger(__name__)

MAX_ANSWERED_BY = 40


def machine_url(base: str, answered_by: str) -> str:
    """The absolute URL a call answered by a machine is redirected to."""
    return f"{base.rstrip('/')}{urls.MACHINE}?{urlencode({'answered_by': answered_by})}"


def machine_result(hook: Webhook) -> str:
    """POST /api/voice/amd: record what answered; redirect a machine-answered call to its
    flow's `machine` edge when the flow has one and the call is still under way."""
    svc = hook.services
    answered_by = hook.params.get("AnsweredBy", "")[:MAX_ANSWERED_BY]
    call_sid, now = hook.call_sid, hook.now()
    svc.recorder.record(call_sid, [NewEvent("call.amd", {
        "answered_by": answered_by,
        "duration_ms": hook.params.get("MachineDetectionDuration", "")[:12]})], now)
    if answered_by not in MACHINE_ANSWERS:
        return EMPTY_ANSWER
    state = svc.store.get_state(call_sid)
    pinned = svc.library.pinned(state.flow_id, state.flow_version) if state else None
    if state is None or state.ended or pinned is None or not pinned.flow.on_machine:
        return EMPTY_ANSWER
    base = svc.settings.public_base_url or urls.answering_base.get()
    if svc.twilio is None:
        svc.twilio = TwilioRest.from_settings(svc.settings)
    try:
        svc.twilio.client().calls(call_sid).update(url=machine_url(base, answered_by),
                                                   method="POST")
    except (NotConfigured, TwilioException, requests.RequestException, OSError) as error:
        detail = f"could not redirect the call to its voicemail drop: {error}"
        log.warning("call %s: %s", call_sid, detail)
        svc.recorder.record(call_sid, [NewEvent("call.error", {
            "kind": "machine", "detail": detail[:300]})], now)
    return EMPTY_ANSWER


def machine_detected(hook: Webhook) -> str:
    """POST /api/voice/machine: the call a machine answered, redirected here; step it along
    the `machine` edge."""
    answered_by = hook.args.get("answered_by", "machine_start")[:MAX_ANSWERED_BY]
    return hook.services.call_service.machine_answered(hook.call_sid, answered_by, hook.key())
