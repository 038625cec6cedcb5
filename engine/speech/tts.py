"""Text to speech through the `openai` SDK's audio endpoint."""

from __future__ import annotations

import openai

from engine.ai.errors import classify
from engine.flows.model import OpenAIVoice
from engine.speech.cache import AUDIO_FORMAT

MAX_INPUT_CHARS = 4096  # the endpoint's limit
SPEECH_TIMEOUT = openai.Timeout(connect=2.0, read=8.0, write=5.0, pool=2.0)


class SpeechFailed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Synthesizer:
    def __init__(self, client: openai.OpenAI) -> None:
        self.client = client

    def synthesize(self, text: str, voice: OpenAIVoice) -> bytes:
        options: dict[str, str] = {}
        if voice.instructions:
            options["instructions"] = voice.instructions
        try:
            response = self.client.audio.speech.create(
                model=voice.model, voice=voice.voice, input=text[:MAX_INPUT_CHARS],
                response_format=AUDIO_FORMAT, timeout=SPEECH_TIMEOUT, **options)  # type: ignore[arg-type]
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
