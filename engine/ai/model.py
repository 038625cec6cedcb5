"""Replies from a model through the `openai` SDK: streamed, with tools, inside Twilio's deadline.

A webhook asks for a reply and waits only for the first complete sentence; the stream goes on in
a thread and the rest is picked up by the continuation webhook (see `engine.ai.stream`). Every
failure comes back as a `Failed` event of the flow language's kinds, and the interpreter decides
which edge that takes; this module only retries when the interpreter asks it to (AskModel with
`attempt` > 0), with exponential backoff and jitter inside the time that is left. That time is
measured from the webhook's start on a monotonic clock (`engine.ai.budget`), never on the calls'
clock, which tests freeze and which may jump. The stream itself is read by
`engine.ai.chat_stream`, which takes from each event only what a phone turn uses.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import openai

from engine.ai import budget
from engine.ai.chat_stream import ChatStream, ToolCall
from engine.ai.errors import classify
from engine.ai.parameters import MAX_REFUSALS, PROCESS_PARAMETERS, ModelParameters
from engine.ai.prompt import exit_tools, messages
from engine.ai.responder import reply_target
from engine.ai.speakable import (
    first_sentence,
    limit_reply,
    speakable,
    split_sentences,
    whole_sentences,
)
from engine.ai.stream import ReplyStream, StreamRegistry, StreamSnapshot
from engine.ai.tokens import TokenReply
from engine.ai.tools import MAX_TOOL_ROUNDS, ToolRunner, tool_specs
from engine.flows.model import AiNode, Flow, Personality, Registry
from engine.runtime.context import values
from engine.runtime.state import AskModel, CallState, Failed, Replied
from engine.store import CallStore, NewEvent

log = logging.getLogger(__name__)

WEBHOOK_BUDGET = 10.0
"""Seconds a webhook may spend on the model: Twilio gives up at 15 s; keep a wide margin."""
FIRST_SENTENCE_BUDGET = 7.0
MIN_ATTEMPT = 1.0
"""A model call needs at least this long to be worth starting."""
BACKOFF_BASE = 0.25
BACKOFF_CAP = 2.0
RETRY_AFTER_CAP = 2.0
"""A rate limit retried within the webhook waits for its Retry-After, up to this long (a longer
one goes to the flow's hold node; see `engine.runtime.step.RETRY_AFTER_INLINE`)."""

# The SDK defaults to 600 s and 2 retries of its own; on a phone call we decide both.
REQUEST_TIMEOUT = openai.Timeout(connect=2.0, read=6.0, write=5.0, pool=2.0)


def make_client(api_key: str, base_url: str | None) -> openai.OpenAI:
    """A client with the call path's timeouts and no retries of its own (see `shared_client`)."""
    return openai.OpenAI(api_key=api_key, base_url=base_url or None, timeout=REQUEST_TIMEOUT,
                         max_retries=0)


_clients: dict[tuple[str, str], openai.OpenAI] = {}
_clients_lock = threading.Lock()


def shared_client(api_key: str, base_url: str | None) -> openai.OpenAI:
    """The process's one client for this key and endpoint, made on first use.

    It pools connections (keep-alive, TLS sessions), so the model, speech, the warm-up and every
    app the process creates (tests, CLI commands) share it rather than each opening their own.
    """
    key = (api_key, base_url or "")
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = make_client(api_key, base_url)
            # The SDK imports its resources on first use: about a tenth of a second (more on a
            # busy machine), which the first caller of each server process would wait for
            # while every other thread of that process waits on the import lock. Pay it here,
            # when the app is made, instead.
            _ = client.chat.completions, client.audio.speech
        return client


def backoff(attempt: int, rng: random.Random) -> float:
    """Full jitter: a random delay up to base × 2^(attempt-1), capped."""
    return rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))


class EventWriter(Protocol):
    """Where the responder writes events that belong to no step (engine.calls.EventRecorder)."""

    def record(self, call_sid: str, events: Sequence[NewEvent], at: float) -> None:
        """Store `events` of `call_sid`, stamped `at`."""


class ModelResponder:
    """The `Responder` of a model behind the `openai` SDK (any OpenAI-compatible endpoint).

    `answer` starts the reply streaming in a thread of its own and waits only for its first
    sentence (at most `first_sentence_budget`, within `webhook_budget` of the webhook's start);
    a reply still arriving then comes back not final, and `resume` reads the rest from any
    process. A retry (`AskModel.attempt` > 0) first backs off. Failures of the model come back
    as `Failed` events of the flow's error kinds, never as exceptions.
    """

    offline = False

    def __init__(self, client: openai.OpenAI, store: CallStore, default_model: str, *,
                 recorder: EventWriter, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None,
                 webhook_budget: float = WEBHOOK_BUDGET,
                 first_sentence_budget: float = FIRST_SENTENCE_BUDGET,
                 parameters: ModelParameters = PROCESS_PARAMETERS,
                 tools: ToolRunner | None = None) -> None:
        self.client = client
        self.store = store
        self.recorder = recorder  # events outside a step: a stream's partial text, its failure
        self.default_model = default_model
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.webhook_budget = webhook_budget
        self.first_sentence_budget = first_sentence_budget
        self.streams = StreamRegistry(store)
        # Which parameters each model takes (engine.ai.parameters), per endpoint: a refusal
        # learned by one call spares every later one the round trip.
        self.parameters = parameters
        self.endpoint = str(client.base_url)
        # Runs the tools ai nodes declare (engine.ai.tools); None: they are not offered.
        self.tools = tools

    # -- the Responder port --------------------------------------------------------------------

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               started: float) -> Replied | Failed:
        target = reply_target(flow, registry, ask, self.clock())
        if isinstance(target, Failed):
            return target
        node, personality = target
        if ask.attempt > 0:
            # Backoff with jitter, and no sooner than a short Retry-After allows.
            delay = max(backoff(ask.attempt, self.rng),
                        min(RETRY_AFTER_CAP, state.hold_until - self.clock()))
            if self._left() - delay < MIN_ATTEMPT:
                return Failed(self.clock(), "network", "no time left in this webhook to retry")
            self.sleep(delay)
        left = self._left()
        if left < MIN_ATTEMPT:
            return Failed(self.clock(), "network", "the webhook's time for the model is used up")
        key = f"{state.call_sid}:{state.step}:{ask.attempt}:{personality.id}"
        # Stream times are durations (time to first token ...): a monotonic clock, not `clock`.
        stream = ReplyStream(key, self.store, self._partial_publisher(state.call_sid, node.id),
                             time.monotonic)
        self.streams.add(stream)
        request = self._request(flow, node, personality, state)
        # The thread runs in a copy of this context: its log lines carry the call (engine.logs).
        threading.Thread(target=contextvars.copy_context().run,
                         args=(self._consume, stream, request, node, flow, state), daemon=True,
                         name=f"model-{state.call_sid[-6:]}").start()
        snapshot = stream.wait(lambda s: s.has_sentence,
                               min(self.first_sentence_budget, left))
        reply = self._first_reply(snapshot, key, personality, state, node.id)
        if isinstance(reply, Failed) and not snapshot.done:
            stream.abandon()  # nobody will read the rest: stop reading it
        return reply

    def resume(self, flow: Flow, registry: Registry, state: CallState,
               started: float) -> Replied | Failed:
        """The rest of a streamed reply whose first sentence was spoken already."""
        key = state.stream or ""
        personality = registry.personalities.get(state.stream_personality or "")
        max_sentences = personality.style.max_sentences if personality else 2
        snapshot = self.streams.wait(key, lambda s: s.done, max(0.5, self._left()))
        now = self.clock()
        if snapshot is None:
            return Failed(now, "ai_failure", "the streamed reply was lost")
        spoken = len(split_sentences(speakable(snapshot.text[:state.stream_offset])))
        sentences_left = max(0, max_sentences - spoken)
        rest = snapshot.text[state.stream_offset:]
        if snapshot.done and snapshot.error_kind is None:
            return Replied(now, limit_reply(rest, sentences_left), exit=snapshot.exit,
                           personality=state.stream_personality)
        # Cut off, or still unfinished after a whole webhook's wait: say what is complete and
        # end the turn there (a late exit is lost; the caller is not kept waiting for it).
        said, _ = whole_sentences(rest, ended=snapshot.done)
        if snapshot.error_kind is not None:
            if not speakable(said):
                return Failed(now, snapshot.error_kind, snapshot.error_detail,
                              snapshot.retry_after)
            self._record_error(state.call_sid, state.node, snapshot)
        else:
            log.warning("call %s: the model was still streaming after the continuation's "
                        "wait; ending the turn", state.call_sid)
        return Replied(now, limit_reply(said, sentences_left),
                       personality=state.stream_personality)

    def tokens(self, flow: Flow, registry: Registry, state: CallState,
               ask: AskModel) -> TokenReply | Failed:
        """A reply to `state.pending` to read delta by delta (a relay session speaks it as it
        comes), or the failure when the node or personality is missing. No deadline of a
        webhook applies: the session waits as long as the caller does."""
        target = reply_target(flow, registry, ask, self.clock())
        if isinstance(target, Failed):
            return target
        node, personality = target
        request = self._request(flow, node, personality, state)
        tools = self.tools

        def run_tools(calls: Mapping[int, ToolCall], text: str) -> list[dict[str, Any]] | None:
            # No webhook waits on a relay session: each request has its own timeout only.
            return tools.answer(flow, node, state, calls, text, None) if tools else None

        return TokenReply(self.client, request, self.parameters, self.endpoint,
                          lambda calls: self._chosen_exit(node, calls), run_tools)

    # -- internals -----------------------------------------------------------------------------

    def _left(self) -> float:
        """What is left of this webhook's budget for the model (a monotonic measure: the calls'
        clock may stand still or jump)."""
        return self.webhook_budget - budget.elapsed()

    def _request(self, flow: Flow, node: AiNode, personality: Personality,
                 state: CallState) -> dict[str, Any]:
        context = values(flow, state, self.clock())
        request: dict[str, Any] = {
            "model": personality.model or self.default_model,
            "messages": messages(flow, node, personality, state, context),
            "temperature": personality.style.temperature,
            "max_tokens": 60 * personality.style.max_sentences + 40,
            "stream": True,
        }
        tools = exit_tools(node) + (tool_specs(node) if self.tools is not None else [])
        if tools:
            request["tools"] = tools
        return self.parameters.fit(self.endpoint, request)

    def _partial_publisher(self, call_sid: str, node_id: str) -> Callable[[str], None]:
        def publish(text: str) -> None:
            try:
                self.recorder.record(call_sid, [NewEvent("call.response.partial", {
                    "node": node_id, "text": text})], self.clock())
            except Exception:  # a partial event is nice to have; the reply must go on
                log.exception("call %s: could not record a partial reply", call_sid)

        return publish

    def _consume(self, stream: ReplyStream, request: dict[str, Any], node: AiNode,
                 flow: Flow, state: CallState) -> None:
        try:
            self._read(stream, request, node, flow, state)
        except Exception:  # the store went away (shutdown): nothing left to tell anyone
            log.exception("model stream %s: could not record the reply", stream.key)

    def _read(self, stream: ReplyStream, request: dict[str, Any], node: AiNode, flow: Flow,
              state: CallState) -> None:
        refusals = rounds = 0
        while True:
            kind, retry = self._read_once(stream, request, node, flow, state,
                                          retry_refusals=refusals < MAX_REFUSALS,
                                          tools_left=MAX_TOOL_ROUNDS - rounds)
            if retry is None:
                return
            if kind == "refused":
                refusals += 1
            else:
                rounds += 1
            request = retry

    def _read_once(self, stream: ReplyStream, request: dict[str, Any], node: AiNode,
                   flow: Flow, state: CallState, retry_refusals: bool = True,
                   tools_left: int = 0) -> tuple[str, dict[str, Any] | None]:
        """Read one answer into `stream`. The request to send next, if any: the same without a
        parameter the server refused (a 400 before any text: engine.ai.parameters), kind
        "refused"; or, when the model called the node's tools, with their answers (kind
        "tools", at most MAX_TOOL_ROUNDS times, the last asked to answer in words)."""
        reply = ChatStream(self.client, request)
        before = len(stream.snapshot.text)
        try:
            try:
                for text in reply.texts():
                    if stream.abandoned:
                        return "done", None
                    if before and len(stream.snapshot.text) == before and text.strip() \
                            and not stream.snapshot.text[-1:].isspace():
                        text = " " + text.lstrip()  # a later round's words, after the first's
                    stream.add_text(text)
            except Exception as error:
                retry = self.parameters.after_refusal(self.endpoint, request, error) \
                    if retry_refusals and not stream.snapshot.text else None
                if retry is not None:
                    log.info("model %s refused %s; sent again without it",
                             request.get("model"), ", ".join(sorted(set(request) - set(retry))))
                    return "refused", retry
                found = classify(error)
                log.warning("model call failed (%s): %s", found.kind, found.detail)
                stream.fail(found.kind, found.detail, found.retry_after)
                return "done", None
            if tools_left > 0 and self.tools is not None:
                # Each tool request must be answered inside the webhook that waits for it.
                answered = self.tools.answer(flow, node, state, reply.tool_calls,
                                             stream.snapshot.text[before:],
                                             budget.began() + self.webhook_budget)
                if answered is not None:
                    more = {**request, "messages": [*request["messages"], *answered]}
                    if tools_left == 1:
                        more["tool_choice"] = "none"  # the last round: answer in words
                    return "tools", more
            exit_ = self._chosen_exit(node, reply.tool_calls)
            if not speakable(stream.snapshot.text) and exit_ is None:
                stream.fail("ai_failure", "the model gave an empty or unusable reply")
            else:
                stream.finish(exit_)
            return "done", None
        finally:
            reply.close()  # after finishing: the caller is not kept waiting for the drain

    @staticmethod
    def _chosen_exit(node: AiNode, calls: Mapping[int, ToolCall]) -> str | None:
        declared = {exit_.to for exit_ in node.exits}
        tools = {tool.name for tool in node.tools}
        for call in calls.values():
            if call.name in tools:
                continue  # answered by engine.ai.tools, not a way out of the node
            if call.name not in declared:
                log.warning("model called undeclared tool %r on node %s; ignored",
                            call.name[:60], node.id)
                continue
            try:
                arguments = json.loads(call.arguments or "{}")
            except json.JSONDecodeError:
                log.warning("model called %s with malformed arguments; ignored", call.name)
                continue
            if not isinstance(arguments, dict):
                log.warning("model called %s with non-object arguments; ignored", call.name)
                continue
            return call.name
        return None

    def _first_reply(self, snapshot: StreamSnapshot, key: str, personality: Personality,
                     state: CallState, node_id: str) -> Replied | Failed:
        now = self.clock()
        timings = {
            "first_token": _since(snapshot.first_token_at),
            "first_sentence": _since(snapshot.first_sentence_at),
        }
        text = snapshot.text
        max_sentences = personality.style.max_sentences
        if snapshot.done and snapshot.error_kind is not None:
            # Cut off: whole sentences that arrived can still be said; a half one cannot.
            said, _ = whole_sentences(text, ended=True)
            if not speakable(said):
                return Failed(now, snapshot.error_kind, snapshot.error_detail,
                              snapshot.retry_after)
            self._record_error(state.call_sid, node_id, snapshot)
            return Replied(now, limit_reply(said, max_sentences), personality=personality.id,
                           timings=timings)
        if snapshot.done:
            return Replied(now, limit_reply(text, max_sentences), exit=snapshot.exit,
                           personality=personality.id, timings=timings)
        split = first_sentence(text)
        if split is None:
            return Failed(now, "network", "no sentence from the model within the deadline")
        sentence, rest = split
        return Replied(now, limit_reply(sentence, 1), personality=personality.id, final=False,
                       stream=key, offset=len(text) - len(rest), timings=timings)

    def _record_error(self, call_sid: str, node_id: str, snapshot: StreamSnapshot) -> None:
        """A stream that failed after whole sentences arrived: they are spoken, and the
        failure is recorded here (no error edge is taken: the caller got an answer)."""
        try:
            self.recorder.record(call_sid, [NewEvent("call.error", {
                "node": node_id, "kind": snapshot.error_kind,
                "detail": f"reply cut short: {snapshot.error_detail}"[:500]})], self.clock())
        except Exception:
            log.exception("call %s: could not record a cut-short reply", call_sid)


def _since(moment: float | None) -> float | None:
    """Seconds from the start of the webhook to a stream's (monotonic) moment."""
    return round(moment - budget.began(), 3) if moment is not None else None
