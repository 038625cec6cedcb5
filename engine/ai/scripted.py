"""A scripted model and scripted speech, for scenario files: the `Responder` port, replayed.

`ScriptedResponder` answers each model request with the next scripted entry (a reply, an exit,
or one of the flow language's error kinds) and keeps a record of what it was asked. A `tool`
entry before it is a call of one of the node's tools, run as a model's would be (its request
answered by the scenario's scripted API). When the flow
asks and nothing is scripted, it raises `Unscripted` rather than invent an answer: the webhook
then apologises and hangs up (as for any internal failure), and the scenario runner reports the
request it could not answer. `ScriptedVoicing` makes the next `n` spoken texts fail to
synthesise, which is how a `tts_failure` is scripted: the call speaks with Twilio's voice and
records the tts_failure edge, exactly as with a real speech outage.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.ai.chat_stream import ToolCall
from engine.ai.tools import MAX_TOOL_ROUNDS, ToolRunner
from engine.flows.model import AiNode, Flow, Registry
from engine.flows.scenarios import ModelScript
from engine.runtime.state import AskModel, CallState, Failed, Replied, Say
from engine.speech.voices import TwilioVoicing
from engine.twiml import PlayAudio, SayWith


class Unscripted(AssertionError):
    """The flow asked the model and no answer was scripted for it."""


@dataclass(frozen=True)
class Asked:
    """One request the flow made of the model."""

    node: str
    personality: str
    utterance: str | None
    attempt: int
    answered_with: ModelScript | None


class ScriptedResponder:
    """The `Responder` of a scenario: each request takes the next scripted entry (a reply, an
    exit or an error), and is recorded in `asked`; with none left it raises `Unscripted`."""

    offline = False

    def __init__(self, clock: Callable[[], float] = time.time,
                 tools: ToolRunner | None = None) -> None:
        self.clock = clock
        self.queue: deque[ModelScript] = deque()
        self.asked: list[Asked] = []
        # Runs a `tool` entry's call as the model's would be run (engine.ai.tools), its request
        # answered by the scenario's `http` entries; None: tool entries are not run.
        self.tools = tools

    def script(self, entries: Iterable[ModelScript]) -> None:
        """Answers for the coming requests, in order (tts_failure entries are for the voicing)."""
        self.queue.extend(entry for entry in entries if entry.error != "tts_failure")

    def unused(self) -> list[ModelScript]:
        """The scripted entries no request has taken yet, in order."""
        return list(self.queue)

    def clear(self) -> None:
        """Drop the entries not taken yet (`asked` is kept)."""
        self.queue.clear()

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               started: float) -> Replied | Failed:
        now = self.clock()
        entry = self.queue.popleft() if self.queue else None
        node = flow.nodes.get(ask.node)
        rounds = 0
        while entry is not None and entry.tool is not None:
            if rounds == MAX_TOOL_ROUNDS:
                self.asked.append(Asked(ask.node, ask.personality, state.pending, ask.attempt,
                                        entry))
                return Failed(now, "ai_failure", f"the model called tools {rounds} times and "
                                                 f"then {entry.tool} again")
            rounds += 1
            if self.tools is not None and isinstance(node, AiNode):
                call = ToolCall(entry.tool, json.dumps(dict(entry.args)), f"call_{rounds}")
                self.tools.answer(flow, node, state, {0: call}, "", None)
            entry = self.queue.popleft() if self.queue else None
        self.asked.append(Asked(ask.node, ask.personality, state.pending, ask.attempt, entry))
        if entry is None:
            heard = f"the caller said {state.pending!r}" if state.pending is not None \
                else "to open the conversation"
            raise Unscripted(f"the flow asked the model on node '{ask.node}' ({heard}), but no "
                             f"answer was scripted; add `model: {{reply: ...}}` to the step")
        if entry.error is not None:
            return Failed(now, entry.error, entry.detail or f"scripted {entry.error}",
                          entry.retry_after)
        return Replied(now, entry.reply, exit=entry.exit, personality=ask.personality,
                       timings={"first_token": 0.0, "first_sentence": 0.0})

    def resume(self, flow: Flow, registry: Registry, state: CallState,
               started: float) -> Replied | Failed:
        return Failed(self.clock(), "ai_failure", "scripted replies do not stream")


@dataclass
class SpeechFailures:
    """How many of the next spoken texts fail to synthesise; shared by a call's voicings."""

    pending: int = 0


@dataclass
class ScriptedVoicing(TwilioVoicing):
    """Twilio voices, except that the next `plan.pending` texts first fail to synthesise."""

    plan: SpeechFailures = field(default_factory=SpeechFailures)

    def __call__(self, say: Say) -> SayWith | PlayAudio:
        if self.plan.pending > 0 and not say.twilio_voice:
            self.plan.pending -= 1
            self.fail(say, "scripted", "speech synthesis failed (scripted tts_failure)")
        return self.twilio(say)


def scripted_voicing(plan: SpeechFailures) -> Callable[[Registry], TwilioVoicing]:
    """A `VoicingFactory` for the call service: one voicing a webhook, one plan for all."""

    def make(registry: Registry) -> TwilioVoicing:
        return ScriptedVoicing(registry, plan=plan)

    return make
