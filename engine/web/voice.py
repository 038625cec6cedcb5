"""Twilio-facing routes: voice webhooks in, TwiML out, answered ahead of Flask.

Every request must carry a valid `X-Twilio-Signature` (403 with no body otherwise). Once it
does, the answer is always HTTP 200 with TwiML, whatever fails inside: the caller must never hear
Twilio's "application error".

The webhooks are served by `VoiceWebhooks`, a WSGI layer `create_app` puts in front of the Flask
app: a POST to one of `ROUTES` is answered there, anything else goes on to Flask. A webhook uses
none of what Flask does around a view (a request context, URL matching, sessions, the
rate-limit, metrics and header hooks), and that machinery cost it more than the signature check
and the TwiML together; here it is read once (engine/web/webhook_form.py), checked, handed to
its handler as a `Webhook`, timed for the webhook metric and answered with the same security
headers every Flask response gets.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request

from engine import logs
from engine.calls import urls
from engine.calls.relay import handed_off
from engine.calls.service import APOLOGY
from engine.outbound.records import TOKEN_PARAM
from engine.runtime.state import DialEnded, Event, Heard, RecordingDone, Silence
from engine.twiml import safe_answer
from engine.web.machine_detection import machine_detected, machine_result
from engine.web.services import Services
from engine.web.signature import is_signed
from engine.web.webhook_form import known_fields, read_fields

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

log = logging.getLogger(__name__)

CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
MAX_SPEECH_CHARS = 2000  # what a caller can say in one turn, with room to spare
MAX_DIGITS = 32
FALLBACK_TEXT = "Sorry, we can't take your call right now. Please try again in a few minutes."


@dataclass(frozen=True)
class Webhook:
    """One signed webhook, as its handler reads it: the fields Twilio documents (first value
    of each), the query, and the app's services."""

    path: str
    full_path: str  # path and query, as the request key names a request
    args: MultiDict[str, str]
    params: dict[str, str]
    idempotency_token: str | None
    services: Services

    @property
    def call_sid(self) -> str:
        """The CallSid field (checked well formed before any handler that needs one runs)."""
        return self.params.get("CallSid", "")

    def step(self) -> int | None:
        """The `?step=N` the callback URL carries, or None."""
        return _count(self.args.get("step", ""))

    def key(self) -> str:
        """The request key its answer is stored under (engine/web/request_keys.py)."""
        return self.services.request_keys.key(self.full_path, self.params,
                                              self.idempotency_token)

    def now(self) -> float:
        """The calls' clock."""
        return self.services.call_service.clock()

    def advance(self, event: Event | None, at_step: int | None = None) -> str:
        """Step the call with `event` (None: carry on), at the callback's step."""
        return self.services.call_service.advance(
            self.call_sid, event, self.step() if at_step is None else at_step, self.key())


def _count(raw: str) -> int | None:
    """A non-negative whole number Twilio sent, or None. `str.isdigit` alone would let '²'
    through to `int`, and thousands of digits past int's conversion limit."""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else None


# -- the handlers ---------------------------------------------------------------------------------

def incoming_call(hook: Webhook) -> str:
    """POST /api/incoming-call: a call rings; answer its first TwiML (`?flow=` picks the flow)."""
    return hook.services.call_service.incoming(hook.params, hook.args.get("flow"), hook.key(),
                                               hook.args.get(TOKEN_PARAM))


def incoming_call_fallback(hook: Webhook) -> str:
    """The number's fallback URL: Twilio calls it when the main webhook failed. No state."""
    return safe_answer(FALLBACK_TEXT)


def gather_input(hook: Webhook) -> str:
    """POST /api/voice/input: the <Gather> heard speech or digits (none: silence); step it."""
    params = hook.params
    speech = " ".join(params.get("SpeechResult", "").split())[:MAX_SPEECH_CHARS]
    digits = re.sub(r"[^0-9*#]", "", params.get("Digits", ""))[:MAX_DIGITS]
    if not speech and not digits:
        return hook.advance(Silence(hook.now()))
    try:
        confidence = float(params.get("Confidence", "0") or 0)
    except ValueError:
        confidence = 0.0
    # 'nan' parses, survives min/max, and would be stored as JSON no browser can read.
    confidence = min(max(confidence, 0.0), 1.0) if math.isfinite(confidence) else 0.0
    return hook.advance(Heard(hook.now(), speech, confidence, digits))


def silence(hook: Webhook) -> str:
    """POST /api/voice/silence: the <Gather> fell through with no input; step the silence."""
    return hook.advance(Silence(hook.now()))


def dial_result(hook: Webhook) -> str:
    """POST /api/voice/dial: the <Dial> ended; step the transfer's outcome."""
    status = hook.params.get("DialCallStatus", "failed")[:20] or "failed"
    duration = _count(hook.params.get("DialCallDuration", "0")) or 0
    return hook.advance(DialEnded(hook.now(), status, duration))


def recording(hook: Webhook) -> str:
    """POST /api/voice/recording: the <Record> ended; step the recording (URL and seconds)."""
    return hook.advance(RecordingDone(
        hook.now(), hook.params.get("RecordingUrl", "")[:500],
        _count(hook.params.get("RecordingDuration", "0")) or 0))


def resume(hook: Webhook) -> str:
    """POST /api/voice/resume: a <Redirect> came back; carry on where the call waits."""
    return hook.advance(None)


def relay_done(hook: Webhook) -> str:
    """POST /api/voice/relay: a relay session ended (the `<Connect action>`); step the way out
    of the node its `HandoffData` names, or carry on where the call is without one."""
    raw = hook.params.get("HandoffData", "")
    status = hook.params.get("SessionStatus", "")
    found = handed_off(raw, hook.call_sid, hook.now())
    if found.event is None:
        log.info("call %s: relay session ended (%s) with no handoff", hook.call_sid, status[:20])
    # The handoff is one of the fields the key is made of: two sessions' ends are two requests.
    return hook.advance(found.event, found.step)


def call_status(hook: Webhook) -> str:
    """POST /api/call-status: Twilio's status callback; a final status ends the call."""
    status = hook.params.get("CallStatus", "")[:20]
    duration = _count(hook.params.get("CallDuration", ""))
    return hook.services.call_service.status_changed(hook.call_sid, status, duration, hook.key())


Handler = Callable[[Webhook], str]

ROUTES: dict[str, tuple[Handler, bool]] = {
    urls.INCOMING_CALL: (incoming_call, True),
    urls.INCOMING_CALL_FALLBACK: (incoming_call_fallback, False),
    urls.GATHER_INPUT: (gather_input, True),
    urls.SILENCE: (silence, True),
    urls.DIAL_RESULT: (dial_result, True),
    urls.RECORDING: (recording, True),
    urls.RESUME: (resume, True),
    urls.RELAY_DONE: (relay_done, True),
    urls.CALL_STATUS: (call_status, True),
    urls.MACHINE_RESULT: (machine_result, True),
    urls.MACHINE: (machine_detected, True),
}
"""Each webhook's path: its handler, and whether it needs a well-formed CallSid."""


# -- the WSGI layer -------------------------------------------------------------------------------

_TWIML = "text/xml; charset=utf-8"


def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


class VoiceWebhooks:
    """WSGI: POSTs to `ROUTES` answered here, everything else passed to `downstream`.

    `headers` are added to every answer (the app's security headers); `observe(path, seconds)`
    is told how long each took, from its first byte read to its answer."""

    def __init__(self, app: Flask, downstream: WSGIApplication,
                 headers: Iterable[tuple[str, str]],
                 observe: Callable[[str, float], None]) -> None:
        self.app = app
        self.downstream = downstream
        self.headers = list(headers)
        self.observe = observe

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        """Answer a webhook, or hand the request on."""
        path = environ.get("PATH_INFO", "")
        route = ROUTES.get(path)
        if route is None:
            return self.downstream(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return self._send(start_response, 405, b"", "text/plain", [("Allow", "POST")])
        started = time.perf_counter()
        status, body, kind = self._answer(path, route, Request(environ))
        try:
            return self._send(start_response, status, body, kind)
        finally:
            self.observe(path, time.perf_counter() - started)

    def _send(self, start_response: StartResponse, status: int, body: bytes, kind: str,
              extra: list[tuple[str, str]] | None = None) -> list[bytes]:
        start_response(_status(status), [("Content-Type", kind),
                                         ("Content-Length", str(len(body))),
                                         *(extra or ()), *self.headers])
        return [body]

    def _answer(self, path: str, route: tuple[Handler, bool],
                request: Request) -> tuple[int, bytes, str]:
        """(status, body, content type): 413 past the body limits, 403 without a valid
        signature, else 200 with TwiML whatever happens in the handler."""
        found: Services = self.app.extensions["phoney"]
        settings = found.settings
        try:
            fields = read_fields(request)
        except RequestEntityTooLarge:
            log.warning("refused %s: the body is larger than a webhook's", path)
            return 413, b"", "text/plain"
        except HTTPException as error:  # the client went away mid-body, a broken chunk
            log.warning("refused %s: the body could not be read (%s)", path, error.code)
            return error.code or 400, b"", "text/plain"
        try:
            signed = is_signed(request, settings.twilio_auth_token, settings.public_base_url,
                               fields)
        except ValueError:  # a Host the signed URL cannot be made of (a port that is no number)
            signed = False
        if not signed:
            log.warning("refused %s: missing or invalid X-Twilio-Signature", path)
            return 403, b"", "text/plain"
        params = known_fields(fields)
        sid = params.get("CallSid", "")
        well_formed = CALL_SID.fullmatch(sid) is not None  # `match` with `$` lets "\n" in
        handler, needs_sid = route
        # Every line logged meanwhile carries the CallSid and route (threads started for the
        # call copy the context); a relay node's WebSocket URL is this request's own base
        # when PUBLIC_BASE_URL does not give one.
        bound = logs.push(sid if well_formed else "", path)
        answering = urls.answering_base.set(f"{request.scheme}://{request.host}")
        try:
            if needs_sid and not well_formed:
                log.warning("%s: missing or malformed CallSid %r", path, sid[:40])
                return 200, safe_answer(APOLOGY).encode(), _TWIML
            hook = Webhook(path, request.full_path, request.args, params,
                           request.headers.get("I-Twilio-Idempotency-Token"), found)
            return 200, self._run(handler, hook).encode(), _TWIML
        finally:
            urls.answering_base.reset(answering)
            logs.pop(bound)

    @staticmethod
    def _run(handler: Handler, hook: Webhook) -> str:
        try:
            return handler(hook)
        except Exception as error:
            log.exception("call %s: %s failed", hook.call_sid, hook.path)
            if CALL_SID.fullmatch(hook.call_sid):
                hook.services.call_service.internal_error(
                    hook.call_sid, f"{type(error).__name__} in {hook.path}")
            return safe_answer(APOLOGY)


def install_voice_webhooks(app: Flask, headers: Iterable[tuple[str, str]],
                           observe: Callable[[str, float], None]) -> None:
    """Serve the voice webhooks ahead of `app`'s Flask handling (call before wrapping
    `app.wsgi_app` in anything that must see them too, such as ProxyFix)."""
    app.wsgi_app = VoiceWebhooks(  # type: ignore[method-assign]
        app, app.wsgi_app, headers, observe)


__all__ = ["CALL_SID", "FALLBACK_TEXT", "MAX_DIGITS", "MAX_SPEECH_CHARS", "ROUTES",
           "VoiceWebhooks", "Webhook", "install_voice_webhooks"]
