"""The port the call service asks for replies: a model, or the offline responder."""

from __future__ import annotations

from typing import Protocol

from engine.ai.offline import offline_reply
from engine.flows.model import AiNode, Flow, Registry
from engine.runtime.state import AskModel, CallState, Failed, Replied


class Responder(Protocol):
    offline: bool

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               now: float) -> Replied | Failed:
        """Reply to `state.pending` (or open the conversation when it is None)."""


class OfflineResponder:
    """Answers from the personality's examples and the node's exits; no model, no network."""

    offline = True

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               now: float) -> Replied | Failed:
        node = flow.nodes.get(ask.node)
        personality = registry.personalities.get(ask.personality)
        if not isinstance(node, AiNode) or personality is None:
            return Failed(now, "ai_failure", f"cannot answer on node {ask.node!r}")
        business = str(flow.vars.get("business", ""))
        reply = offline_reply(node, personality, state.pending, business)
        return Replied(now, reply.text, exit=reply.exit, personality=personality.id,
                       offline=True)
