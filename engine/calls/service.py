"""The call service: one webhook in, one TwiML answer out, the call's step stored with it.

This is the I/O shell around the pure `step`: it loads the call's state and pinned flow, turns
model requests into replies through the responder, renders TwiML and commits state, events and
answer together. A repeated webhook gets the stored answer and steps nothing; a concurrent
duplicate loses the race in the store and gets the winner's answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from engine.ai import budget
from engine.ai.responder import Responder
from engine.flows.model import AiNode, Registry
from engine.runtime.state import (
    Action,
    AskModel,
    AwaitStream,
    Caller,
    CallStarted,
    CallState,
    Continue,
    Emit,
    Event,
    Failed,
    Replied,
    Resume,
)
from engine.runtime.step import start_state, step
from engine.speech.voices import TwilioVoicing
from engine.store import CallStore, NewEvent, StepConflict
from engine.twiml import Callbacks, render, safe_answer
from engine.web import metrics
from engine.web.call_limits import CallLimits, over_ceiling, refuse_caller
from engine.web.library import FlowLibrary, Pinned

log = logging.getLogger(__name__)

MAX_MODEL_ROUNDS = 6
"""Model calls one webhook may make (retries and fallbacks included)."""

APOLOGY = "Sorry, we're having trouble right now. Please call again later. Goodbye."
UNKNOWN_CALL = "Sorry, this call could not be found. Please call again. Goodbye."
NO_FLOW = "Sorry, this number is not set up to take calls yet. Goodbye."

CallbackFactory = Callable[[int], Callbacks]


def caller_from(params: Mapping[str, str]) -> Caller:
    return Caller(number=params.get("From", ""), city=params.get("FromCity", ""),
                  state=params.get("FromState", ""), country=params.get("FromCountry", ""),
                  zip=params.get("FromZip", ""), name=params.get("CallerName", ""))


VoicingFactory = Callable[[Registry], TwilioVoicing]


class CallService:
    def __init__(self, library: FlowLibrary, store: CallStore, responder: Responder,
                 default_flow: str = "receptionist",
                 voicing: VoicingFactory = TwilioVoicing,
                 clock: Callable[[], float] = time.time,
                 limits: CallLimits | None = None) -> None:
        self.library = library
        self.store = store
        self.responder = responder
        self.default_flow = default_flow
        self.voicing = voicing
        self.clock = clock
        self.limits = limits or CallLimits()  # per-caller rate and per-call ceilings

    # -- entry points --------------------------------------------------------------------------

    def incoming(self, params: Mapping[str, str], flow_id: str | None, request_key: str,
                 callbacks: CallbackFactory) -> str:
        with budget.webhook():  # Twilio's 15 s run from here, whatever the calls' clock says
            return self._incoming(params, flow_id, request_key, callbacks)

    def advance(self, call_sid: str, event: Event | None, at_step: int | None,
                request_key: str, callbacks: CallbackFactory) -> str:
        """Step a known call with `event`; None means "carry on" (a resume)."""
        with budget.webhook():
            return self._advance(call_sid, event, at_step, request_key, callbacks)

    def _incoming(self, params: Mapping[str, str], flow_id: str | None, request_key: str,
                  callbacks: CallbackFactory) -> str:
        call_sid = params["CallSid"]
        now = self.clock()
        stored = self.store.stored_response(call_sid, request_key)
        if stored is not None:
            return stored
        existing = self.store.get_state(call_sid)
        if existing is not None:  # Twilio asked again for a call we know: carry on from there
            return self.advance(call_sid, None, None, request_key, callbacks)
        refused = refuse_caller(self.store, self.limits, call_sid, params, now)
        if refused is not None:
            return refused
        pinned = self.library.choose(flow_id, params.get("To", ""), self.default_flow)
        if pinned is None:
            detail = f"no flow for flow={flow_id!r}, To={params.get('To', '')!r}"
            log.error("call %s: %s", call_sid, detail)
            self._record(call_sid, [NewEvent("call.error", {"kind": "flow", "detail": detail})],
                         now)
            return safe_answer(NO_FLOW)
        state = start_state(pinned.flow, pinned.version, call_sid, caller_from(params),
                            params.get("To", ""), now)
        return self._run(pinned, None, state, CallStarted(now), request_key, callbacks, now)

    def _advance(self, call_sid: str, event: Event | None, at_step: int | None,
                 request_key: str, callbacks: CallbackFactory) -> str:
        started = self.clock()
        stored = self.store.stored_response(call_sid, request_key)
        if stored is not None:
            return stored
        state = self.store.get_state(call_sid)
        if state is None:
            log.warning("call %s: webhook for an unknown call", call_sid)
            return safe_answer(UNKNOWN_CALL)
        pinned = self.library.pinned(state.flow_id, state.flow_version)
        if pinned is None:
            detail = f"flow {state.flow_id} version {state.flow_version} is not available"
            log.error("call %s: %s", call_sid, detail)
            self._record(call_sid, [NewEvent("call.error", {"kind": "flow", "detail": detail})],
                         started)
            return safe_answer(APOLOGY)
        if at_step is not None and at_step != state.step:
            # An answer to a question the call has moved past: say where the call is now.
            log.info("call %s: stale webhook for step %s (now %s)", call_sid, at_step,
                     state.step)
            event = None
        return self._run(pinned, state, state, event or Resume(started), request_key,
                         callbacks, started)

    # -- the step, with model rounds, rendered and committed -----------------------------------

    def _run(self, pinned: Pinned, previous: CallState | None, state: CallState, event: Event,
             request_key: str, callbacks: CallbackFactory, started: float) -> str:
        ceiling = over_ceiling(pinned.flow, state, event, self.limits)
        timings: dict[str, object] = {}
        if ceiling is not None:
            new_state, actions = ceiling
        else:
            new_state, actions = step(pinned.flow, state, event)
            new_state, actions, timings = self._answer_model(pinned, new_state, actions, started)
        voicing = self.voicing(pinned.registry)
        twiml = render([a for a in actions if not isinstance(a, Emit)],
                       callbacks(new_state.step), voicing)
        events = [NewEvent(action.name, action.data) for action in actions
                  if isinstance(action, Emit)]
        events += self._speech_failures(pinned, new_state, voicing)
        if timings:
            events.append(NewEvent("call.timing", {
                "node": new_state.node, **timings,
                "answer": round(budget.elapsed(), 3)}))
        try:
            self.store.commit_step(previous, new_state, events, request_key, twiml,
                                   self.clock())
        except StepConflict:
            stored = self.store.stored_response(new_state.call_sid, request_key)
            if stored is not None:
                return stored
            latest = self.store.get_state(new_state.call_sid)
            log.info("call %s: lost a race to another request; resuming", new_state.call_sid)
            return render([Continue()], callbacks(latest.step if latest else 0), voicing)
        metrics.events_written(events)
        return twiml

    def _record(self, call_sid: str, events: list[NewEvent], at: float) -> None:
        self.store.record_events(call_sid, events, at)
        metrics.events_written(events)

    def _answer_model(self, pinned: Pinned, state: CallState, actions: Sequence[Action],
                      started: float) -> tuple[CallState, list[Action], dict[str, object]]:
        """Resolve AskModel / AwaitStream by asking the responder and stepping its answer."""
        done: list[Action] = []
        todo = list(actions)
        rounds = 0
        timings: dict[str, object] = {}
        while todo:
            action = todo.pop(0)
            if not isinstance(action, (AskModel, AwaitStream)):
                done.append(action)
                continue
            rounds += 1
            if rounds > MAX_MODEL_ROUNDS:
                # Ending the answer here would hang up on the caller mid-hold. Have Twilio come
                # back instead: the utterance is still pending, and the resume asks again.
                log.error("call %s: too many model rounds in one webhook", state.call_sid)
                done.append(Continue())
                break
            reply: Replied | Failed
            if isinstance(action, AskModel):
                reply = self.responder.answer(pinned.flow, pinned.registry, state, action,
                                              started)
            else:
                reply = self.responder.resume(pinned.flow, pinned.registry, state, started)
            # The call's own clock dates the reply: a responder's clock (if it has one) may not
            # be the one the call's other times are on, and a hold is measured against them.
            reply = dataclasses.replace(reply, now=self.clock())
            if isinstance(reply, Replied) and reply.timings:
                timings = {**reply.timings, "offline": reply.offline}
            state, more = step(pinned.flow, state, reply)
            todo = more + todo
        return state, done, timings

    @staticmethod
    def _speech_failures(pinned: Pinned, state: CallState,
                         voicing: TwilioVoicing) -> list[NewEvent]:
        """Speech that fell back to Twilio's voice: recorded against the node that spoke, and
        as its tts_failure edge where the flow declares one (ai nodes)."""
        events = []
        for failure in voicing.failures:
            node = failure.node or state.node
            events.append(NewEvent("call.error", {"node": node, "kind": "tts_failure",
                                                  "cause": failure.kind,
                                                  "detail": failure.detail[:300]}))
            spoken_by = pinned.flow.nodes.get(node)
            policy = spoken_by.on_error.get("tts_failure") \
                if isinstance(spoken_by, AiNode) else None
            if policy is not None and policy.voice:
                events.append(NewEvent("call.node", {"node": node, "source": node,
                                                     "edge": "error:tts_failure",
                                                     "strategy": f"voice {policy.voice}"}))
        return events
