"""Synthesised audio, cached by a hash of text and voice in the store every process reads."""

from __future__ import annotations

import hashlib
from typing import Final, Literal

from engine.flows.model import OpenAIVoice
from engine.store import CallStore

AUDIO_FORMAT: Final[Literal["mp3"]] = "mp3"
CONTENT_TYPE = "audio/mpeg"

def audio_key(text: str, voice: OpenAIVoice) -> str:
    """Same text, same voice, same audio: the key (and so the URL) changes when either does."""
    material = "\x1f".join((voice.model, voice.voice, voice.instructions, AUDIO_FORMAT, text))
    return hashlib.sha256(material.encode()).hexdigest()[:40]


class AudioCache:
    """Synthesised MP3s by `audio_key`, kept as blobs (`audio:<key>`) in the call store, so
    every process serves what any process made. Entries never expire; as thread-safe as the
    store.

    `has` is asked for every line a call speaks: it asks the store whether the blob exists,
    without reading it. Nothing is remembered in the process: a blob a Redis server evicted
    must be synthesised again at once, or the caller would be sent to audio that is gone.
    """

    def __init__(self, store: CallStore) -> None:
        self.store = store

    def get(self, key: str) -> bytes | None:
        """The audio under `key`, or None when it was never put."""
        return self.store.get_blob(f"audio:{key}")

    def has(self, key: str) -> bool:
        """Whether audio under `key` is cached (without reading it)."""
        return self.store.has_blob(f"audio:{key}")

    def put(self, key: str, audio: bytes) -> None:
        """Store `audio` under `key`, replacing what was there."""
        self.store.put_blob(f"audio:{key}", audio)
