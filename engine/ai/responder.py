"""The port the call service asks for replies: a model, or the offline responder."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from engine.ai.offline import offline_reply
from engine.flows.model import AiNode, Flow, Personality, Registry
from engine.runtime.state import AskModel, CallState, Failed, Replied


def reply_target(flow: Flow, registry: Registry, ask: AskModel,
                 now: float) -> tuple[AiNode, Personality] | Failed:
    """The node and personality a reply is asked for, or the failure when either is missing."""
    node = flow.nodes.get(ask.node)
    personality = registry.personalities.get(ask.personality)
    if not isinstance(node, AiNode) or personality is None:
        return Failed(now, "ai_failure", f"cannot answer on node {ask.node!r}")
    return node, personality


class Responder(Protocol):
    """What the call service asks for the model's replies on ai nodes. A reply, or the failure
    the flow's error strategy handles, comes back as the event to step the call with.
    `offline` is True when no model answers (the call records its replies as offline)."""

    offline: bool

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               started: float) -> Replied | Failed:
        """Reply to `state.pending` (or open the conversation when it is None).

        `started` is when the webhook arrived: the reply must fit in what is left of it.
        """

    def resume(self, flow: Flow, registry: Registry, state: CallState,
               started: float) -> Replied | Failed:
        """More of the reply streaming under `state.stream`."""


class OfflineResponder:
    """Answers from the personality's examples and the node's exits; no model, no network."""

    offline = True

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               started: float) -> Replied | Failed:
        now = self.clock()
        target = reply_target(flow, registry, ask, now)
        if isinstance(target, Failed):
            return target
        node, personality = target
        business = str(flow.vars.get("business", ""))
        reply = offline_reply(node, personality, state.pending, business)
        return Replied(now, reply.text, exit=reply.exit, personality=personality.id,
                       offline=True, timings={"first_token": 0.0, "first_sentence": 0.0})

    def resume(self, flow: Flow, registry: Registry, state: CallState,
               started: float) -> Replied | Failed:
        return Failed(self.clock(), "ai_failure", "the offline responder does not stream")
