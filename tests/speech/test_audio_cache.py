"""`AudioCache.has`: the store's `has_blob` (the audio itself is never read to answer it), and
keys known present remembered for a while, so a line spoken again costs no store read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from engine.speech import cache as cache_module
from engine.speech.cache import KNOWN_FOR, AudioCache
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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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


def test_a_key_found_or_put_is_known_without_a_store_read_for_a_while(store: Counting) -> None:
    clock = Clock()
    cache = AudioCache(store, clock)
    store.inner.put_blob("audio:found", b"mp3")
    assert cache.has("found")
    cache.put("made", b"mp3")
    store.reads.clear()
    clock.now += KNOWN_FOR - 1
    assert cache.has("found") and cache.has("made")
    assert store.reads == []  # known: no store read at all

    clock.now += 2  # known for too long: the store is asked again, and says so
    store.inner.put_blob("audio:made", b"mp3 again")
    assert cache.has("found") and cache.has("made")
    assert store.reads == ["has_blob", "has_blob"]
    assert cache.get("made") == b"mp3 again"


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


def test_audio_that_vanished_from_the_store_is_seen_gone_once_no_longer_known() -> None:
    clock, store = Clock(), Blobs()
    cache = AudioCache(store, clock)  # type: ignore[arg-type]
    cache.put("evicted", b"mp3")
    del store.blobs["audio:evicted"]
    assert cache.has("evicted")  # still known
    clock.now += KNOWN_FOR + 1
    assert not cache.has("evicted")


def test_the_keys_known_are_bounded(store: Counting, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "KNOWN_KEYS", 3)
    cache = AudioCache(store)
    for key in ("a", "b", "c", "d"):
        cache.put(key, b"mp3")
    assert cache.has("a")  # forgotten (the oldest), so asked again: the store has it
    assert store.reads == ["has_blob"]
    assert len(cache._known) == 3
