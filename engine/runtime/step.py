"""The interpreter: `step(flow, state, event) -> (state, actions)`, with no I/O.

A step runs nodes until the call has to wait for something outside: the caller (a Listen), a
dial or recording result, or a model reply (AskModel). Nodes that need no one (say, switch) are
chained within the same step, bounded by `MAX_HOPS` so a cycle of them cannot spin forever.

A node is left only by an edge of the compiled graph, looked up by its id (`model.edge_id`), and
each edge taken, the error strategy's self-loops included, is recorded as a `call.node` event
naming it (`edge_event`): the graph is the one definition of where a call can go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

from engine.actions.jsonpaths import save
from engine.flows.model import (
    AiNode,
    Edge,
    EdgeKind,
    EdgePart,
    Flow,
    GatherNode,
    HangupNode,
    HttpNode,
    Node,
    RecordNode,
    Route,
    SayNode,
    SwitchNode,
    TransferNode,
    edge_id,
)
from engine.runtime.context import (
    NO_INPUT,
    CallerInput,
    TemplateFailure,
    holds,
    render_text,
    sentiment_values,
    values,
)
from engine.runtime.requests import render_request
from engine.runtime.state import (
    FINAL_STATUSES,
    MACHINE_ANSWERS,
    Action,
    AskModel,
    AwaitRequest,
    AwaitStream,
    Caller,
    CallStarted,
    CallState,
    CallStatus,
    Continue,
    Converse,
    Dial,
    DialEnded,
    Emit,
    Event,
    Failed,
    Hangup,
    Heard,
    HttpAnswered,
    Interrupted,
    Listen,
    MachineAnswered,
    Message,
    Pause,
    Record,
    RecordingDone,
    Replied,
    RequestPending,
    Resume,
    Say,
    SendRequest,
    Silence,
    SpeechFailed,
    StatusChanged,
)
from engine.runtime.templates import is_template

MAX_HOPS = 25
"""Nodes one step may pass through; more means a loop that never waits for the caller."""

MAX_HISTORY = 40
"""Conversation lines kept in the state for the model's context."""

MAX_SENTIMENTS = 100
"""Sentiment scores kept in the state: `sentiment_avg` is over the last this many."""

SAFE_GOODBYE = "Sorry, something went wrong on our side. Please call again later. Goodbye."
DIAL_SUCCESS = frozenset({"completed", "answered"})
MAX_PAUSE = 10.0
"""Longest single <Pause> while holding; longer holds come back and pause again."""
MIN_HOLD = 1.0
"""Seconds a rate-limited call holds at least, even when the model sends no Retry-After."""
RETRY_AFTER_INLINE = 2.0
"""A rate limit asking for a longer wait goes straight to the hold edge instead of retrying."""
RELAY_SPEECH = "relay"
"""The `SpeechFailed.cause` of a relay session whose speech failed (see `SpeechFailed`)."""


class StateChanges(TypedDict, total=False):
    """The fields of `CallState`, for `evolve` (tests/runtime checks that they stay the same)."""

    call_sid: str
    flow_id: str
    flow_version: str
    node: str
    caller: Caller
    called: str
    started_at: float
    personality: str
    step: int
    turn: int
    silences: int
    status: CallStatus
    ended: bool
    path: tuple[str, ...]
    history: tuple[Message, ...]
    pending: str | None
    pending_digits: str
    errors: Mapping[str, int]
    hold_until: float
    offline: bool
    relay_lost: str
    stream: str | None
    stream_offset: int
    stream_personality: str | None
    stream_sentences: int
    sentiments: tuple[float, ...]
    language: str
    detected_language: str
    vars: Mapping[str, Any]
    request: str | None


_FIELDS = tuple(dataclasses.fields(CallState))
_NAMES = frozenset(spec.name for spec in _FIELDS)
_COPYABLE = (all(spec.init for spec in _FIELDS) and "__slots__" not in vars(CallState)
             and not hasattr(CallState, "__post_init__"))
"""Whether a CallState is only its fields, so copying its `__dict__` is `dataclasses.replace`."""


def evolve(state: CallState, **changes: Unpack[StateChanges]) -> CallState:
    """`dataclasses.replace(state, **changes)`, for a tenth of its cost: a step replaces the
    state a few times, and `replace` passes each of the state's two dozen fields through
    `__init__`. The same new frozen value; `state` is not changed."""
    if not _COPYABLE or type(state) is not CallState or not _NAMES.issuperset(changes):
        return dataclasses.replace(state, **changes)  # and its TypeError for an unknown name
    new = object.__new__(CallState)
    fields = new.__dict__
    fields.update(state.__dict__)
    fields.update(changes)
    return new


def entered(state: CallState, node_id: str) -> CallState:
    """`state.at(node_id)` (the state on entering the node: per-node counters start over),
    through `evolve`."""
    return evolve(state, node=node_id, silences=0, path=(*state.path, node_id), errors={},
                  relay_lost="", request=None)


def edge_event(edge: Edge, **detail: Any) -> Emit:
    """The `call.node` event of taking `edge`: the edge as the graph has it, and why it was taken.

    `edge_id` is what coverage and the dashboard match; `source`, `edge` (the kind), `when` (a
    route's condition) and `strategy` (a self-loop's) say the same thing for people reading it.
    """
    route = {"when": edge.label} if edge.kind == "route" else {}
    strategy = {"strategy": edge.strategy} if edge.strategy else {}
    return Emit("call.node", {"node": edge.target, "source": edge.source, "edge": edge.kind,
                              "edge_id": edge.id, **route, **strategy, **detail})


class _Run:
    """One step's working set: the state as it changes and the actions collected so far."""

    def __init__(self, flow: Flow, state: CallState, now: float) -> None:
        self.flow = flow
        self.state = state
        self.now = now
        self.actions: list[Action] = []
        self.hops = 0

    # -- output helpers ----------------------------------------------------------------------

    def emit(self, name: str, **data: Any) -> None:
        self.actions.append(Emit(name, {"node": self.state.node, **data}))

    def say(self, text: str | None, where: str, personality: str | None = None) -> None:
        if not text:
            return
        spoken = self.render(text, where)
        if not spoken:
            return
        voice = personality or self.personality()
        self.actions.append(Say(spoken, voice, self.language(),
                                twilio_voice=self.relay_lost(), node=self.state.node))
        self.remember("agent", spoken)
        self.emit("call.say", text=spoken, personality=voice)

    def remember(self, role: str, text: str) -> None:
        message = Message(role, text, self.state.node)  # type: ignore[arg-type]
        history = (*self.state.history, message)[-MAX_HISTORY:]
        self.state = evolve(self.state, history=history)

    def relay_lost(self) -> bool:
        """Whether the node speaks in the Twilio voice, its relay session's speech lost."""
        return bool(self.state.relay_lost) and self.state.relay_lost == self.state.node

    def personality(self) -> str:
        node = self.flow.nodes.get(self.state.node)
        return (node.personality if node and node.personality else None) or \
            self.state.personality or self.flow.personality

    def context(self, heard: CallerInput = NO_INPUT) -> dict[str, Any]:
        return values(self.flow, self.state, self.now, heard)

    def language(self) -> str:
        """The language the call speaks now: a route's switch, else the flow's default."""
        return self.state.language or self.flow.language

    def switch_language(self, route: Route) -> None:
        """Speak the route's `language` from here on (validation holds it to the flow's)."""
        if route.language and route.language != self.language():
            self.state = evolve(self.state, language=route.language)
            self.emit("call.language", language=route.language)

    def render(self, text: str, where: str) -> str:
        # A text of a flow with `languages` is written in each; speak the call's.
        text = self.flow.text_in(text, self.language())
        if not is_template(text):  # a constant text: no context to build, nothing to render
            return text.strip()
        try:
            return render_text(text, self.context(), where)
        except TemplateFailure as failure:
            self.emit("call.error", kind="template", detail=str(failure))
            return ""

    def fail_safe(self, detail: str) -> None:
        """Nothing sensible is left to do: apologise and hang up rather than leave silence."""
        self.emit("call.error", kind="flow", detail=detail)
        self.actions.append(Say(SAFE_GOODBYE, self.personality(), self.language()))
        self.actions.append(Hangup())
        self.state = evolve(self.state, ended=True)

    # -- moving through the graph ------------------------------------------------------------

    def edge(self, kind: EdgeKind, part: str | int | None = None) -> Edge | None:
        """The compiled edge of this kind (and `part`, see `edge_id`) out of the current node;
        None, after a safe hangup, when the graph has none (validation makes that impossible)."""
        wanted = edge_id(self.state.node, kind, part)
        found = self.flow.edge(wanted)
        if found is None:
            self.fail_safe(f"the flow's graph has no edge {wanted}")
        elif found.target not in self.flow.nodes:
            self.fail_safe(f"edge {wanted} leads to '{found.target}', which the flow does not "
                           f"have")
        else:
            return found
        return None

    def take(self, kind: EdgeKind, part: str | int | None = None, **detail: Any) -> None:
        """Leave the current node by its compiled edge, and enter the node it leads to."""
        edge = self.edge(kind, part)
        if edge is None:
            return
        self.hops += 1
        if self.hops > MAX_HOPS:
            self.fail_safe(f"more than {MAX_HOPS} nodes without waiting for the caller")
            return
        self.state = entered(self.state, edge.target)
        self.actions.append(edge_event(edge, **detail))
        self.enter()

    def loop(self, kind: EdgeKind, part: EdgePart) -> bool:
        """Record the error strategy's self-loop `part` (the call stays on the node); False,
        after a safe hangup, when the graph has no such loop."""
        edge = self.edge(kind, part)
        if edge is None:
            return False
        self.actions.append(edge_event(edge))
        return True

    def machine(self, answered_by: str) -> None:
        """A machine answered: leave wherever the call is by the flow's one `machine` edge
        (drawn from `start`), dropping what the call was waiting for; without `on_machine`,
        only record it."""
        self.emit("call.machine", answered_by=answered_by)
        edge = self.flow.edge(edge_id(self.flow.start, "machine"))
        if edge is None or edge.target not in self.flow.nodes:
            return  # no voicemail drop declared: news only (the shell does not step for it)
        self.hops += 1
        self.state = evolve(entered(self.state, edge.target), pending=None, pending_digits="",
                            stream=None, stream_offset=0)
        self.actions.append(edge_event(edge, answered_by=answered_by))
        self.enter()

    def enter(self) -> None:
        node = self.flow.nodes[self.state.node]
        where = f"nodes.{node.id}"
        if isinstance(node, SayNode):
            self.say(node.text, f"{where}.text")
            if node.pause:
                self.actions.append(Pause(node.pause))
            self.take("next")
        elif isinstance(node, GatherNode):
            self.say(node.prompt, f"{where}.prompt")
            self.listen(node)
        elif isinstance(node, AiNode):
            if self.state.pending is not None and self.state.hold_until > self.now:
                # Back from a hold node in the same step: let Twilio play the hold first.
                self.actions.append(Continue())
            elif self.state.pending is not None:
                # Back from a hold or a retry: answer the utterance still waiting.
                self.actions.append(AskModel(node.id, self.personality()))
            elif node.opening == "ai":
                self.actions.append(AskModel(node.id, self.personality()))
            elif node.conversation == "relay":
                # The opening is the session's welcome greeting, spoken by Twilio's relay.
                greeting = self.render(node.opening, f"{where}.opening") if node.opening else ""
                if greeting:
                    self.remember("agent", greeting)
                    self.emit("call.say", text=greeting, personality=self.personality())
                self.converse(node, greeting)
            else:
                self.say(node.opening, f"{where}.opening")
                self.listen(node)
        elif isinstance(node, SwitchNode):
            route = self.first_route(node, node.routes, NO_INPUT)
            if route is not None:
                self.switch_language(node.routes[route])
                self.take("route", route)
            else:
                self.take("next")
        elif isinstance(node, TransferNode):
            self.say(node.announce, f"{where}.announce")
            target = self.render(node.to, f"{where}.to")
            if not target:
                self.take("transfer_failed", reason="no target")
                return
            self.actions.append(Dial(target, node.timeout, node.caller_id))
            self.emit("call.transfer", to=target, status="dialing")
        elif isinstance(node, RecordNode):
            self.say(node.prompt, f"{where}.prompt")
            self.actions.append(Record(node.max_seconds, node.finish_on_key, node.transcribe))
        elif isinstance(node, HangupNode):
            self.say(node.text, f"{where}.text")
            self.hang_up()
        elif isinstance(node, HttpNode):
            self.send(node)
        else:  # pragma: no cover - every node type is handled above
            self.fail_safe(f"unknown node type {node.type}")

    def send(self, node: HttpNode, attempt: int = 0) -> None:
        """Ask the shell for the node's request; a template that fails is a failed request."""
        try:
            rendered = render_request(node.request, self.context(), f"nodes.{node.id}.request")
        except TemplateFailure as failure:
            self.emit("call.error", kind="template", detail=str(failure))
            self.http_failed(node, Failed(self.now, "http", f"the request did not render: "
                                                            f"{failure}"))
            return
        self.actions.append(SendRequest(
            node.id, rendered.method, rendered.url, rendered.headers, rendered.body,
            rendered.timeout, attempt, waiting=bool(node.say_while_waiting)))

    def answered(self, event: HttpAnswered) -> None:
        """Save the answer's values into `vars` and leave by `next`."""
        node = self.flow.nodes[self.state.node]
        if not isinstance(node, HttpNode) or node.id != event.node:
            self.enter()  # an answer for a node the call has left: say where it is again
            return
        saved = save(event.data, node.save)
        self.state = evolve(self.state, vars={**self.state.vars, **saved}, request=None,
                            errors={})
        self.emit("call.http", **event.exchange, saved=sorted(saved))
        self.take("next")

    def pending_request(self, event: RequestPending) -> None:
        """The request outlasts this webhook: say the waiting line, and come back for it."""
        node = self.flow.nodes[self.state.node]
        if not isinstance(node, HttpNode) or node.id != event.node:
            self.enter()
            return
        self.state = evolve(self.state, request=event.key)
        self.say(node.say_while_waiting, f"nodes.{node.id}.say_while_waiting")
        self.actions.append(Continue())

    def http_failed(self, node: HttpNode, event: Failed) -> None:
        """Retry the request while `on_error.http.retry` allows, then take its `then` edge."""
        count = self.state.errors.get("http", 0) + 1
        self.state = evolve(self.state, errors={**self.state.errors, "http": count},
                            request=None)
        if event.exchange:
            self.emit("call.http", **event.exchange)
        self.emit("call.error", kind="http", detail=event.detail[:500], attempt=count)
        policy = node.on_error.get("http")
        if policy is None:
            self.fail_safe(f"http on '{node.id}' with no strategy for it")
        elif count <= policy.retry:
            if self.loop("error:http", "retry"):
                self.send(node, attempt=count)
        elif policy.then:
            self.take("error:http", "then")
        else:  # pragma: no cover - the schema requires `then`
            self.fail_safe(f"http on '{node.id}' with no edge to take")

    def hang_up(self) -> None:
        self.actions.append(Hangup())
        self.state = evolve(self.state, ended=True)

    def converse(self, node: AiNode, greeting: str = "") -> None:
        """Hold the node's conversation over ConversationRelay (a relay ai node's Listen)."""
        self.actions.append(Converse(node.id, self.state.call_sid, self.personality(),
                                     self.language(), node.hints, greeting,
                                     self.flow.languages))

    def listen(self, node: GatherNode | AiNode) -> None:
        if isinstance(node, AiNode) and node.conversation == "relay" and not self.relay_lost():
            self.converse(node)
            return
        self.actions.append(Listen(
            input=node.input, language=self.language(), hints=node.hints,
            timeout=node.timeout, num_digits=getattr(node, "num_digits", None)))

    def first_route(self, node: Node, routes: tuple[Route, ...],
                    heard: CallerInput) -> int | None:
        """The index of the first route whose condition holds (its edge is `route/<index>`)."""
        context = self.context(heard)
        for index, route in enumerate(routes):
            try:
                if holds(route.when, context, f"nodes.{node.id}.routes[{index}].when"):
                    return index
            except TemplateFailure as failure:  # fail closed: a broken condition never holds
                self.emit("call.error", kind="condition", detail=str(failure))
        return None

    # -- events ------------------------------------------------------------------------------

    def over_limit(self) -> bool:
        limits = self.flow.limits
        if limits is None or self.flow.edge(edge_id(self.state.node, "limit")) is None:
            # Limits bound the nodes that listen, the only ones the graph draws a limit edge
            # from; a late answer on a transfer or record node carries on there.
            return False
        too_many_turns = limits.max_turns is not None and self.state.turn > limits.max_turns
        too_long = (limits.max_seconds is not None
                    and self.now - self.state.started_at > limits.max_seconds)
        if too_many_turns or too_long:
            reason = "max_turns" if too_many_turns else "max_seconds"
            self.state = evolve(self.state, pending=None)
            self.take("limit", reason=reason)
            return True
        return False

    def heard(self, event: Heard) -> None:
        node = self.flow.nodes[self.state.node]
        self.state = evolve(self.state, turn=self.state.turn + 1, silences=0)
        scored = event.sentiment is not None and bool(event.speech)
        mood = {"sentiment": event.sentiment} if scored else {}
        self.emit("call.transcript", speech=event.speech, digits=event.digits,
                  confidence=event.confidence, turn=self.state.turn, **mood)
        if event.speech:
            self.remember("caller", event.speech)
        self.state = evolve(self.state, detected_language=event.language if event.speech else "")
        if scored and event.sentiment is not None:
            # Routes below see this utterance's score already, as they see its speech.
            scores = (*self.state.sentiments, event.sentiment)[-MAX_SENTIMENTS:]
            self.state = evolve(self.state, sentiments=scores)
            self.emit("call.sentiment", turn=self.state.turn, score=event.sentiment,
                      **{key.removeprefix("sentiment_"): value
                         for key, value in sentiment_values(scores).items()
                         if key != "sentiment"})
        if self.over_limit():
            return
        heard = CallerInput(event.speech, event.digits, event.confidence)
        if isinstance(node, (GatherNode, AiNode)):
            route = self.first_route(node, node.routes, heard)
            if route is not None:
                self.switch_language(node.routes[route])
                self.take("route", route)
            elif isinstance(node, GatherNode):
                self.take("next")
            elif event.speech or event.digits:
                utterance = event.speech or f"(pressed {event.digits})"
                self.state = evolve(self.state, pending=utterance,
                                                 pending_digits=event.digits)
                self.actions.append(AskModel(node.id, self.personality()))
            else:
                self.listen(node)
        else:
            self.enter()  # a late answer for a node we already left: say where we are again

    def silence(self) -> None:
        node = self.flow.nodes[self.state.node]
        self.state = evolve(self.state, turn=self.state.turn + 1,
                                         silences=self.state.silences + 1)
        self.emit("call.transcript", speech="", digits="", silence=True, turn=self.state.turn)
        if self.over_limit():
            return
        if not isinstance(node, (GatherNode, AiNode)):
            self.enter()
            return
        policy = node.no_input
        if policy is None:
            self.fail_safe(f"nodes.{node.id} has no no_input strategy")
            return
        if self.state.silences <= policy.retries:
            reprompts = policy.reprompt or ((node.prompt,) if isinstance(node, GatherNode)
                                            else ())
            if reprompts:
                text = reprompts[min(self.state.silences, len(reprompts)) - 1]
                self.say(text, f"nodes.{node.id}.no_input.reprompt")
            self.listen(node)
        else:
            self.take("no_input", retries=policy.retries)

    def resume(self) -> None:
        if self.over_limit():  # a hold that never ends must not outlive `max_seconds`
            return
        node = self.flow.nodes[self.state.node]
        if isinstance(node, HttpNode) and self.state.request is not None:
            self.actions.append(AwaitRequest(node.id))
        elif isinstance(node, AiNode) and self.state.stream is not None:
            self.actions.append(AwaitStream(node.id))
        elif isinstance(node, AiNode) and self.state.pending is not None:
            wait = self.state.hold_until - self.now
            if wait > 0.5:  # still inside the model's Retry-After: keep the caller on hold
                pause = min(wait, MAX_PAUSE)
                # The pause itself lets the time pass: once it has played, ask again.
                self.state = evolve(
                    self.state, hold_until=0.0 if wait <= MAX_PAUSE else self.state.hold_until)
                self.actions.append(Pause(pause))
                self.actions.append(Continue())
            else:
                self.actions.append(AskModel(node.id, self.personality()))
        elif isinstance(node, (GatherNode, AiNode)):
            self.listen(node)
        else:
            self.enter()

    def replied(self, event: Replied) -> None:
        node = self.flow.nodes[self.state.node]
        if not isinstance(node, AiNode):
            return  # a reply that arrived after the call moved on: nothing to say
        exits = {exit_.to for exit_ in node.exits}
        personality = event.personality or self.personality()
        spoken_before = self.state.stream_sentences
        self.state = evolve(
            self.state, pending=None, pending_digits="", errors={}, hold_until=0.0,
            offline=event.offline or self.state.offline,
            stream=None if event.final else event.stream,
            stream_offset=0 if event.final else event.offset,
            stream_personality=None if event.final else personality,
            stream_sentences=0 if event.final else spoken_before + (1 if event.text else 0))
        if event.text:
            self.actions.append(Say(event.text, personality, self.language(),
                                    twilio_voice=self.relay_lost(), node=self.state.node))
            history = self.state.history
            if spoken_before and history and history[-1].role == "agent":
                # A later part of a reply streamed in parts: one message in the transcript,
                # as the model wrote it, not one per webhook.
                whole = dataclasses.replace(history[-1], text=f"{history[-1].text} {event.text}")
                self.state = evolve(self.state, history=(*history[:-1], whole))
            else:
                self.remember("agent", event.text)
            self.emit("call.response", text=event.text, offline=event.offline,
                      personality=personality, final=event.final, part=spoken_before,
                      timings=dict(event.timings))
        if not event.final:
            self.actions.append(Continue())  # the rest is still arriving
            return
        if event.exit is not None and event.exit not in exits:
            # The model asked for an edge the node does not declare: ignore it, keep talking.
            self.emit("call.error", kind="ai_failure", detail=f"undeclared exit {event.exit!r}")
        elif event.exit is not None:
            self.take("exit", event.exit)
            return
        self.listen(node)

    def speech_lost(self, event: SpeechFailed) -> None:
        """A relay session's speech failed: record it (and the tts_failure edge), say the
        node's last line again in the Twilio voice, and listen by <Gather>."""
        node = self.flow.nodes[self.state.node]
        self.actions += speech_failed(self.flow, self.state, event)
        if not isinstance(node, AiNode):
            self.enter()
            return
        self.state = evolve(self.state, relay_lost=node.id, stream=None, stream_offset=0,
                            stream_personality=None, stream_sentences=0)
        history = self.state.history
        if history and history[-1].role == "agent" and history[-1].node == node.id:
            # What the caller may not have heard; in the transcript once already.
            self.actions.append(Say(history[-1].text, self.personality(), self.language(),
                                    twilio_voice=True, node=node.id))
        if self.state.pending is not None:
            self.actions.append(AskModel(node.id, self.personality()))
        else:
            self.listen(node)

    def interrupted(self, event: Interrupted) -> None:
        """Keep of the reply the caller talked over only what they heard of it."""
        node = self.flow.nodes[self.state.node]
        history = self.state.history
        if isinstance(node, AiNode) and history and history[-1].role == "agent":
            heard = " ".join(event.heard.split())
            kept = (dataclasses.replace(history[-1], text=heard),) if heard else ()
            self.state = evolve(self.state, history=(*history[:-1], *kept))
        self.emit("call.interrupt", heard=event.heard, duration_ms=event.duration_ms)

    def failed(self, event: Failed) -> None:
        node = self.flow.nodes[self.state.node]
        if isinstance(node, HttpNode):
            self.http_failed(node, event)
            return
        policy = node.on_error.get(event.kind) if isinstance(node, AiNode) else None  # type: ignore[call-overload]
        count = self.state.errors.get(event.kind, 0) + 1
        mid_stream = self.state.stream is not None
        self.state = evolve(
            self.state, errors={**self.state.errors, event.kind: count}, stream=None,
            stream_offset=0, stream_personality=None, stream_sentences=0,
            hold_until=event.now + event.retry_after if event.kind == "rate_limit" else 0.0)
        self.emit("call.error", kind=event.kind, detail=event.detail[:500], attempt=count)
        if mid_stream and isinstance(node, AiNode):
            # The reply's first part was spoken and answered the utterance (it is no longer
            # pending): end the turn and listen. An error edge now would retry a question that
            # is gone, i.e. have the model greet the caller anew.
            self.listen(node)
            return
        if not isinstance(node, AiNode) or policy is None:
            self.fail_safe(f"{event.kind} on '{node.id}' with no strategy for it")
            return
        edge: EdgeKind = f"error:{event.kind}"  # type: ignore[assignment]
        retry_now = event.kind == "network" or event.retry_after <= RETRY_AFTER_INLINE
        if event.kind in ("network", "rate_limit") and count <= policy.retry and retry_now:
            if self.loop(edge, "retry"):
                self.actions.append(AskModel(node.id, self.personality(), attempt=count))
        elif event.kind == "ai_failure" and policy.personality and count == 1:
            if self.loop(edge, "personality"):
                self.actions.append(AskModel(node.id, policy.personality, attempt=count))
        elif policy.then:
            if event.kind == "rate_limit":
                # The hold node comes back to retry the utterance: not before the model allows,
                # and never straight away, or the hold would only play after the retries.
                self.state = evolve(
                    self.state, hold_until=event.now + max(event.retry_after, MIN_HOLD))
            else:
                # Other edges move on from the utterance.
                self.state = evolve(self.state, pending=None)
            self.take(edge, "then")
        else:
            self.fail_safe(f"{event.kind} on '{node.id}' with no edge to take")


def start_state(flow: Flow, version: str, call_sid: str, caller: Any, called: str,
                now: float) -> CallState:
    """The state of a call that has just rung, before its first step: on the flow's start node,
    speaking as the flow's personality, pinned to flow `version`, its clock (`max_seconds`)
    started at `now`."""
    return CallState(call_sid=call_sid, flow_id=flow.id, flow_version=version, node=flow.start,
                     caller=caller, called=called, started_at=now,
                     personality=flow.personality)


def speech_failed(flow: Flow, state: CallState, event: SpeechFailed) -> list[Action]:
    """The events of speech that fell back to the Twilio voice: the failure, charged to the node
    that spoke, and that node's `tts_failure` voice edge where it declares one (ai nodes)."""
    node_id = event.node or state.node
    actions: list[Action] = [Emit("call.error", {
        "node": node_id, "kind": "tts_failure", "cause": event.cause,
        "detail": event.detail[:300]})]
    # The graph has this edge exactly when the node is an ai node whose tts_failure policy
    # names a voice; a say node, or a node the flow does not have, records the error alone.
    voice = flow.edge(edge_id(node_id, "error:tts_failure", "voice"))
    if voice is not None:
        actions.append(edge_event(voice))
    return actions


def step(flow: Flow, state: CallState, event: Event) -> tuple[CallState, list[Action]]:
    """Advance `state` by one `event`; return the new state and what the shell must do, in order.

    No I/O, and `state` is not changed (a new one is returned). A status callback that is not
    final, and a speech failure, are news, not moves: the state comes back as it was. Anything
    else counts a step; on a call that has ended it only hangs up again. Where the flow cannot go
    on (no edge, an unknown node, a loop that never waits, an error with no strategy) the caller
    hears an apology and the call hangs up, with a `call.error` event of kind `flow`.
    """
    if isinstance(event, StatusChanged) and event.status not in FINAL_STATUSES:
        # News, not a move: stepping would make the question the caller is answering stale.
        return state, []
    if isinstance(event, SpeechFailed) and not (
            event.cause == RELAY_SPEECH and not state.ended and event.node == state.node):
        # News too, about an answer already given (perhaps the goodbye of a call that has
        # ended): recorded, and the call stays exactly where it is.
        return state, speech_failed(flow, state, event)
    run = _Run(flow, evolve(state, step=state.step + 1), event.now)
    if isinstance(event, StatusChanged):
        run.state = evolve(run.state, status=event.status,  # type: ignore[arg-type]
                           ended=True)
        run.emit("call.end", status=event.status, duration=event.duration)
        return run.state, run.actions
    if state.ended:
        run.actions.append(Hangup())
        return run.state, run.actions
    if state.node not in flow.nodes:
        run.fail_safe(f"the call is on node '{state.node}', which the flow does not have")
        return run.state, run.actions
    if isinstance(event, CallStarted):
        run.state = entered(run.state, flow.start)
        run.emit("call.start", flow=flow.id, caller=state.caller.number, called=state.called,
                 personality=flow.personality)
        if event.answered_by in MACHINE_ANSWERS and flow.on_machine:
            run.machine(event.answered_by)
        else:
            run.enter()
    elif isinstance(event, MachineAnswered):
        run.machine(event.answered_by)
    elif isinstance(event, Heard):
        run.heard(event)
    elif isinstance(event, Silence):
        run.silence()
    elif isinstance(event, Resume):
        run.resume()
    elif isinstance(event, Replied):
        run.replied(event)
    elif isinstance(event, Failed):
        run.failed(event)
    elif isinstance(event, Interrupted):
        run.interrupted(event)
    elif isinstance(event, SpeechFailed):
        run.speech_lost(event)
    elif isinstance(event, HttpAnswered):
        run.answered(event)
    elif isinstance(event, RequestPending):
        run.pending_request(event)
    elif isinstance(event, DialEnded):
        node = flow.nodes[state.node]
        if isinstance(node, TransferNode):
            run.emit("call.transfer", to=run.render(node.to, f"nodes.{node.id}.to"),
                     status=event.status, duration=event.duration)
            if event.status in DIAL_SUCCESS:
                if node.next:
                    run.take("next")
                else:
                    run.hang_up()
            else:
                run.take("transfer_failed", status=event.status)
        else:
            run.enter()
    elif isinstance(event, RecordingDone):
        node = flow.nodes[state.node]
        run.emit("call.recording", url=event.url, duration=event.duration)
        if isinstance(node, RecordNode):
            run.take("next")
        else:
            run.enter()
    return run.state, run.actions
