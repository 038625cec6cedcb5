"""Twilio-facing routes: voice webhooks in, TwiML out.

Every request must carry a valid `X-Twilio-Signature` (403 with no body otherwise). Once it
does, the answer is always HTTP 200 with TwiML, whatever fails inside: the caller must never hear
Twilio's "application error".
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from engine import logs
from engine.calls import urls
from engine.calls.relay import handed_off
from engine.calls.service import APOLOGY
from engine.runtime.state import DialEnded, Event, Heard, RecordingDone, Silence
from engine.twiml import safe_answer
from engine.web.services import services
from engine.web.signature import is_signed
from engine.web.webhook_form import known_fields, read_fields

log = logging.getLogger(__name__)

voice = Blueprint("voice", __name__)

CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
MAX_SPEECH_CHARS = 2000  # what a caller can say in one turn, with room to spare
MAX_DIGITS = 32
FALLBACK_TEXT = "Sorry, we can't take your call right now. Please try again in a few minutes."


def _twiml(text: str) -> Response:
    return Response(text, status=200, mimetype="text/xml")


@voice.before_request
def accept_webhook() -> Response | None:
    """Before every voice request, in this order: the form read within its limits (413 past
    them, engine/web/webhook_form.py); 403 with no body unless `X-Twilio-Signature` is valid
    for TWILIO_AUTH_TOKEN over the URL Twilio called and every field (always 403 when no token
    is set); then the fields a webhook reads kept for the route, and every line logged while it
    is handled tagged with its CallSid (when well formed) and route. Threads started for the
    call copy the log context, so theirs carry it too. Nothing reads the form before this."""
    try:
        fields = read_fields(request)
    except RequestEntityTooLarge:
        log.warning("refused %s: the body is larger than a webhook's", request.path)
        raise
    settings = services().settings
    if not is_signed(request, settings.twilio_auth_token, settings.public_base_url, fields):
        log.warning("refused %s: missing or invalid X-Twilio-Signature", request.path)
        return Response(status=403)
    # A relay node's WebSocket URL is absolute: this request's base, without PUBLIC_BASE_URL.
    g.phoney_answering = urls.answering_base.set(f"{request.scheme}://{request.host}")
    params = g.twilio_params = known_fields(fields)
    sid = params.get("CallSid", "")
    rule = request.url_rule.rule if request.url_rule is not None else request.path[:100]
    g.phoney_log_context = logs.push(sid if CALL_SID.fullmatch(sid) else "", rule)
    return None


@voice.teardown_request
def untag_logs(error: BaseException | None) -> None:
    """Teardown of every voice request: drop the log context `accept_webhook` pushed, if any."""
    bound = g.pop("phoney_log_context", None)
    if bound is not None:
        logs.pop(bound)
    answering = g.pop("phoney_answering", None)
    if answering is not None:
        urls.answering_base.reset(answering)


def _params() -> dict[str, str]:
    """The webhook's known fields, first value of each, as `accept_webhook` read them."""
    params: dict[str, str] = g.twilio_params
    return params


def _request_key(params: dict[str, str]) -> str:
    return services().request_keys.key(request.full_path, params,
                                       request.headers.get("I-Twilio-Idempotency-Token"))


def _count(raw: str) -> int | None:
    """A non-negative whole number Twilio sent, or None. `str.isdigit` alone would let '²'
    through to `int`, and thousands of digits past int's conversion limit."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else None


def _step_param() -> int | None:
    return _count(request.args.get("step", ""))


def _now() -> float:
    return services().call_service.clock()


def answered(handler: Callable[..., str]) -> Callable[..., Response]:
    """Validate the CallSid, run the handler, and turn any failure into safe TwiML."""

    @wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        params = _params()
        call_sid = params.get("CallSid", "")
        if not CALL_SID.fullmatch(call_sid):  # `match` with `$` lets a trailing newline in
            log.warning("%s: missing or malformed CallSid %r", request.path, call_sid[:40])
            return _twiml(safe_answer(APOLOGY))
        try:
            return _twiml(handler(call_sid, params, *args, **kwargs))
        except Exception as error:
            log.exception("call %s: %s failed", call_sid, request.path)
            services().call_service.internal_error(
                call_sid, f"{type(error).__name__} in {request.path}")
            return _twiml(safe_answer(APOLOGY))

    return wrapper


def _advance(call_sid: str, params: dict[str, str], event: Event | None) -> str:
    return services().call_service.advance(call_sid, event, _step_param(),
                                           _request_key(params))


@voice.post(urls.INCOMING_CALL)
@answered
def incoming_call(call_sid: str, params: dict[str, str]) -> str:
    """POST /api/incoming-call: a call rings; answer its first TwiML (`?flow=` picks the flow)."""
    return services().call_service.incoming(params, request.args.get("flow"),
                                            _request_key(params))


@voice.post(urls.INCOMING_CALL_FALLBACK)
def incoming_call_fallback() -> Response:
    """The number's fallback URL: Twilio calls it when the main webhook failed. No state."""
    return _twiml(safe_answer(FALLBACK_TEXT))


@voice.post(urls.GATHER_INPUT)
@answered
def gather_input(call_sid: str, params: dict[str, str]) -> str:
    """POST /api/voice/input: the <Gather> heard speech or digits (none: silence); step it."""
    speech = " ".join(params.get("SpeechResult", "").split())[:MAX_SPEECH_CHARS]
    digits = re.sub(r"[^0-9*#]", "", params.get("Digits", ""))[:MAX_DIGITS]
    if not speech and not digits:
        return _advance(call_sid, params, Silence(_now()))
    try:
        confidence = float(params.get("Confidence", "0") or 0)
    except ValueError:
        confidence = 0.0
    # 'nan' parses, survives min/max, and would be stored as JSON no browser can read.
    confidence = min(max(confidence, 0.0), 1.0) if math.isfinite(confidence) else 0.0
    return _advance(call_sid, params, Heard(_now(), speech, confidence, digits))


@voice.post(urls.SILENCE)
@answered
def silence(call_sid: str, params: dict[str, str]) -> str:
    """POST /api/voice/silence: the <Gather> fell through with no input; step the silence."""
    return _advance(call_sid, params, Silence(_now()))


@voice.post(urls.DIAL_RESULT)
@answered
def dial_result(call_sid: str, params: dict[str, str]) -> str:
    """POST /api/voice/dial: the <Dial> ended; step the transfer's outcome."""
    status = params.get("DialCallStatus", "failed")[:20] or "failed"
    duration = _count(params.get("DialCallDuration", "0")) or 0
    return _advance(call_sid, params, DialEnded(_now(), status, duration))


@voice.post(urls.RECORDING)
@answered
def recording(call_sid: str, params: dict[str, str]) -> str:
    """POST /api/voice/recording: the <Record> ended; step the recording (URL and seconds)."""
    return _advance(call_sid, params, RecordingDone(
        _now(), params.get("RecordingUrl", "")[:500],
        _count(params.get("RecordingDuration", "0")) or 0))


@voice.post(urls.RESUME)
@answered
def resume(call_sid: str, params: dict[str, str]) -> str:
    """POST /api/voice/resume: a <Redirect> came back; carry on where the call waits."""
    return _advance(call_sid, params, None)


@voice.post(urls.RELAY_DONE)
@answered
def relay_done(call_sid: str, params: dict[str, str]) -> str:
    """POST /api/voice/relay: a relay session ended (the `<Connect action>`); step the way out
    of the node its `HandoffData` names, or carry on where the call is without one."""
    raw = params.get("HandoffData", "")
    status = params.get("SessionStatus", "")
    found = handed_off(raw, call_sid, _now())
    if found.event is None:
        log.info("call %s: relay session ended (%s) with no handoff", call_sid, status[:20])
    at_step = found.step if found.step is not None else _step_param()
    # The handoff is one of the fields the key is made of: two sessions' ends are two requests.
    return services().call_service.advance(call_sid, found.event, at_step, _request_key(params))


@voice.post(urls.CALL_STATUS)
@answered
def call_status(call_sid: str, params: dict[str, str]) -> str:
    """POST /api/call-status: Twilio's status callback; a final status ends the call."""
    status = params.get("CallStatus", "")[:20]
    duration = _count(params.get("CallDuration", ""))
    return services().call_service.status_changed(call_sid, status, duration,
                                                  _request_key(params))
