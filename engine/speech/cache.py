"""Synthesised audio, cached by a hash of text and voice in the store every process reads."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Literal

from engine.flows.model import OpenAIVoice
from engine.store import CallStore

AUDIO_FORMAT: Final[Literal["mp3"]] = "mp3"
CONTENT_TYPE = "audio/mpeg"

KNOWN_KEYS = 4096
"""Keys an `AudioCache` remembers as present (static prompts are a few dozen a project)."""
KNOWN_FOR = 60.0
"""Seconds a key is taken as present without asking the store again. Nothing in this code
deletes audio (SQLite keeps blobs; Redis gives `audio:` no TTL unless one is passed to it in
code), but a Redis server may still evict or lose keys: a key that vanished is seen to have
gone, and synthesised again, at most this long after."""


def audio_key(text: str, voice: OpenAIVoice) -> str:
    """Same text, same voice, same audio: the key (and so the URL) changes when either does."""
    material = "\x1f".join((voice.model, voice.voice, voice.instructions, AUDIO_FORMAT, text))
    return hashlib.sha256(material.encode()).hexdigest()[:40]


class AudioCache:
    """Synthesised MP3s by `audio_key`, kept as blobs (`audio:<key>`) in the call store, so
    every process serves what any process made. Entries never expire; as thread-safe as the
    store.

    `has` is asked for every line a call speaks: it asks the store whether the blob exists (not
    reading it), and remembers the keys found or put for `KNOWN_FOR` seconds (the `KNOWN_KEYS`
    most recent), so a line spoken again is known without a store read. Keys are content
    hashes: the audio under a key never changes. Absent keys are never remembered.
    """

    def __init__(self, store: CallStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._known: OrderedDict[str, float] = OrderedDict()  # key -> known present until
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The audio under `key`, or None when it was never put."""
        return self.store.get_blob(f"audio:{key}")

    def has(self, key: str) -> bool:
        """Whether audio under `key` is cached (without reading it)."""
        until = self._known.get(key)
        if until is not None and until > self.clock():
            return True
        if not self.store.has_blob(f"audio:{key}"):
            return False
        self._remember(key)
        return True

    def put(self, key: str, audio: bytes) -> None:
        """Store `audio` under `key`, replacing what was there."""
        self.store.put_blob(f"audio:{key}", audio)
        self._remember(key)

    def _remember(self, key: str) -> None:
        with self._lock:
            self._known[key] = self.clock() + KNOWN_FOR
            self._known.move_to_end(key)
            while len(self._known) > KNOWN_KEYS:
                self._known.popitem(last=False)
