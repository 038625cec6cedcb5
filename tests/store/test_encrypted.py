"""ENCRYPTION_KEY at the store boundary: nothing readable at rest, keys that rotate.

The contract suite (test_contract.py) runs every backend wrapped in `EncryptedStore` too; these
tests look under the wrapper, at what SQLite's file and Redis's keys actually hold.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from cryptography.fernet import Fernet

from engine.runtime.state import Caller, CallState, Message
from engine.store import (
    CallStore,
    EncryptedStore,
    Keyring,
    Lookup,
    NewEvent,
    Quota,
    open_store,
)
from engine.store.encrypted import MARK, UNREADABLE, fernet_key
from tests.store.conftest import server_url

T0 = 1_700_000_000.0
NUMBER = "+15557654321"
NAME = "Dolores Umbridge"
SAID = "my account number is nine eight seven and my card is declined"
REPLIED = "I can help you with the declined card right away"
DIGITS = "4321#"
STREAMED = b'{"text": "streaming the declined card answer"}'


def a_call(call_sid: str = "CA0001") -> CallState:
    return CallState(
        call_sid=call_sid, flow_id="receptionist", flow_version="v1", node="assist",
        caller=Caller(number=NUMBER, city="Springfield", name=NAME), called="+15550001000",
        started_at=T0, personality="friendly", step=2,
        history=(Message("caller", SAID, "assist"), Message("agent", REPLIED, "assist")),
        pending=SAID, pending_digits=DIGITS)


def fill(store: CallStore) -> CallState:
    state = a_call()
    store.commit_step(None, state, [
        NewEvent("call.start", {"caller": NUMBER, "called": "+15550001000"}),
        NewEvent("call.transcript", {"speech": SAID, "digits": DIGITS, "turn": 1}),
        NewEvent("call.response", {"text": REPLIED}),
    ], "start", f"<Response><Say>{REPLIED}</Say></Response>", at=T0)
    store.record_events(state.call_sid, [NewEvent("call.transfer", {"to": NUMBER})], at=T0 + 1)
    store.put_blob("stream:abc", STREAMED)
    store.incr_window(f"caller:{NUMBER}", 60)
    return state


SECRETS = [NUMBER, NAME, SAID, REPLIED, DIGITS, "declined", "5557654321", "4321#"]


def sqlite_dump(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        out = []
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in db.execute(f"SELECT * FROM {table}"):
                out.append(repr(row))
        return "\n".join(out)
    finally:
        db.close()


def redis_dump(prefix: str) -> str:
    client = redis.Redis.from_url(server_url())
    out = []
    try:
        for key in client.scan_iter(match=prefix + "*"):
            out.append(repr(key))
            kind = client.type(key)
            if kind == b"string":
                out.append(repr(client.get(key)))
            elif kind == b"hash":
                out.append(repr(client.hgetall(key)))
            elif kind == b"zset":
                out.append(repr(client.zrange(key, 0, -1)))
            else:
                raise AssertionError(f"unexpected Redis type {kind!r} of {key!r}")
    finally:
        client.close()
    return "\n".join(out)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path
            ) -> Iterator[tuple[Callable[[str], CallStore], Callable[[], str]]]:
    """(open the store with an ENCRYPTION_KEY, dump every raw value it holds)."""
    opened: list[CallStore] = []
    if request.param == "sqlite":
        path = tmp_path / "calls.db"
        url = f"sqlite:///{path}"

        def dump() -> str:
            return sqlite_dump(path)
    else:
        url = str(request.getfixturevalue("redis_url"))
        prefix = str(request.getfixturevalue("redis_prefix"))

        def dump() -> str:
            return redis_dump(prefix)

    def open_(key: str) -> CallStore:
        opened.append(open_store(url, encryption_key=key))
        return opened[-1]

    yield open_, dump
    for store in opened:
        store.close()


def test_nothing_said_or_dialled_is_readable_at_rest(
        backend: tuple[Callable[[str], CallStore], Callable[[], str]]) -> None:
    open_, dump = backend
    store = open_("a long random passphrase for the tests")
    state = fill(store)

    raw = dump()
    assert "receptionist" in raw and state.call_sid in raw  # the dump does see the data
    for secret in SECRETS:
        assert secret not in raw
    assert MARK in raw

    # ... and everything reads back in the clear through the store.
    assert store.get_state(state.call_sid) == state
    summary = store.get_call(state.call_sid)
    assert summary is not None and summary.caller == NUMBER
    assert [c.caller for c in store.list_calls()] == [NUMBER]
    events = store.events_after(0)
    assert events[0].data == {"caller": NUMBER, "called": "+15550001000"}
    assert events[1].data == {"speech": SAID, "digits": DIGITS, "turn": 1}
    assert events[2].data == {"text": REPLIED}
    assert events[3].data == {"to": NUMBER}
    assert store.stored_response(state.call_sid, "start") == \
        f"<Response><Say>{REPLIED}</Say></Response>"
    assert store.get_blob("stream:abc") == STREAMED
    assert store.incr_window(f"caller:{NUMBER}", 60) == 2


def test_a_calls_analysis_is_not_readable_at_rest(
        backend: tuple[Callable[[str], CallStore], Callable[[], str]]) -> None:
    open_, dump = backend
    store = open_("a long random passphrase for the tests")
    state = fill(store)
    summary_text = "Caller Jane Roe asked to cancel the appointment for her dog Biscuit."
    analysis = {"status": "ok", "summary": summary_text,
                "fields": {"pet_name": "Biscuit", "resolved": True, "visits": 3, "note": None}}
    store.record_events(state.call_sid, [NewEvent("call.end", {}),
                                         NewEvent("call.analysis", analysis)], at=T0 + 2)
    raw = dump()
    assert "Biscuit" not in raw and "cancel the appointment" not in raw
    [stored] = [e for e in store.events_after(0) if e.name == "call.analysis"]
    assert stored.data == analysis
    listed = store.get_call(state.call_sid)
    assert listed is not None and listed.summary == summary_text
    # The analysis says resolved: the list still knows it, sealed text beside it.
    assert listed.outcome == "resolved"


def test_rotation_reads_what_the_old_key_wrote(
        backend: tuple[Callable[[str], CallStore], Callable[[], str]]) -> None:
    open_, _ = backend
    old, new = Fernet.generate_key().decode(), "the new passphrase, put first"
    state = fill(open_(old))

    rotated = open_(f"{new}, {old}")
    assert rotated.get_state(state.call_sid) == state
    assert [e.data.get("speech") for e in rotated.events_after(0)][1] == SAID
    assert rotated.get_blob("stream:abc") == STREAMED

    # New writes use the new key: a store with only the new key reads them ...
    later = a_call("CA0002")
    rotated.commit_step(None, later, [NewEvent("call.transcript", {"speech": SAID})], "start",
                        "<Response/>", at=T0 + 5)
    only_new = open_(new)
    assert only_new.get_state("CA0002") == later
    # ... and what only the dropped key could open reads as unreadable, without failing.
    old_state = only_new.get_state(state.call_sid)
    assert old_state is not None and old_state.caller.number == UNREADABLE
    assert old_state.history[0].text == UNREADABLE
    assert only_new.events_after(0, state.call_sid)[1].data["speech"] == UNREADABLE
    assert only_new.get_blob("stream:abc") is None
    # (an unreadable blob counts as absent: a secret made again can take its place)
    assert only_new.compare_and_set_blob("stream:abc", None, b"again") is True
    assert only_new.get_blob("stream:abc") == b"again"
    summary = only_new.get_call(state.call_sid)
    assert summary is not None and summary.caller == UNREADABLE


def test_values_written_before_encryption_was_turned_on_still_read(
        backend: tuple[Callable[[str], CallStore], Callable[[], str]]) -> None:
    open_, _ = backend
    state = fill(open_(""))  # no ENCRYPTION_KEY yet
    encrypted = open_("now turned on")
    assert isinstance(encrypted, EncryptedStore)
    assert encrypted.get_state(state.call_sid) == state
    assert encrypted.get_blob("stream:abc") == STREAMED
    assert encrypted.events_after(0)[1].data["speech"] == SAID


def test_an_encryption_key_entry_is_a_fernet_key_or_a_passphrase() -> None:
    key = Fernet.generate_key()
    assert fernet_key(key.decode()) == key  # used as it is
    assert fernet_key(f"  {key.decode()} ") == key
    derived = fernet_key("correct horse battery staple")
    assert derived != b"correct horse battery staple"
    assert fernet_key("correct horse battery staple") == derived  # stable across processes
    Fernet(derived)  # a valid Fernet key
    # 44 characters that are not 32 bytes of URL-safe base64 are a passphrase too.
    assert fernet_key("x" * 43 + "!") != ("x" * 43 + "!").encode()


def test_the_keyring_encrypts_with_the_first_key_and_decrypts_with_any() -> None:
    old, new = Keyring.from_setting("old"), Keyring.from_setting("new,old")
    token = old.encrypt(b"hello")
    assert new.decrypt(token) == b"hello"
    assert Fernet(fernet_key("new")).decrypt(new.encrypt(b"hi")) == b"hi"
    assert "old" not in repr(new) and "new" not in repr(new)
    with pytest.raises(ValueError):
        Keyring.from_setting(" , ")


def test_counter_keys_do_not_hold_the_number(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = open_store(f"sqlite:///{path}", encryption_key="k")
    try:
        store.incr_window(f"caller:{NUMBER}", 60)
        assert "5557654321" not in sqlite_dump(path)
    finally:
        store.close()


def test_a_new_call_committed_with_its_count_is_not_readable_at_rest(
        backend: tuple[Callable[[str], CallStore], Callable[[], str]]) -> None:
    open_, dump = backend
    store = open_("a long random passphrase for the tests")
    state = a_call()
    quota = Quota(f"caller:{NUMBER}", 60, limit=5)
    answer = f"<Response><Say>{REPLIED}</Say></Response>"

    assert store.commit_new_call(state, [
        NewEvent("call.start", {"caller": NUMBER}),
        NewEvent("call.transcript", {"speech": SAID, "digits": DIGITS, "turn": 1}),
    ], "start", answer, T0, quota) == 1

    raw = dump()
    assert state.call_sid in raw and MARK in raw
    for secret in SECRETS:
        assert secret not in raw
    assert store.lookup(state.call_sid, "start", counter=quota.key) == \
        Lookup(answer, None, 1)
    assert store.lookup(state.call_sid, "next", counter=quota.key) == Lookup(None, state, 1)
    assert store.incr_window(quota.key, 60) == 2  # the same hashed counter


def test_a_blob_no_key_opens_is_not_had(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    old = open_store(url, encryption_key="the old passphrase, long and random")
    try:
        old.put_blob("audio:abc", b"audio bytes")
        old.put_blob("flow:x", b"plain")
    finally:
        old.close()
    new = open_store(url, encryption_key="a new passphrase that replaced it")
    try:
        assert new.get_blob("audio:abc") is None and new.has_blob("audio:abc") is False
        assert new.has_blob("flow:x") is True
    finally:
        new.close()
