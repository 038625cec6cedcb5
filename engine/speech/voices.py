"""Which voice speaks a `Say`: OpenAI speech from the cache, or Twilio's own `<Say>`.

A voicing object lives for one webhook. It never fails: when synthesis does, it speaks the same
text with the personality's Twilio voice (the `tts_failure` edge) and keeps the failure in
`failures` for the call service to record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.flows.model import Registry
from engine.runtime.state import Say
from engine.speech.cache import AudioCache, audio_key
from engine.speech.tts import SpeechFailed, Synthesizer
from engine.twiml import PlayAudio, SayWith

log = logging.getLogger(__name__)

DEFAULT_TWILIO_VOICE = "Polly.Joanna-Neural"


@dataclass
class TwilioVoicing:
    """Every `Say` with the personality's Twilio voice (no OpenAI key, or by choice)."""

    registry: Registry
    failures: list[tuple[str, str]] = field(default_factory=list)

    def twilio(self, say: Say) -> SayWith:
        personality = self.registry.personalities.get(say.personality)
        voice = personality.voice.twilio if personality else DEFAULT_TWILIO_VOICE
        return SayWith(say.text, voice, say.language)

    def __call__(self, say: Say) -> SayWith | PlayAudio:
        return self.twilio(say)


@dataclass
class SpeechVoicing(TwilioVoicing):
    """OpenAI speech where the personality has an OpenAI voice; Twilio's voice otherwise."""

    synthesizer: Synthesizer | None = None
    cache: AudioCache | None = None
    audio_url: Callable[[str], str] = lambda key: f"/audio/{key}.mp3"

    def __call__(self, say: Say) -> SayWith | PlayAudio:
        personality = self.registry.personalities.get(say.personality)
        voice = personality.voice.openai if personality else None
        if say.twilio_voice or voice is None or self.synthesizer is None or self.cache is None:
            return self.twilio(say)
        key = audio_key(say.text, voice)
        if not self.cache.has(key):
            try:
                self.cache.put(key, self.synthesizer.synthesize(say.text, voice))
            except SpeechFailed as failure:
                log.warning("speech failed (%s): %s; speaking with Twilio's voice",
                            failure.kind, failure.detail)
                self.failures.append((failure.kind, failure.detail))
                return self.twilio(say)
        return PlayAudio(self.audio_url(key))
