"""Replies from a model through the `openai` SDK: streamed, with tools, inside Twilio's deadline.

A webhook asks for a reply and waits only for the first complete sentence; the stream goes on in
a thread and the rest is picked up by the continuation webhook (see `engine.ai.stream`). Every
failure comes back as a `Failed` event of the flow language's kinds, and the interpreter decides
which edge that takes; this module only retries when the interpreter asks it to (AskModel with
`attempt` > 0), with exponential backoff and jitter inside the time that is left.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import openai

from engine.ai.errors import classify
from engine.ai.prompt import exit_tools, messages
from engine.ai.speakable import first_sentence, limit_reply, speakable
from engine.ai.stream import ReplyStream, StreamRegistry, StreamSnapshot
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

# The SDK defaults to 600 s and 2 retries of its own; on a phone call we decide both.
REQUEST_TIMEOUT = openai.Timeout(connect=2.0, read=6.0, write=5.0, pool=2.0)


def make_client(api_key: str, base_url: str | None) -> openai.OpenAI:
    """One client per process: it pools connections to the endpoint."""
    return openai.OpenAI(api_key=api_key, base_url=base_url or None, timeout=REQUEST_TIMEOUT,
                         max_retries=0)


def backoff(attempt: int, rng: random.Random) -> float:
    """Full jitter: a random delay up to base × 2^(attempt-1), capped."""
    return rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))


class ModelResponder:
    offline = False

    def __init__(self, client: openai.OpenAI, store: CallStore, default_model: str, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None,
                 webhook_budget: float = WEBHOOK_BUDGET,
                 first_sentence_budget: float = FIRST_SENTENCE_BUDGET) -> None:
        self.client = client
        self.store = store
        self.default_model = default_model
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.webhook_budget = webhook_budget
        self.first_sentence_budget = first_sentence_budget
        self.streams = StreamRegistry(store)

    # -- the Responder port --------------------------------------------------------------------

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               started: float) -> Replied | Failed:
        node = flow.nodes.get(ask.node)
        personality = registry.personalities.get(ask.personality)
        if not isinstance(node, AiNode) or personality is None:
            return Failed(self.clock(), "ai_failure", f"cannot answer on node {ask.node!r}")
        if ask.attempt > 0:
            delay = backoff(ask.attempt, self.rng)
            if self._left(started) - delay < MIN_ATTEMPT:
                return Failed(self.clock(), "network", "no time left in this webhook to retry")
            self.sleep(delay)
        left = self._left(started)
        if left < MIN_ATTEMPT:
            return Failed(self.clock(), "network", "the webhook's time for the model is used up")
        key = f"{state.call_sid}:{state.step}:{ask.attempt}:{personality.id}"
        stream = ReplyStream(key, self.store, self._partial_publisher(state.call_sid, node.id),
                             self.clock)
        self.streams.add(stream)
        request = self._request(flow, node, personality, state)
        # The thread runs in a copy of this context: its log lines carry the call (engine.logs).
        threading.Thread(target=contextvars.copy_context().run,
                         args=(self._consume, stream, request, node), daemon=True,
                         name=f"model-{state.call_sid[-6:]}").start()
        snapshot = stream.wait(lambda s: s.has_sentence,
                               min(self.first_sentence_budget, left))
        return self._first_reply(snapshot, key, personality, started)

    def resume(self, flow: Flow, registry: Registry, state: CallState,
               started: float) -> Replied | Failed:
        """The rest of a streamed reply whose first sentence was spoken already."""
        key = state.stream or ""
        personality = registry.personalities.get(state.stream_personality or "")
        max_sentences = personality.style.max_sentences if personality else 2
        snapshot = self.streams.wait(key, lambda s: s.done, max(0.5, self._left(started)))
        now = self.clock()
        if snapshot is None:
            return Failed(now, "ai_failure", "the streamed reply was lost")
        rest = snapshot.text[state.stream_offset:]
        if snapshot.done:
            if snapshot.error_kind and not speakable(rest):
                return Failed(now, snapshot.error_kind, snapshot.error_detail,
                              snapshot.retry_after)
            budget = max(1, max_sentences - state.stream_sentences)
            return Replied(now, limit_reply(rest, budget), exit=snapshot.exit,
                           personality=state.stream_personality)
        spoken, remaining = [], rest
        while (split := first_sentence(remaining)) is not None:
            sentence, remaining = split
            spoken.append(sentence)
        return Replied(now, speakable(" ".join(spoken)), personality=state.stream_personality,
                       final=False, stream=key,
                       offset=state.stream_offset + len(rest) - len(remaining))

    # -- internals -----------------------------------------------------------------------------

    def _left(self, started: float) -> float:
        return self.webhook_budget - (self.clock() - started)

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
        tools = exit_tools(node)
        if tools:
            request["tools"] = tools
        return request

    def _partial_publisher(self, call_sid: str, node_id: str) -> Callable[[str], None]:
        def publish(text: str) -> None:
            try:
                self.store.record_events(call_sid, [NewEvent("call.response.partial", {
                    "node": node_id, "text": text})], self.clock())
            except Exception:  # a partial event is nice to have; the reply must go on
                log.exception("call %s: could not record a partial reply", call_sid)

        return publish

    def _consume(self, stream: ReplyStream, request: dict[str, Any], node: AiNode) -> None:
        calls: dict[int, dict[str, str]] = {}
        try:
            response = self.client.chat.completions.create(**request)
            with response:
                for chunk in response:
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    if delta.content:
                        stream.add_text(delta.content)
                    for call in delta.tool_calls or ():
                        slot = calls.setdefault(call.index, {"name": "", "arguments": ""})
                        if call.function and call.function.name:
                            slot["name"] += call.function.name
                        if call.function and call.function.arguments:
                            slot["arguments"] += call.function.arguments
        except Exception as error:
            found = classify(error)
            log.warning("model call failed (%s): %s", found.kind, found.detail)
            stream.fail(found.kind, found.detail, found.retry_after)
            return
        exit_ = self._chosen_exit(node, calls)
        if not speakable(stream.snapshot.text) and exit_ is None:
            stream.fail("ai_failure", "the model gave an empty or unusable reply")
        else:
            stream.finish(exit_)

    @staticmethod
    def _chosen_exit(node: AiNode, calls: dict[int, dict[str, str]]) -> str | None:
        declared = {exit_.to for exit_ in node.exits}
        for call in calls.values():
            if call["name"] not in declared:
                log.warning("model called undeclared tool %r on node %s; ignored",
                            call["name"][:60], node.id)
                continue
            try:
                arguments = json.loads(call["arguments"] or "{}")
            except json.JSONDecodeError:
                log.warning("model called %s with malformed arguments; ignored", call["name"])
                continue
            if not isinstance(arguments, dict):
                log.warning("model called %s with non-object arguments; ignored", call["name"])
                continue
            return call["name"]
        return None

    def _first_reply(self, snapshot: StreamSnapshot, key: str, personality: Personality,
                     started: float) -> Replied | Failed:
        now = self.clock()
        timings = {
            "first_token": _since(started, snapshot.first_token_at),
            "first_sentence": _since(started, snapshot.first_sentence_at),
        }
        text = snapshot.text
        if snapshot.error_kind and not speakable(text):
            return Failed(now, snapshot.error_kind, snapshot.error_detail, snapshot.retry_after)
        if snapshot.done:
            return Replied(now, limit_reply(text, personality.style.max_sentences),
                           exit=snapshot.exit, personality=personality.id, timings=timings)
        split = first_sentence(text)
        if split is None:
            return Failed(now, "network", "no sentence from the model within the deadline")
        sentence, rest = split
        return Replied(now, speakable(sentence), personality=personality.id, final=False,
                       stream=key, offset=len(text) - len(rest), timings=timings)


def _since(started: float, moment: float | None) -> float | None:
    return round(moment - started, 3) if moment is not None else None
