"""`AudioCache.has`: the store's `has_blob` (the audio itself is never read to answer it), asked
every time, so audio that left the store is seen gone at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.speech.cache import AudioCache
from engine.store.sqlite import SQLiteStore


class Counting:
    """A store that counts the blob reads it is asked for."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.reads: list[str] = []

    def get_blob(self, key: str) -> bytes | None:
        self.reads.append("get_blob")
        return self.inner.get_blob(key)

    def has_blob(self, key: str) -> bool:
        self.reads.append("has_blob")
        return self.inner.has_blob(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def store() -> Iterator[Counting]:
    inner = SQLiteStore(":memory:")
    yield Counting(inner)
    inner.close()


def test_has_asks_the_store_whether_the_blob_exists_without_reading_it(store: Counting) -> None:
    cache = AudioCache(store)
    assert not cache.has("k1")
    store.inner.put_blob("audio:k1", b"ID3" + b"\0" * 50_000)  # put by another process
    assert cache.has("k1")
    assert store.reads == ["has_blob", "has_blob"]


def test_an_absent_key_is_never_remembered(store: Counting) -> None:
    cache = AudioCache(store)
    assert not cache.has("later") and not cache.has("later")
    store.inner.put_blob("audio:later", b"mp3")
    assert cache.has("later")
    assert store.reads == ["has_blob"] * 3


class Blobs:
    """Blobs in a dict, which a test can take away (as a Redis server evicting a key would)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put_blob(self, key: str, value: bytes) -> None:
        self.blobs[key] = value

    def get_blob(self, key: str) -> bytes | None:
        return self.blobs.get(key)

    def has_blob(self, key: str) -> bool:
        return key in self.blobs


def test_audio_that_vanished_from_the_store_is_seen_gone_at_once() -> None:
    store = Blobs()
    cache = AudioCache(store)  # type: ignore[arg-type]
    cache.put("evicted", b"mp3")
    assert cache.has("evicted")
    del store.blobs["audio:evicted"]  # as a Redis server evicting the key would
    assert not cache.has("evicted")
