"""One streamed model reply, readable while it is still arriving, from any server process.

The thread that reads the model's stream feeds a `ReplyStream`. The webhook that started it
waits for the first sentence; a later webhook (possibly in another process) reads the rest. The
reply is kept in this process's memory for speed and written to the store (a blob under
`stream:<key>`) at each sentence, so no process has to be the one that started it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from engine.ai.speakable import first_sentence, speakable
from engine.store import CallStore

STREAM_BLOB = "stream:{key}"
PARTIAL_EVERY = 0.25
"""Seconds between `call.response.partial` events while text keeps arriving."""
PERSIST_EVERY = 0.25
"""Seconds between writes of a growing reply to the store (its first sentence and its end are
always written at once): a long reply must not take the store's write lock per sentence."""


@dataclass(frozen=True)
class StreamSnapshot:
    """One moment of a streamed reply, as every process reads it (the blob `stream:<key>`).

    `text` is the reply so far; `done` says it has ended, with the exit the model chose or an
    error of the flow's kinds (`error_kind`, its detail and the server's wait). The times are
    on the stream's clock (monotonic): when it started, and its first token and sentence came.
    """

    text: str = ""
    done: bool = False
    exit: str | None = None
    error_kind: str | None = None
    error_detail: str = ""
    retry_after: float = 0.0
    started_at: float = 0.0
    first_token_at: float | None = None
    first_sentence_at: float | None = None

    @property
    def has_sentence(self) -> bool:
        """True once a complete first sentence has arrived (see `speakable.first_sentence`)."""
        return self.first_sentence_at is not None or first_sentence(self.text) is not None

    def to_json(self) -> bytes:
        """The snapshot as UTF-8 JSON, as `from_json` reads it back."""
        return json.dumps(asdict(self), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StreamSnapshot:
        """The snapshot `to_json` wrote; raises on anything else (bad JSON, other keys)."""
        return cls(**json.loads(raw))


@dataclass
class ReplyStream:
    """One reply being streamed: fed by the thread that reads the model (`add_text`, then
    `finish` or `fail`), waited on by this process's webhooks (`wait`).

    Every change wakes the waiters. The snapshot is written to the store at the first sentence,
    at the end, and at most every `PERSIST_EVERY` between, so other processes can read it;
    `on_partial` gets the speakable text so far at the first sentence, at most every
    `PARTIAL_EVERY`, and at the end. A store error is raised to the feeding thread.
    """

    key: str
    store: CallStore
    on_partial: Callable[[str], None] = lambda text: None
    clock: Callable[[], float] = time.time
    snapshot: StreamSnapshot = field(default_factory=StreamSnapshot)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _last_partial: float = 0.0
    _last_persist: float = 0.0
    abandoned: bool = False  # the webhook gave up on it: the reader should stop

    def __post_init__(self) -> None:
        started = self.clock()
        self.snapshot = replace(self.snapshot, started_at=started)
        # Measured from the start, so the first token alone (a word or two) is not worth a
        # store write: partials begin with the first sentence, or PARTIAL_EVERY in.
        self._last_partial = started

    def _update(self, persist: bool, **changes: Any) -> None:
        with self._changed:
            self.snapshot = replace(self.snapshot, **changes)
            self._changed.notify_all()
        if persist:
            self._last_persist = self.clock()
            self.store.put_blob(STREAM_BLOB.format(key=self.key), self.snapshot.to_json())

    def add_text(self, delta: str) -> None:
        """Append `delta` to the reply; notes when the first token and first sentence came, and
        writes and publishes the text when due (see the class)."""
        now = self.clock()
        had_sentence = self.snapshot.first_sentence_at is not None
        text = self.snapshot.text + delta
        changes: dict[str, Any] = {"text": text}
        if self.snapshot.first_token_at is None and delta.strip():
            changes["first_token_at"] = now
        new_sentence = not had_sentence and first_sentence(text) is not None
        if new_sentence:
            changes["first_sentence_at"] = now
        # Later sentences are written at most every PERSIST_EVERY; the first one is written when
        # it is found (one token after its end: `first_sentence` needs the next one to begin).
        sentence_done = had_sentence and delta.rstrip() != "" and \
            text.rstrip().endswith((".", "!", "?"))
        due = now - self._last_persist >= PERSIST_EVERY
        self._update(persist=new_sentence or (sentence_done and due), **changes)
        if new_sentence or now - self._last_partial >= PARTIAL_EVERY:
            self._last_partial = now
            self.on_partial(speakable(text))

    def finish(self, exit_: str | None = None) -> None:
        """End the stream as answered, taking `exit_` (None: no exit); written to the store and
        published whole."""
        self._update(persist=True, done=True, exit=exit_)
        self.on_partial(speakable(self.snapshot.text))

    def fail(self, kind: str, detail: str, retry_after: float = 0.0) -> None:
        """End the stream as failed with an error of `kind`, keeping the text that came;
        written to the store."""
        self._update(persist=True, done=True, error_kind=kind, error_detail=detail,
                     retry_after=retry_after)

    def abandon(self) -> None:
        """Give the stream up: its reader stops at the next piece of text, without ending it."""
        self.abandoned = True

    def wait(self, until: Callable[[StreamSnapshot], bool], timeout: float) -> StreamSnapshot:
        """Block until `until(snapshot)` holds, the stream ends, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (until(self.snapshot) or self.snapshot.done):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self.snapshot


class StreamRegistry:
    """Streams started by this process, by key; others are read from the store."""

    def __init__(self, store: CallStore, poll_interval: float = 0.05) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self._streams: dict[str, ReplyStream] = {}
        self._lock = threading.Lock()

    def add(self, stream: ReplyStream) -> None:
        """Keep `stream` so `wait` reads it from memory; past 1000 streams, up to 500 of those
        that have ended are dropped."""
        with self._lock:
            self._streams[stream.key] = stream
            if len(self._streams) > 1000:  # finished streams are only needed briefly
                for key in [k for k, s in self._streams.items() if s.snapshot.done][:500]:
                    del self._streams[key]

    def wait(self, key: str, until: Callable[[StreamSnapshot], bool],
             timeout: float) -> StreamSnapshot | None:
        """The snapshot of stream `key` once `until` holds or it has ended, waiting at most
        `timeout` seconds: from memory for a stream of this process, else polling the store.
        At the timeout, the latest snapshot as it is; None when the store has none."""
        with self._lock:
            local = self._streams.get(key)
        if local is not None:
            return local.wait(until, timeout)
        deadline = time.monotonic() + timeout
        while True:
            raw = self.store.get_blob(STREAM_BLOB.format(key=key))
            found = StreamSnapshot.from_json(raw) if raw is not None else None
            if found is not None and (until(found) or found.done):
                return found
            if time.monotonic() >= deadline:
                return found
            time.sleep(self.poll_interval)
