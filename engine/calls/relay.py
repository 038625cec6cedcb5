"""The call service's side of a ConversationRelay session: turns stepped inside the session, and
the handoff that carries the way out of the node to the `<Connect action>` webhook.

A relay ai node's turns happen on a WebSocket, not in webhooks, but through the same pure `step`,
the same store and the same events. `RelayTurns.step` steps one event (what the caller said or
pressed, the model's reply, its failure) and commits it when the call stays on the node, as a
webhook's step is committed (state, events and an answer under the session's own request key).
An event that would take the call off the node (a route, an exit, a limit, an error edge, a
hang-up) is not committed: the session ends with `end`, its `handoffData` naming the event
(`handoff`), and the `<Connect action>` webhook steps it through `CallService.advance`
(`handed_off`), which answers the next node's TwiML. So the graph moves in one place, whichever
transport the call is on, and an edge taken is recorded once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from engine.calls.library import Pinned
from engine.calls.limits import ModelBudget, over_ceiling
from engine.calls.relay_voice import connect_relay
from engine.calls.service import CallService, scored
from engine.flows.model import AiNode, SayNode
from engine.runtime.context import TemplateFailure, render_text, values
from engine.runtime.state import (
    Action,
    AskModel,
    CallState,
    Converse,
    Emit,
    Event,
    Failed,
    Heard,
    Replied,
    Resume,
    Say,
    Silence,
    SpeechFailed,
)
from engine.runtime.step import step
from engine.runtime.templates import is_template
from engine.store import NewEvent, StepConflict
from engine.twiml import render

log = logging.getLogger(__name__)

HANDOFF_VERSION = 1
MAX_HANDOFF_CHARS = 8192
"""What a handoff may hold: an utterance (2000 characters at most) and a few names."""
MAX_UTTERANCE = 2000
"""Characters of one prompt kept, as a <Gather> turn's SpeechResult is cut."""
HOLD_LINE = "One moment, please."
"""What a rate-limited session says before it asks again, when its hold node has no text."""

STAYS = (Emit, Say, AskModel, Converse)
"""The actions a session carries out itself; any other (a hang-up, a dial, a pause, a
redirect) needs TwiML, so the event that asks for it is handed off."""


@dataclass(frozen=True)
class RelayCall:
    """A call on a relay ai node, as the session knows it: the flow version it is pinned to,
    its latest state (the one last committed), and the node."""

    pinned: Pinned
    state: CallState
    node: AiNode


@dataclass(frozen=True)
class Turn:
    """What stepping one event inside a session gave. `left`: the event leaves the node, so
    nothing was committed and the session must hand it off; else `call` is the call after
    the committed step and `actions` what the session must do (speak, ask the model)."""

    call: RelayCall
    actions: tuple[Action, ...] = ()
    left: bool = False
    moved: bool = False  # the call was changed by someone else (a webhook): stop the session


def encode_event(event: Event) -> dict[str, Any]:
    """An event a session hands off, as plain JSON (its time is the webhook's when read)."""
    if isinstance(event, Heard):
        return {"type": "heard", "speech": event.speech, "digits": event.digits,
                "confidence": event.confidence}
    if isinstance(event, Silence):
        return {"type": "silence"}
    if isinstance(event, Replied):
        return {"type": "replied", "exit": event.exit, "personality": event.personality,
                "offline": event.offline}
    if isinstance(event, Failed):
        return {"type": "failed", "kind": event.kind, "detail": event.detail[:500],
                "retry_after": event.retry_after}
    if isinstance(event, SpeechFailed):
        return {"type": "speech_failed", "node": event.node, "cause": event.cause,
                "detail": event.detail[:300]}
    return {"type": "resume"}


def _text(data: dict[str, Any], key: str, limit: int) -> str:
    value = data.get(key, "")
    return value[:limit] if isinstance(value, str) else ""


def decode_event(data: Any, now: float) -> Event | None:
    """The event `encode_event` wrote, dated `now`; None for anything else."""
    if not isinstance(data, dict):
        return None
    kind = data.get("type")
    if kind == "heard":
        confidence = data.get("confidence", 0.0)
        if not isinstance(confidence, int | float) or not 0.0 <= confidence <= 1.0:
            confidence = 0.0
        return Heard(now, _text(data, "speech", MAX_UTTERANCE), float(confidence),
                     "".join(c for c in _text(data, "digits", 32) if c in "0123456789*#"))
    if kind == "silence":
        return Silence(now)
    if kind == "replied":
        exit_, personality = data.get("exit"), data.get("personality")
        return Replied(now, "", exit=exit_[:100] if isinstance(exit_, str) else None,
                       personality=personality[:100] if isinstance(personality, str) else None,
                       offline=data.get("offline") is True)
    if kind == "failed":
        retry_after = data.get("retry_after", 0.0)
        if not isinstance(retry_after, int | float) or not 0.0 <= retry_after <= 3600:
            retry_after = 0.0
        failure = _text(data, "kind", 40)
        if failure not in ("network", "rate_limit", "ai_failure"):
            return None
        return Failed(now, failure, _text(data, "detail", 500), float(retry_after))
    if kind == "speech_failed":
        return SpeechFailed(now, _text(data, "node", 100), _text(data, "cause", 40) or "relay",
                            _text(data, "detail", 300))
    if kind == "resume":
        return Resume(now)
    return None


def hold_line(call: RelayCall, now: float) -> str:
    """What a session says before it asks a rate-limited model again: the text of the hold
    node the node's `rate_limit` edge leads to (a `say` node) in the call's language, else
    `HOLD_LINE`."""
    policy = call.node.on_error.get("rate_limit")
    flow = call.pinned.flow
    target = flow.nodes.get(policy.then) if policy is not None and policy.then else None
    if isinstance(target, SayNode) and target.text:
        # In the call's language, as the hold node itself would say it.
        text = flow.text_in(target.text, call.state.language or flow.language).strip()
        if is_template(text):
            try:
                text = render_text(text, values(flow, call.state, now), f"nodes.{target.id}.text")
            except TemplateFailure:
                text = ""
        if text:
            return text
    return HOLD_LINE


def handoff(call: RelayCall, event: Event | None, reason: str = "") -> str:
    """The `handoffData` of a session's `end`: which call, at which step, and the event the
    `<Connect action>` webhook steps (None: carry on where the call is)."""
    return json.dumps({"v": HANDOFF_VERSION, "call": call.state.call_sid,
                       "step": call.state.step, "node": call.node.id,
                       "event": encode_event(event) if event is not None else {"type": "resume"},
                       **({"reason": reason} if reason else {})}, ensure_ascii=False)


@dataclass(frozen=True)
class Handoff:
    """A handoff read back: the step it was made at and the event to step."""

    step: int | None
    event: Event | None


def handed_off(raw: str, call_sid: str, now: float) -> Handoff:
    """The `HandoffData` Twilio posted back, read for `call_sid`: anything malformed, too long
    or for another call is no event (the call carries on where it is)."""
    if not raw or len(raw) > MAX_HANDOFF_CHARS:
        return Handoff(None, None)
    try:
        data = json.loads(raw)
    except ValueError:
        log.warning("call %s: relay handoff is not JSON", call_sid)
        return Handoff(None, None)
    if not isinstance(data, dict) or data.get("call") != call_sid \
            or data.get("v") != HANDOFF_VERSION:
        log.warning("call %s: relay handoff is not this call's", call_sid)
        return Handoff(None, None)
    at = data.get("step")
    at_step = at if isinstance(at, int) and not isinstance(at, bool) and at >= 0 else None
    return Handoff(at_step, decode_event(data.get("event"), now))


class RelayTurns:
    """Steps a relay session's events through `service`'s store, responder and recorder."""

    def __init__(self, service: CallService) -> None:
        self.service = service

    @property
    def clock(self) -> Any:
        """The calls' clock (the service's)."""
        return self.service.clock

    def open(self, call_sid: str) -> RelayCall | str:
        """The call a session's `setup` names, when it is a stored call in progress on a relay
        ai node; else why not, as a short reason."""
        service = self.service
        state = service.store.get_state(call_sid)
        if state is None:
            return "unknown call"
        if state.ended:
            return "the call has ended"
        pinned = service.library.pinned(state.flow_id, state.flow_version)
        if pinned is None:
            return "the call's flow version is not available"
        node = pinned.flow.nodes.get(state.node)
        if not isinstance(node, AiNode) or node.conversation != "relay":
            return f"the call is on node '{state.node}', not a relay ai node"
        if state.relay_lost == node.id:
            return f"node '{node.id}' goes on by <Gather>: its relay session lost its speech"
        return RelayCall(pinned, state, node)

    def budget(self) -> ModelBudget:
        """The model-request budget for one turn (MODEL_CALLS_PER_HOUR)."""
        return ModelBudget(self.service.store, self.service.limits,
                           self.service.responder.offline)

    def step(self, call: RelayCall, event: Event, request_key: str,
             news: tuple[Action, ...] = ()) -> Turn:
        """Step `event` on the call's latest state: committed (with `news`, events that came
        before it) when the call stays on the node, else left for the handoff."""
        service = self.service
        flow = call.pinned.flow
        # A prompt's sentiment and (in a flow of several languages) its language, as a
        # <Gather> turn's speech gets them.
        event = scored(event, call.state.language or flow.language, flow.spoken_languages())
        if over_ceiling(flow, call.state, event, service.limits) is not None:
            return Turn(call, left=True)
        new_state, actions = step(flow, call.state, event)
        if new_state.ended or new_state.node != call.node.id \
                or not all(isinstance(action, STAYS) for action in actions):
            return Turn(call, left=True)
        events = [NewEvent(a.name, a.data) for a in (*news, *actions) if isinstance(a, Emit)]
        if isinstance(event, Replied) and event.timings:
            events.append(NewEvent("call.timing", {"node": call.node.id, "transport": "relay",
                                                   **event.timings, "offline": event.offline}))
        converse = Converse(call.node.id, new_state.call_sid, new_state.personality,
                            new_state.language or flow.language, call.node.hints,
                            languages=flow.languages)
        answer = render([connect_relay(converse, call.pinned.registry)],
                        service.urls.for_step(new_state.step))
        try:
            service.store.commit_step(call.state, new_state, events, request_key, answer,
                                      self.clock())
        except StepConflict:
            log.info("call %s: moved on outside the relay session", call.state.call_sid)
            return Turn(call, moved=True)
        service.recorder.written(events)
        return Turn(RelayCall(call.pinned, new_state, call.node), tuple(actions))

    def record(self, call: RelayCall, name: str, data: dict[str, Any]) -> None:
        """Record an event of the session that is no step (a Twilio error, an interruption);
        never raises."""
        try:
            self.service.recorder.record(call.state.call_sid, [NewEvent(name, {
                "node": call.node.id, **data})], self.clock())
        except Exception:
            log.exception("call %s: could not record %s", call.state.call_sid, name)
