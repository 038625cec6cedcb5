"""The call service: one webhook's worth of a call, in and out, whatever the transport.

This is the I/O shell around the pure `step`: it loads the call's state and pinned flow, turns
model requests into replies through the responder, has the voicing pick how each text is
spoken (a speech failure goes back into `step` as a `SpeechFailed` event), renders the actions
as TwiML and commits state, events and answer together. A repeated webhook gets the stored
answer and steps nothing; a concurrent duplicate loses the race in the store and gets the
winner's answer.

It knows nothing of HTTP: its ports (store, responder, voicing, clock, event recorder, callback
URLs) are handed in by the composition root, engine/bootstrap.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence

from engine.ai import budget
from engine.ai.responder import Responder
from engine.calls.language import detect
from engine.calls.library import FlowLibrary, Pinned
from engine.calls.limits import (
    CallLimits,
    ModelBudget,
    caller_quota,
    lines_busy,
    live_ceiling,
    over_ceiling,
    refusal,
    refuse_caller,
)
from engine.calls.ports import Clock, VoicingFactory
from engine.calls.recorder import EventRecorder
from engine.calls.relay_voice import connect_relay
from engine.calls.requests import PATIENCE, HttpPort, Requests, Unconfigured, http_request
from engine.calls.sentiment import score
from engine.calls.urls import CallbackUrls
from engine.outbound.records import read_placed
from engine.runtime.state import (
    FINAL_STATUSES,
    Action,
    AskModel,
    AwaitRequest,
    AwaitStream,
    Caller,
    CallStarted,
    CallState,
    Continue,
    Converse,
    Emit,
    Event,
    Failed,
    Heard,
    MachineAnswered,
    Replied,
    RequestPending,
    Resume,
    Say,
    SendRequest,
    SpeechFailed,
    StatusChanged,
)
from engine.runtime.step import start_state, step
from engine.store import CallStore, LinesBusy, LiveCeiling, NewEvent, Quota, StepConflict
from engine.twiml import Spoken, render, safe_answer

log = logging.getLogger(__name__)

MAX_MODEL_ROUNDS = 6
"""Model calls one webhook may make (retries and fallbacks included)."""
MAX_HTTP_ROUNDS = 6
"""Requests of http nodes one webhook may send (retries included)."""
HTTP_BUDGET = 10.0
"""Seconds from a webhook's start by which its own requests must be answered (Twilio waits 15)."""
MIN_REQUEST = 0.25
"""A request needs at least this long to be worth sending."""

APOLOGY = "Sorry, we're having trouble right now. Please call again later. Goodbye."
UNKNOWN_CALL = "Sorry, this call could not be found. Please call again. Goodbye."
NO_FLOW = "Sorry, this number is not set up to take calls yet. Goodbye."
EMPTY_ANSWER = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
"""What a status callback is answered: Twilio reads nothing from it."""


def caller_from(params: Mapping[str, str]) -> Caller:
    """The caller as Twilio describes them in a webhook's parameters."""
    return Caller(number=params.get("From", ""), city=params.get("FromCity", ""),
                  state=params.get("FromState", ""), country=params.get("FromCountry", ""),
                  zip=params.get("FromZip", ""), name=params.get("CallerName", ""))


def callee_side(params: Mapping[str, str]) -> dict[str, str]:
    """The parameters of a call Phoney placed as seen from its other party: Twilio's `To`
    (and `To*`) as the caller, `From` as the number called."""
    swapped = dict(params)
    for field in ("", "City", "State", "Zip", "Country"):
        swapped[f"From{field}"], swapped[f"To{field}"] = (params.get(f"To{field}", ""),
                                                          params.get(f"From{field}", ""))
    return swapped


def scored(event: Event, language: str, languages: tuple[str, ...] = ()) -> Event:
    """`event` with its speech's sentiment (engine/calls/sentiment.py, in the call's
    `language`) and, for a flow of several `languages`, the language it is in
    (engine/calls/language.py), when it is a `Heard` with speech not scored yet: the pure step
    reads both as data and never scores or detects."""
    if isinstance(event, Heard) and event.speech and event.sentiment is None:
        detected = detect(event.speech, languages) if len(languages) > 1 else ""
        # A caller who has switched language mid-call is scored in the language they speak.
        return dataclasses.replace(event, sentiment=score(event.speech, detected or language),
                                   language=detected)
    return event


class CallService:
    """Steps calls: every entry point answers TwiML and leaves the store consistent.

    `request_key` identifies a webhook request (Twilio's idempotency token, or a digest of the
    request): the same key gets the same stored answer without stepping the call again.
    """

    def __init__(self, library: FlowLibrary, store: CallStore, responder: Responder, *,
                 voicing: VoicingFactory, recorder: EventRecorder,
                 urls: CallbackUrls | None = None, clock: Clock = time.time,
                 limits: CallLimits | None = None,
                 default_flow: str = "receptionist", http: HttpPort | None = None) -> None:
        self.library = library
        self.store = store
        self.responder = responder
        self.voicing = voicing
        self.recorder = recorder
        self.urls = urls or CallbackUrls()
        self.clock = clock
        self.limits = limits or CallLimits()  # per-caller rate and per-call ceilings
        self.default_flow = default_flow
        self.requests = Requests(http or Unconfigured(), store)  # http nodes' requests

    # -- entry points --------------------------------------------------------------------------

    def incoming(self, params: Mapping[str, str], flow_id: str | None,
                 request_key: str, placed: str | None = None) -> str:
        """A call rings (or Twilio asks again for one it rang): `params` as Twilio posts them,
        `flow_id` the flow asked for by the webhook URL, if any; `placed` the token of a call
        Phoney placed (engine/outbound/records.py), whose vars the call starts with."""
        with budget.webhook():  # Twilio's 15 s run from here, whatever the calls' clock says
            return self._incoming(params, flow_id, request_key, placed)

    def machine_answered(self, call_sid: str, answered_by: str, request_key: str) -> str:
        """Twilio's asynchronous answering-machine detection found a machine on a call under
        way (it redirected the call here): step it by the flow's `machine` edge, whatever step
        it is on."""
        with budget.webhook():
            return self._advance(call_sid, MachineAnswered(self.clock(), answered_by), None,
                                 request_key)

    def advance(self, call_sid: str, event: Event | None, at_step: int | None,
                request_key: str) -> str:
        """Step a known call with `event`; None means "carry on" (a resume). `at_step` is the
        step the webhook's callback URL was made for: an older one makes `event` stale."""
        with budget.webhook():
            return self._advance(call_sid, event, at_step, request_key)

    def status_changed(self, call_sid: str, status: str, duration: int | None,
                       request_key: str) -> str:
        """Twilio's status callback: a final status ends the call (and closes it in the
        store), whether or not the call was ever stepped."""
        now = self.clock()
        with budget.webhook():
            found = self.store.lookup(call_sid, request_key)
            if found.response is None and found.state is not None:
                self._step_known(found.state, StatusChanged(now, status, duration or 0), None,
                                 request_key, now)
        if status in FINAL_STATUSES:
            self.store.close_call(call_sid, status, duration, now)
        return EMPTY_ANSWER

    def internal_error(self, call_sid: str, detail: str) -> None:
        """Record that handling a webhook of `call_sid` failed inside; never raises."""
        try:
            self.recorder.record(call_sid, [NewEvent("call.error", {
                "kind": "internal", "detail": detail})], self.clock())
        except Exception:
            log.exception("call %s: could not record the error either", call_sid)

    # -- finding the call ----------------------------------------------------------------------

    def _incoming(self, params: Mapping[str, str], flow_id: str | None,
                  request_key: str, token: str | None = None) -> str:
        call_sid = params["CallSid"]
        now = self.clock()
        placed = read_placed(self.store, call_sid, token) \
            if params.get("Direction") == "outbound-api" or token else None
        if placed is not None:
            # Phoney placed it: the other party is Twilio's `To`, and our own number (`From`)
            # is not a caller to hold to CALLER_CALL_LIMIT.
            params = callee_side(params)
        quota = caller_quota(self.limits, params) if placed is None else None
        # One read: the stored answer, the call's state and the caller's count together.
        found = self.store.lookup(call_sid, request_key, quota.key if quota else None)
        if found.response is not None:
            return found.response
        if found.state is not None:  # Twilio asked again for a call we know: carry on
            return self._step_known(found.state, None, None, request_key, now)
        if quota is not None and found.count >= quota.limit:
            # Over the limit already: count the call and refuse it without making its step.
            refused = refuse_caller(self.store, self.recorder, quota, call_sid, now)
            if refused is not None:
                return refused
            quota = None  # counted (the window had just started over): take the call
        pinned = self.library.choose(flow_id, params.get("To", ""), self.default_flow)
        if pinned is None:
            detail = f"no flow for flow={flow_id!r}, To={params.get('To', '')!r}"
            log.error("call %s: %s", call_sid, detail)
            self.recorder.record(call_sid, [NewEvent("call.error", {"kind": "flow",
                                                                    "detail": detail})], now)
            return safe_answer(NO_FLOW)
        state = start_state(pinned.flow, pinned.version, call_sid, caller_from(params),
                            params.get("To", ""), now)
        if placed is not None and placed.flow == pinned.flow.id:
            state = dataclasses.replace(state, vars=dict(placed.vars))
        started = CallStarted(now, answered_by=params.get("AnsweredBy", ""))
        return self._run(pinned, None, state, started, request_key, now, quota,
                         live_ceiling(self.limits))

    def _advance(self, call_sid: str, event: Event | None, at_step: int | None,
                 request_key: str) -> str:
        started = self.clock()
        found = self.store.lookup(call_sid, request_key)
        if found.response is not None:
            return found.response
        if found.state is None:
            log.warning("call %s: webhook for an unknown call", call_sid)
            return safe_answer(UNKNOWN_CALL)
        return self._step_known(found.state, event, at_step, request_key, started)

    def _step_known(self, state: CallState, event: Event | None, at_step: int | None,
                    request_key: str, started: float) -> str:
        pinned = self.library.pinned(state.flow_id, state.flow_version)
        if pinned is None:
            detail = f"flow {state.flow_id} version {state.flow_version} is not available"
            log.error("call %s: %s", state.call_sid, detail)
            self.recorder.record(state.call_sid, [NewEvent("call.error", {
                "kind": "flow", "detail": detail})], started)
            return safe_answer(APOLOGY)
        if at_step is not None and at_step != state.step:
            # An answer to a question the call has moved past: say where the call is now.
            log.info("call %s: stale webhook for step %s (now %s)", state.call_sid, at_step,
                     state.step)
            event = None
        return self._run(pinned, state, state, event or Resume(started), request_key, started)

    # -- the step, with model rounds and speech, rendered and committed ------------------------

    def _run(self, pinned: Pinned, previous: CallState | None, state: CallState, event: Event,
             request_key: str, started: float, quota: Quota | None = None,
             live: LiveCeiling | None = None) -> str:
        """Step, voice, render and commit; `quota` counts a new call's caller in the commit,
        and `live` checks it against the calls live."""
        event = scored(event, state.language or pinned.flow.language,
                       pinned.flow.spoken_languages())
        ceiling = over_ceiling(pinned.flow, state, event, self.limits)
        timings: dict[str, object] = {}
        if ceiling is not None:
            new_state, actions = ceiling
        else:
            new_state, actions = step(pinned.flow, state, event)
            new_state, actions, timings = self._answer_model(pinned, new_state, actions, started)
        events = [NewEvent(action.name, action.data) for action in actions
                  if isinstance(action, Emit)]
        spoken, new_state, speech_events = self._voice(pinned, new_state, actions)
        events += speech_events
        if timings:
            events.append(NewEvent("call.timing", {
                "node": new_state.node, **timings,
                "answer": round(budget.elapsed(), 3)}))
        twiml = render(spoken, self.urls.for_step(new_state.step))
        try:
            if (quota is not None or live is not None) and previous is None:
                count = self.store.commit_new_call(new_state, events, request_key, twiml,
                                                   self.clock(), quota, live)
                if quota is not None and count > quota.limit:  # another call counted first
                    return refusal(self.recorder, quota, new_state.call_sid, count, started)
            else:
                self.store.commit_step(previous, new_state, events, request_key, twiml,
                                       self.clock())
        except LinesBusy as busy:
            return lines_busy(self.recorder, busy, new_state.call_sid, started)
        except StepConflict:
            found = self.store.lookup(new_state.call_sid, request_key)
            if found.response is not None:
                return found.response
            log.info("call %s: lost a race to another request; resuming", new_state.call_sid)
            latest = found.state.step if found.state is not None else 0
            return render([Continue()], self.urls.for_step(latest))
        self.recorder.written(events)
        return twiml

    def _voice(self, pinned: Pinned, state: CallState, actions: Sequence[Action],
               ) -> tuple[list[Spoken], CallState, list[NewEvent]]:
        """How each text is spoken, before anything is rendered. A text whose speech failed
        is spoken with the Twilio voice, and the failure is stepped as `SpeechFailed`, which
        records it against the node that spoke (and its `tts_failure` edge)."""
        voicing = self.voicing(pinned.registry)
        spoken: list[Spoken] = []
        for action in actions:
            if isinstance(action, Say):
                spoken.append(voicing(action))
            elif isinstance(action, Converse):  # a relay session, in its personality's voice
                spoken.append(connect_relay(action, pinned.registry))
            elif not isinstance(action, Emit | AskModel | AwaitStream | SendRequest
                                | AwaitRequest):
                spoken.append(action)
        events: list[NewEvent] = []
        for failure in voicing.failures:
            state, news = step(pinned.flow, state, SpeechFailed(
                self.clock(), failure.node or state.node, failure.kind, failure.detail))
            events += [NewEvent(a.name, a.data) for a in news if isinstance(a, Emit)]
        return spoken, state, events

    def _answer_model(self, pinned: Pinned, state: CallState, actions: Sequence[Action],
                      started: float) -> tuple[CallState, list[Action], dict[str, object]]:
        """Resolve AskModel / AwaitStream by asking the responder and stepping its answer."""
        done: list[Action] = []
        todo = list(actions)
        rounds = requests = 0
        model_budget = ModelBudget(self.store, self.limits, self.responder.offline)
        timings: dict[str, object] = {}
        while todo:
            action = todo.pop(0)
            if isinstance(action, SendRequest | AwaitRequest):
                requests += 1
                if requests > MAX_HTTP_ROUNDS:
                    log.error("call %s: too many requests in one webhook", state.call_sid)
                    done.append(Continue())
                    break
                state, more = step(pinned.flow, state, self._request(state, action))
                todo = more + todo
                continue
            if not isinstance(action, AskModel | AwaitStream):
                done.append(action)
                continue
            rounds += 1
            if rounds > MAX_MODEL_ROUNDS:
                # Ending the answer here would hang up on the caller mid-hold. Have Twilio come
                # back instead: the utterance is still pending, and the resume asks again.
                log.error("call %s: too many model rounds in one webhook", state.call_sid)
                done.append(Continue())
                break
            refused = model_budget.refuse(state, action, self.clock())
            reply: Replied | Failed
            if refused is not None:  # the request is not made: a model failure instead
                reply, news = refused
                done += news
            else:
                reply = self._reply(pinned, state, action, started)
            if isinstance(reply, Replied) and reply.timings:
                timings = {**reply.timings, "offline": reply.offline}
            state, more = step(pinned.flow, state, reply)
            todo = more + todo
        return state, done, timings

    def _request(self, state: CallState, action: SendRequest | AwaitRequest) -> Event:
        """The answer to an http node's request, as the event to step: sent within what is
        left of the webhook, or, for a node with a line to say while waiting, left running
        past `PATIENCE` (RequestPending) and read back by the continuation (AwaitRequest)."""
        left = HTTP_BUDGET - budget.elapsed()
        if isinstance(action, AwaitRequest):
            outcome = self.requests.wait(state.request or "", max(0.0, left))
            if outcome is None:
                return Failed(self.clock(), "http", "timeout: the answer never came")
            return outcome.event(self.clock(), action.node)
        if left < MIN_REQUEST:
            return Failed(self.clock(), "http", "timeout: no time left in this webhook")
        request = http_request(action)
        if action.waiting and action.timeout > PATIENCE:
            key = f"{state.call_sid}:{state.step}:{action.node}:{action.attempt}"
            found = self.requests.start(key, request, min(PATIENCE, left))
            if found is None:
                return RequestPending(self.clock(), action.node, key)
        else:
            found = self.requests.send(request, budget.began() + HTTP_BUDGET)
        return found.event(self.clock(), action.node)

    def _reply(self, pinned: Pinned, state: CallState, action: AskModel | AwaitStream,
               started: float) -> Replied | Failed:
        if isinstance(action, AskModel):
            reply = self.responder.answer(pinned.flow, pinned.registry, state, action, started)
        else:
            reply = self.responder.resume(pinned.flow, pinned.registry, state, started)
        # The call's own clock dates the reply: a responder's clock (if it has one) may not
        # be the one the call's other times are on, and a hold is measured against them.
        return dataclasses.replace(reply, now=self.clock())
