"""The call service: one webhook in, one TwiML answer out, the call's step stored with it.

This is the I/O shell around the pure `step`: it loads the call's state and pinned flow, turns
model requests into replies through the responder, renders TwiML and commits state, events and
answer together. A repeated webhook gets the stored answer and steps nothing; a concurrent
duplicate loses the race in the store and gets the winner's answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from engine.ai.responder import Responder
from engine.flows.model import Registry
from engine.runtime.state import (
    Action,
    AskModel,
    Caller,
    CallStarted,
    CallState,
    Continue,
    Emit,
    Event,
    Say,
)
from engine.runtime.step import start_state, step
from engine.store import CallStore, NewEvent, StepConflict
from engine.twiml import Callbacks, PlayAudio, SayWith, Voicing, render, safe_answer
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


def twilio_voicing(registry: Registry) -> Voicing:
    def voice(say: Say) -> SayWith | PlayAudio:
        personality = registry.personalities.get(say.personality)
        name = personality.voice.twilio if personality else "Polly.Joanna-Neural"
        return SayWith(say.text, name, say.language)

    return voice


class CallService:
    def __init__(self, library: FlowLibrary, store: CallStore, responder: Responder,
                 default_flow: str = "receptionist",
                 voicing: Callable[[Registry], Voicing] = twilio_voicing,
                 clock: Callable[[], float] = time.time) -> None:
        self.library = library
        self.store = store
        self.responder = responder
        self.default_flow = default_flow
        self.voicing = voicing
        self.clock = clock

    # -- entry points --------------------------------------------------------------------------

    def incoming(self, params: Mapping[str, str], flow_id: str | None, request_key: str,
                 callbacks: CallbackFactory) -> str:
        call_sid = params["CallSid"]
        stored = self.store.stored_response(call_sid, request_key)
        if stored is not None:
            return stored
        now = self.clock()
        existing = self.store.get_state(call_sid)
        if existing is not None:  # Twilio asked again for a call we know: carry on from there
            return self.advance(call_sid, None, None, request_key, callbacks)
        pinned = self.library.choose(flow_id, params.get("To", ""), self.default_flow)
        if pinned is None:
            detail = f"no flow for flow={flow_id!r}, To={params.get('To', '')!r}"
            log.error("call %s: %s", call_sid, detail)
            self.store.record_events(call_sid, [NewEvent("call.error", {
                "kind": "flow", "detail": detail})], now)
            return safe_answer(NO_FLOW)
        state = start_state(pinned.flow, pinned.version, call_sid, caller_from(params),
                            params.get("To", ""), now)
        return self._run(pinned, None, state, CallStarted(now), request_key, callbacks)

    def advance(self, call_sid: str, event: Event | None, at_step: int | None,
                request_key: str, callbacks: CallbackFactory) -> str:
        """Step a known call with `event`; None means "carry on" (a resume)."""
        from engine.runtime.state import Resume

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
            self.store.record_events(call_sid, [NewEvent("call.error", {
                "kind": "flow", "detail": detail})], self.clock())
            return self._safe(state, pinned)
        if at_step is not None and at_step != state.step:
            # An answer to a question the call has moved past: say where the call is now.
            log.info("call %s: stale webhook for step %s (now %s)", call_sid, at_step,
                     state.step)
            event = None
        return self._run(pinned, state, state, event or Resume(self.clock()), request_key,
                         callbacks)

    # -- the step, with model rounds, rendered and committed -----------------------------------

    def _run(self, pinned: Pinned, previous: CallState | None, state: CallState, event: Event,
             request_key: str, callbacks: CallbackFactory) -> str:
        new_state, actions = step(pinned.flow, state, event)
        new_state, actions = self._answer_model(pinned, new_state, actions)
        events = [NewEvent(action.name, action.data) for action in actions
                  if isinstance(action, Emit)]
        twiml = render([a for a in actions if not isinstance(a, Emit)],
                       callbacks(new_state.step), self.voicing(pinned.registry))
        try:
            self.store.commit_step(previous, new_state, events, request_key, twiml,
                                   self.clock())
        except StepConflict:
            stored = self.store.stored_response(new_state.call_sid, request_key)
            if stored is not None:
                return stored
            latest = self.store.get_state(new_state.call_sid)
            log.info("call %s: lost a race to another request; resuming", new_state.call_sid)
            return render([Continue()], callbacks(latest.step if latest else 0),
                          self.voicing(pinned.registry))
        return twiml

    def _answer_model(self, pinned: Pinned, state: CallState,
                      actions: Sequence[Action]) -> tuple[CallState, list[Action]]:
        done: list[Action] = []
        todo = list(actions)
        rounds = 0
        while todo:
            action = todo.pop(0)
            if not isinstance(action, AskModel):
                done.append(action)
                continue
            rounds += 1
            if rounds > MAX_MODEL_ROUNDS:
                log.error("call %s: too many model rounds in one webhook", state.call_sid)
                break
            reply = self.responder.answer(pinned.flow, pinned.registry, state, action,
                                          self.clock())
            state, more = step(pinned.flow, state, reply)
            todo = more + todo
        return state, done

    def _safe(self, state: CallState | None, pinned: Pinned | None) -> str:
        return safe_answer(APOLOGY)
