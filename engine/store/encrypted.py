"""`EncryptedStore`: transcripts and caller numbers encrypted before they reach a backend.

A wrapper around any `CallStore` (SQLite, Redis), put there by `open_store` when
`ENCRYPTION_KEY` is set. It encrypts, on the way in, and decrypts, on the way out:
- in the call state: the whole caller (number, city, state, country, zip and name: everything
  Twilio tells about them), every line of the conversation, the utterance and digits still
  waiting for a reply (`pending`, `pending_digits`);
- in events: the values of `speech`, `text`, `digits`, `caller`, `to` and `url` (transcripts,
  replies, pressed digits, numbers and recording links), and a post-call analysis's `summary`
  and the text of its `fields` (both retell what the caller said; booleans, numbers and nulls
  stay readable, so the calls list still knows a call the analysis says was resolved);
- the summaries' `caller` and `summary`, and the TwiML stored for repeated webhooks (it holds
  what was said);
- blobs under `stream:` (replies being streamed), `audio:` (synthesised speech), `dashboard:` and
  `flask:` (the generated password and session key), and `outbound:` (placed calls' and
  campaigns' numbers and vars).
Everything else (call sids, flow ids, nodes, statuses, times, the called number, flow snapshots,
publisher cursors) stays readable, so the backends can index, order and expire as before.
Counter keys of `incr_window` (they hold caller numbers) are replaced by an HMAC of them.

Keys (`Keyring.from_setting`): ENCRYPTION_KEY is one key or several, comma-separated. The first
encrypts; every one of them decrypts (`MultiFernet`), so a key is rotated by putting a new one
first and keeping the old one after it until the data written under it has expired or been
rewritten. Each entry is either a Fernet key (32 random bytes in URL-safe base64, 44
characters: `Fernet.generate_key()`) used as it is, or any other text, from which a Fernet key is
derived with HKDF-SHA256. HKDF is not a password hash: a passphrase must be long and random.

An encrypted value is the text `enc:` followed by the Fernet token. A value without that mark
was written before encryption was turned on and is returned as it is. A value no key can open
(the key that wrote it was dropped from ENCRYPTION_KEY) reads as `UNREADABLE` rather than
failing the request that reads it, and is logged without its contents.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.runtime.state import Caller, CallState
from engine.store.base import (
    ALL_CALLS,
    MAX_SEARCH,
    TRANSCRIPT_EVENTS,
    AuditEntry,
    CallQuery,
    CallStore,
    CallSummary,
    LiveCeiling,
    Lookup,
    NewEvent,
    Pruned,
    Quota,
    StoredEvent,
)

log = logging.getLogger(__name__)

MARK = "enc:"
MARK_BYTES = MARK.encode()
SENSITIVE_EVENT_FIELDS = frozenset({"speech", "text", "digits", "caller", "to", "url", "summary"})
ANALYSIS_FIELDS = "fields"
"""An event's mapping whose text values are sealed one by one (`call.analysis`'s fields)."""
ENCRYPTED_BLOB_PREFIXES = ("stream:", "audio:", "dashboard:", "flask:", "outbound:")
SEARCH_BATCH = 100
"""Calls a transcript search of encrypted calls decrypts the events of, a round."""
UNREADABLE = "[unreadable: encrypted with a key that is not in ENCRYPTION_KEY]"

_SALT = b"phoney ENCRYPTION_KEY v1"  # fixed: the same passphrase must give the same key


def _derive(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(material)


def fernet_key(entry: str) -> bytes:
    """The Fernet key for one ENCRYPTION_KEY entry: itself when it is one, else HKDF of it."""
    raw = entry.strip().encode()
    try:
        if len(raw) == 44 and len(base64.b64decode(raw, altchars=b"-_", validate=True)) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    return base64.urlsafe_b64encode(_derive(raw, b"fernet key"))


class Keyring:
    """The keys of ENCRYPTION_KEY: the first encrypts, all decrypt."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._digest_key = _derive(keys[0], b"digest key")
        self.size = len(keys)

    @classmethod
    def from_setting(cls, setting: str) -> Keyring:
        """The keyring of an ENCRYPTION_KEY value: comma-separated entries, blanks skipped, each
        a Fernet key or text to derive one from (`fernet_key`). Raises ValueError when it holds
        no entry."""
        entries = [entry.strip() for entry in setting.split(",") if entry.strip()]
        if not entries:
            raise ValueError("ENCRYPTION_KEY holds no key")
        return cls([fernet_key(entry) for entry in entries])

    def encrypt(self, data: bytes) -> bytes:
        """A Fernet token of `data` under the first key; a new token each time (random IV)."""
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """Raises cryptography's InvalidToken when no key opens `token`."""
        return self._fernet.decrypt(token)

    def digest(self, text: str) -> str:
        """A keyed hash of `text` (HMAC-SHA256): a stable name that does not give it away."""
        return hmac.new(self._digest_key, text.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:  # never the keys
        return f"Keyring({self.size} key{'s' if self.size != 1 else ''})"


class EncryptedStore:
    """A `CallStore` that encrypts the sensitive parts of what it keeps in `inner`."""

    def __init__(self, inner: CallStore, keyring: Keyring) -> None:
        self.inner = inner
        self.keyring = keyring

    # Values

    def seal(self, text: str) -> str:
        """`text` encrypted, as `enc:` and the token; empty text (or None) is returned as is."""
        if not text:
            return text
        return MARK + self.keyring.encrypt(text.encode()).decode()

    def open(self, text: str) -> str:
        """What `seal` sealed. Anything without the `enc:` mark (written before encryption, or
        not a string) is returned as is; a value no key opens reads as `UNREADABLE`, with a
        warning logged without its contents. Never raises."""
        if not isinstance(text, str) or not text.startswith(MARK):
            return text
        try:
            return self.keyring.decrypt(text[len(MARK):].encode()).decode()
        except (InvalidToken, UnicodeDecodeError):
            log.warning("a stored value could not be decrypted with any of the %d key(s) of "
                        "ENCRYPTION_KEY", self.keyring.size)
            return UNREADABLE

    def _seal_bytes(self, value: bytes) -> bytes:
        return MARK_BYTES + self.keyring.encrypt(bytes(value))

    def _open_bytes(self, value: bytes | None) -> bytes | None:
        if value is None or not value.startswith(MARK_BYTES):
            return value
        try:
            return self.keyring.decrypt(value[len(MARK_BYTES):])
        except InvalidToken:
            log.warning("a stored blob could not be decrypted with any of the %d key(s) of "
                        "ENCRYPTION_KEY; treating it as absent", self.keyring.size)
            return None

    @staticmethod
    def _blob_is_sensitive(key: str) -> bool:
        return key.startswith(ENCRYPTED_BLOB_PREFIXES)

    def seal_state(self, state: CallState) -> CallState:
        """A copy of `state` with every field of the caller (number, city, state, country, zip,
        name), every conversation line, and `pending` and `pending_digits` sealed; every other
        field as it was."""
        return self._map_state(state, self.seal)

    def open_state(self, state: CallState) -> CallState:
        """A copy of `state` with the fields `seal_state` seals opened (see `open`)."""
        return self._map_state(state, self.open)

    @staticmethod
    def _map_state(state: CallState, change: Any) -> CallState:
        # Every field: a city, state and zip locate a caller about as well as a number does.
        caller = state.caller
        caller = Caller(number=change(caller.number), city=change(caller.city),
                        state=change(caller.state), country=change(caller.country),
                        zip=change(caller.zip), name=change(caller.name))
        history = tuple(dataclasses.replace(line, text=change(line.text))
                        for line in state.history)
        return dataclasses.replace(
            state, caller=caller, history=history,
            pending=None if state.pending is None else change(state.pending),
            pending_digits=change(state.pending_digits))

    def _map_data(self, data: Mapping[str, Any], change: Any) -> dict[str, Any]:
        mapped = {key: change(value) if key in SENSITIVE_EVENT_FIELDS and isinstance(value, str)
                  else value for key, value in data.items()}
        fields = mapped.get(ANALYSIS_FIELDS)
        if isinstance(fields, Mapping):
            mapped[ANALYSIS_FIELDS] = {name: change(value) if isinstance(value, str) else value
                                       for name, value in fields.items()}
        return mapped

    def _seal_events(self, events: Sequence[NewEvent]) -> list[NewEvent]:
        return [NewEvent(event.name, self._map_data(event.data, self.seal)) for event in events]

    def _open_event(self, event: StoredEvent) -> StoredEvent:
        return dataclasses.replace(event, data=self._map_data(event.data, self.open))

    def _open_summary(self, summary: CallSummary) -> CallSummary:
        return dataclasses.replace(summary, caller=self.open(summary.caller),
                                   summary=self.open(summary.summary) if summary.summary else "")

    # CallStore

    def commit_step(self, previous: CallState | None, state: CallState,
                    events: Sequence[NewEvent], request_key: str, response: str,
                    at: float) -> None:
        # `previous` only names the step the commit expects: the backend reads its sid and step.
        self.inner.commit_step(previous, self.seal_state(state), self._seal_events(events),
                               request_key, self.seal(response), at)

    def commit_new_call(self, state: CallState, events: Sequence[NewEvent], request_key: str,
                        response: str, at: float, quota: Quota | None,
                        live: LiveCeiling | None = None) -> int:
        sealed = None if quota is None else dataclasses.replace(quota,
                                                                key=self._counter(quota.key))
        return self.inner.commit_new_call(
            self.seal_state(state), self._seal_events(events), request_key,
            self.seal(response), at, sealed, live)

    def get_state(self, call_sid: str) -> CallState | None:
        state = self.inner.get_state(call_sid)
        return None if state is None else self.open_state(state)

    def lookup(self, call_sid: str, request_key: str, counter: str | None = None) -> Lookup:
        found = self.inner.lookup(call_sid, request_key,
                                  None if counter is None else self._counter(counter))
        return Lookup(response=None if found.response is None else self.open(found.response),
                      state=None if found.state is None else self.open_state(found.state),
                      count=found.count)

    def stored_response(self, call_sid: str, request_key: str) -> str | None:
        found = self.inner.stored_response(call_sid, request_key)
        return None if found is None else self.open(found)

    def record_events(self, call_sid: str, events: Sequence[NewEvent], at: float) -> None:
        self.inner.record_events(call_sid, self._seal_events(events), at)

    def close_call(self, call_sid: str, status: str, duration: int | None, at: float) -> None:
        self.inner.close_call(call_sid, status, duration, at)

    def list_calls(self, limit: int = 50, query: CallQuery = ALL_CALLS) -> list[CallSummary]:
        """The backend filters all but `query.text`, which it cannot read: that search decrypts
        the events of the calls the other filters leave, SEARCH_BATCH calls a round, here."""
        if not query.text or limit <= 0:
            return [self._open_summary(summary)
                    for summary in self.inner.list_calls(limit, query)]
        text = query.text[:MAX_SEARCH].casefold()
        found: list[CallSummary] = []
        page = dataclasses.replace(query, text="")
        while len(found) < limit:
            batch = self.inner.list_calls(SEARCH_BATCH, page)
            for summary in batch:
                if self._transcript_has(summary.call_sid, text):
                    found.append(self._open_summary(summary))
                    if len(found) == limit:
                        break
            if len(batch) < SEARCH_BATCH:
                break
            page = dataclasses.replace(page, before=batch[-1].cursor())
        return found

    def _transcript_has(self, call_sid: str, needle: str) -> bool:
        after = 0
        while True:
            events = self.inner.events_after(after, call_sid, limit=500)
            for event in events:
                if event.name not in TRANSCRIPT_EVENTS:
                    continue
                spoken = self._open_event(event).data
                said = spoken.get("speech") or spoken.get("text") or ""
                if isinstance(said, str) and needle in said.casefold():
                    return True
            if len(events) < 500:
                return False
            after = events[-1].id

    def get_call(self, call_sid: str) -> CallSummary | None:
        summary = self.inner.get_call(call_sid)
        return None if summary is None else self._open_summary(summary)

    def events_after(self, after_id: int, call_sid: str | None = None,
                     limit: int = 500) -> list[StoredEvent]:
        return [self._open_event(event)
                for event in self.inner.events_after(after_id, call_sid, limit)]

    def put_blob(self, key: str, value: bytes) -> None:
        self.inner.put_blob(key, self._seal_bytes(value) if self._blob_is_sensitive(key)
                            else value)

    def get_blob(self, key: str) -> bytes | None:
        found = self.inner.get_blob(key)
        return self._open_bytes(found) if self._blob_is_sensitive(key) else found

    def has_blob(self, key: str) -> bool:
        if not self._blob_is_sensitive(key):
            return self.inner.has_blob(key)
        return self.get_blob(key) is not None  # one no key opens reads as absent, as in get_blob

    def compare_and_set_blob(self, key: str, expected: bytes | None, new: bytes) -> bool:
        if not self._blob_is_sensitive(key):
            return self.inner.compare_and_set_blob(key, expected, new)
        # Tokens differ at every encryption: compare the plaintext, then swap the very token
        # that was read, so the backend's own compare-and-set keeps it atomic. A value no key
        # opens reads as absent (as in get_blob), so it can be replaced.
        raw = self.inner.get_blob(key)
        if self._open_bytes(raw) != (None if expected is None else bytes(expected)):
            return False
        return self.inner.compare_and_set_blob(key, raw, self._seal_bytes(new))

    def last_event_id(self) -> int:
        return self.inner.last_event_id()

    def incr_window(self, key: str, window_seconds: float) -> int:
        return self.inner.incr_window(self._counter(key), window_seconds)

    def _counter(self, key: str) -> str:
        """A counter's key as the backend keeps it: an HMAC (caller numbers are in the keys)."""
        return "hmac:" + self.keyring.digest(key)

    def prune(self, before: float, dry_run: bool = False) -> Pruned:
        return self.inner.prune(before, dry_run)

    def record_audit(self, entry: AuditEntry) -> int:
        # What was acted on may name a number (a transfer's target): sealed, as callers are.
        sealed = self.seal(json.dumps(dict(entry.what), sort_keys=True))
        return self.inner.record_audit(dataclasses.replace(entry, what={"sealed": sealed}))

    def audit_entries(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        return [self._opened_audit(entry) for entry in self.inner.audit_entries(limit, before_id)]

    def _opened_audit(self, entry: AuditEntry) -> AuditEntry:
        sealed = entry.what.get("sealed")
        if not isinstance(sealed, str) or set(entry.what) != {"sealed"}:
            return entry  # written before ENCRYPTION_KEY was set
        try:
            what = json.loads(self.open(sealed))
        except ValueError:
            what = {"unreadable": "sealed with a key no longer in ENCRYPTION_KEY"}
        return dataclasses.replace(entry, what=what)

    def prune_audit(self, before: float, dry_run: bool = False) -> int:
        return self.inner.prune_audit(before, dry_run)

    def ping(self) -> bool:
        return self.inner.ping()

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"EncryptedStore({self.inner!r}, {self.keyring!r})"
