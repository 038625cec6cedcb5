"""Fakes for the call service's ports: a clock that moves when told, a responder that answers
from a script, a voicing that fails the texts it is told to. The store is the real SQLite one
(on a temporary file): its atomic commits are what the duplicate-webhook tests are about."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ElementTree
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.calls import SpeechFailure, Voicing
from engine.flows.model import Flow, Registry
from engine.runtime.state import AskModel, CallState, Failed, Replied, Say
from engine.twiml import PlayAudio, SayWith

START = 1_767_700_000.0  # a Tuesday, 2026-01-06 12:26 UTC


@dataclass
class FakeClock:
    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Answer = Callable[[float, AskModel], Replied | Failed]


def reply(text: str, exit: str | None = None) -> Answer:
    return lambda now, ask: Replied(now, text, exit=exit, personality=ask.personality)


def fail(kind: str, detail: str = "scripted") -> Answer:
    return lambda now, ask: Failed(now, kind, detail)


@dataclass
class FakeResponder:
    """Answers each ask with the next scripted answer; records what it was asked."""

    clock: FakeClock
    script: deque[Answer] = field(default_factory=deque)
    asked: list[tuple[AskModel, str | None]] = field(default_factory=list)
    gate: threading.Event | None = None  # when set: every answer waits for it
    offline: bool = False

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               started: float) -> Replied | Failed:
        self.asked.append((ask, state.pending))
        if self.gate is not None:
            self.gate.wait(timeout=30)
        if not self.script:
            return Failed(self.clock(), "ai_failure", "nothing scripted")
        return self.script.popleft()(self.clock(), ask)

    def resume(self, flow: Flow, registry: Registry, state: CallState,
               started: float) -> Replied | Failed:
        return Failed(self.clock(), "ai_failure", "the fake does not stream")


@dataclass
class FakeVoicing:
    """Twilio voices; a text listed in `failing` fails to synthesise (once per webhook)."""

    failing: set[str]
    failures: list[SpeechFailure] = field(default_factory=list)

    def __call__(self, say: Say) -> SayWith | PlayAudio:
        if say.text in self.failing and not say.twilio_voice:
            self.failures.append(SpeechFailure("network", "speech endpoint down", say.node))
        return SayWith(say.text, "Polly.Joanna-Neural", say.language)


def voicing_failing(failing: set[str]) -> Callable[[Registry], Voicing]:
    return lambda registry: FakeVoicing(failing)


def spoken(twiml: str) -> list[str]:
    """The texts a TwiML answer says, in order."""
    return [element.text or "" for element in ElementTree.fromstring(twiml).iter("Say")]


def elements(twiml: str) -> list[str]:
    return [element.tag for element in ElementTree.fromstring(twiml).iter()]
