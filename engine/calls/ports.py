"""The ports the call service is built with, as protocols and plain types.

The call service asks the world for four things besides the store: a reply to what the caller
said (`engine.ai.responder.Responder`), the voice a text is spoken in (`Voicing`, made per
webhook by a `VoicingFactory`), the time (`Clock`), and where Twilio posts next
(`engine.calls.urls.CallbackUrls`). Adapters (engine/speech, engine/ai) implement them; the
composition root (engine/bootstrap.py) picks which.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from engine.flows.model import Registry
from engine.runtime.state import Say
from engine.twiml import PlayAudio, SayWith

Clock = Callable[[], float]
"""Epoch seconds: the calls' `now` (what `open_between` and `limits.max_seconds` see)."""


@dataclass(frozen=True)
class SpeechFailure:
    """A text that could not be synthesised and was spoken with the Twilio voice instead."""

    kind: str  # network, rate_limit, ai_failure, ... as engine.ai.errors classifies it
    detail: str
    node: str  # the node whose text it was: the failure is charged to its edge


class Voicing(Protocol):
    """Picks how one `Say` is spoken, for one webhook. It never fails: when speech cannot be
    made it answers with the Twilio voice and keeps the failure in `failures`."""

    failures: list[SpeechFailure]

    def __call__(self, say: Say) -> SayWith | PlayAudio: ...


VoicingFactory = Callable[[Registry], Voicing]
"""A fresh `Voicing` for a webhook, over the personalities of the call's flow version."""
