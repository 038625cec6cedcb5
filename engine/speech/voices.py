"""Which voice speaks a `Say`: OpenAI speech from the cache, or Twilio's own `<Say>`.

A voicing object (the `Voicing` port of engine/calls/ports.py) lives for one webhook, and the
call service asks it before rendering. It never fails: when synthesis does, it speaks the same
text with the personality's Twilio voice (the `tts_failure` strategy) and keeps the failure in
`failures`, which the call service steps as `SpeechFailed`. It never makes the webhook late
either: synthesis gets only the time left before `SPEAK_BY` (seconds into the webhook), and
after one failure the rest of the webhook's texts go straight to the Twilio voice rather than
wait on a failing endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.ai import budget
from engine.calls.ports import SpeechFailure
from engine.flows.model import Registry
from engine.runtime.state import Say
from engine.speech.cache import AudioCache, audio_key
from engine.speech.tts import SpeechFailed, Synthesizer
from engine.twiml import PlayAudio, SayWith

log = logging.getLogger(__name__)


DEFAULT_TWILIO_VOICE = "Polly.Joanna-Neural"
SPEAK_BY = 11.5
"""Seconds into a webhook after which no synthesis runs: Twilio gives up at 15 s."""
MIN_SYNTHESIS = 0.5


@dataclass
class TwilioVoicing:
    """Every `Say` with the personality's Twilio voice (no OpenAI key, or by choice)."""

    registry: Registry
    failures: list[SpeechFailure] = field(default_factory=list)

    def fail(self, say: Say, kind: str, detail: str) -> None:
        """Record that `say` could not be synthesised (`kind`, `detail`), charged to its node."""
        self.failures.append(SpeechFailure(kind, detail, say.node))

    def twilio(self, say: Say) -> SayWith:
        """`say` as a Twilio `<Say>` in its personality's Twilio voice for its language
        (`DEFAULT_TWILIO_VOICE` when the personality is unknown).
        """
        personality = self.registry.personalities.get(say.personality)
        voice = personality.voice.for_language(say.language).twilio if personality \
            else DEFAULT_TWILIO_VOICE
        return SayWith(say.text, voice, say.language)

    def __call__(self, say: Say) -> SayWith | PlayAudio:
        return self.twilio(say)


@dataclass
class SpeechVoicing(TwilioVoicing):
    """OpenAI speech where the personality has an OpenAI voice; Twilio's voice otherwise."""

    synthesizer: Synthesizer | None = None
    cache: AudioCache | None = None
    audio_url: Callable[[str], str] = lambda key: f"/audio/{key}.mp3"
    speak_by: float = SPEAK_BY

    def __call__(self, say: Say) -> SayWith | PlayAudio:
        personality = self.registry.personalities.get(say.personality)
        # The voice for the text's language: the audio cache is keyed by it with the text.
        voice = personality.voice.for_language(say.language).openai if personality else None
        if say.twilio_voice or voice is None or self.synthesizer is None or self.cache is None:
            return self.twilio(say)
        key = audio_key(say.text, voice)
        if not self.cache.has(key):
            left = self.speak_by - budget.elapsed()
            if self.failures or left < MIN_SYNTHESIS:
                # Speech failed earlier in this webhook, or there is no time to try: say it
                # with Twilio's voice now (a failure is recorded for this text only if new).
                if not self.failures:
                    self.fail(say, "network", "no time left in the webhook for speech")
                return self.twilio(say)
            try:
                self.cache.put(key, self.synthesizer.synthesize(say.text, voice, left))
            except SpeechFailed as failure:
                log.warning("speech failed (%s): %s; speaking with Twilio's voice",
                            failure.kind, failure.detail)
                self.fail(say, failure.kind, failure.detail)
                return self.twilio(say)
        return PlayAudio(self.audio_url(key))
