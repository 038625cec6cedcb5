"""Text to speech through the `openai` SDK's audio endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai

from engine.ai.errors import classify
from engine.flows.model import OpenAIVoice
from engine.speech.cache import AUDIO_FORMAT

MAX_INPUT_CHARS = 4096  # the endpoint's limit
SPEECH_TIMEOUT = 6.0
"""Longest wait for one synthesis; a webhook gives it less when less is left (see voices.py)."""


def _timeout(seconds: float) -> openai.Timeout:
    return openai.Timeout(seconds, connect=min(2.0, seconds), pool=min(2.0, seconds))


class SpeechFailed(Exception):
    """Synthesis failed; `kind` is a flow error kind (network, rate_limit, ai_failure, ...)
    as `engine.ai.errors.classify` names it, and `detail` says what happened.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Synthesizer:
    """Speech for a text in an OpenAI voice, through the SDK's audio endpoint."""

    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client

    def synthesize(self, text: str, voice: OpenAIVoice,
                   timeout: float = SPEECH_TIMEOUT) -> bytes:
        """MP3 audio of `text`; raises SpeechFailed (with an error kind) on any failure."""
        try:
            response = self.client.audio.speech.create(
                model=voice.model, voice=voice.voice, input=text[:MAX_INPUT_CHARS],
                response_format=AUDIO_FORMAT, instructions=voice.instructions or openai.omit,
                timeout=_timeout(min(timeout, SPEECH_TIMEOUT)))
            audio = response.read()
        except Exception as error:
            found = classify(error)
            raise SpeechFailed(found.kind, found.detail) from error
        if not looks_like_mp3(audio):
            # The SDK does not parse speech bodies: an error page would be "played" otherwise.
            raise SpeechFailed("ai_failure", "the speech endpoint returned something that is "
                                             "not MP3 audio")
        return audio


def looks_like_mp3(audio: bytes) -> bool:
    """An ID3 tag or an MPEG frame sync at the start."""
    return len(audio) >= 16 and (audio.startswith(b"ID3")
                                 or (audio[0] == 0xFF and audio[1] & 0xE0 == 0xE0))


SpeechTimer = Callable[[str, float], None]
"""Told of each synthesis: its outcome ("ok" or "failed") and its seconds."""


class TimedSynthesizer(Synthesizer):
    """A `Synthesizer` that tells `timer` how each request went; it behaves the same otherwise."""

    def __init__(self, client: openai.OpenAI, timer: SpeechTimer) -> None:
        super().__init__(client)
        self.timer = timer

    def synthesize(self, *args: Any, **kwargs: Any) -> bytes:
        """As `Synthesizer.synthesize`; the timer hears "ok" or "failed" and the seconds
        taken, whether it returns or raises.
        """
        # Whatever Synthesizer's parameters are, passed through untouched.
        started = time.perf_counter()
        outcome = "failed"
        try:
            audio = super().synthesize(*args, **kwargs)
            outcome = "ok"
            return audio
        finally:
            self.timer(outcome, time.perf_counter() - started)
