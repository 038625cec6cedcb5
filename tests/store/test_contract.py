"""The `CallStore` contract: every backend passes these same tests.

To add a backend, add its name to BACKENDS and a branch to `_url`; each test gets a fresh, empty
store (`store`), and `open_again` opens another handle on the same storage, as a second server
process would. Each backend also runs wrapped in `EncryptedStore` (`+encrypted`, as
ENCRYPTION_KEY makes it): the wrapper must keep every promise of the contract.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.runtime.state import Caller, CallState, Message
from engine.store import (
    CallQuery,
    CallStore,
    LinesBusy,
    LiveCeiling,
    Lookup,
    NewEvent,
    Quota,
    StepConflict,
    open_store,
)

BACKENDS = ["sqlite", "redis", "sqlite+encrypted", "redis+encrypted"]
ENCRYPTION_KEY = "contract-suite passphrase, not a Fernet key"


def _url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    backend = backend.removesuffix("+encrypted")
    if backend == "sqlite":
        # An absolute path (sqlite:////...) in a directory that does not exist yet.
        return f"sqlite:///{tmp_path / 'data' / 'calls.db'}"
    if backend == "redis":  # a key prefix of its own (conftest.py); skipped with no server
        return str(request.getfixturevalue("redis_url"))
    raise AssertionError(f"no URL for backend {backend!r}")


@pytest.fixture(params=BACKENDS)
def open_again(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], CallStore]]:
    url = _url(request.param, request, tmp_path)
    key = ENCRYPTION_KEY if request.param.endswith("+encrypted") else ""
    opened: list[CallStore] = []

    def open_() -> CallStore:
        opened.append(open_store(url, encryption_key=key))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_again: Callable[[], CallStore]) -> CallStore:
    return open_again()


T0 = 1_700_000_000.0


def new_call(call_sid: str = "CA0001", **changes: object) -> CallState:
    state = CallState(
        call_sid=call_sid, flow_id="receptionist", flow_version="v1-abc", node="greet",
        caller=Caller(number="+15550002222", city="Springfield", state="IL", country="US",
                      zip="62701", name="Ana"),
        called="+15550001000", started_at=T0, personality="friendly", step=1, path=("greet",))
    return dataclasses.replace(state, **changes)  # type: ignore[arg-type]


def advance(state: CallState, **changes: object) -> CallState:
    """The next step's state, as `step` would return it."""
    return dataclasses.replace(state, step=state.step + 1, **changes)  # type: ignore[arg-type]


def ev(name: str, **data: object) -> NewEvent:
    return NewEvent(name, data)


def test_a_new_call_round_trips_the_whole_state(store: CallStore) -> None:
    state = new_call(
        node="ask", step=3, turn=2, silences=1, ended=False,
        path=("greet", "ask", "ask"),
        history=(Message("agent", "Bonjour, ¿qué tal? 👋", "greet"),
                 Message("caller", "I need an appointment", "ask")),
        pending="tomorrow at 9", pending_digits="12#", errors={"network": 2, "ai_failure": 1},
        offline=True)

    store.commit_step(None, state, [ev("call.start", flow="receptionist")], "start", "<R/>",
                      at=T0)

    loaded = store.get_state("CA0001")
    assert loaded == state
    assert loaded is not None
    assert isinstance(loaded.path, tuple) and isinstance(loaded.history, tuple)
    assert loaded.history[0] == Message("agent", "Bonjour, ¿qué tal? 👋", "greet")
    assert dict(loaded.errors) == {"network": 2, "ai_failure": 1}
    assert loaded.caller == state.caller


def test_unknown_call_has_no_state_summary_or_response(store: CallStore) -> None:
    assert store.get_state("CAnope") is None
    assert store.get_call("CAnope") is None
    assert store.stored_response("CAnope", "start") is None


def test_steps_advance_the_stored_state(store: CallStore) -> None:
    first = new_call()
    store.commit_step(None, first, [], "start", "<R>1</R>", at=T0)
    second = advance(first.at("ask"), turn=1)
    store.commit_step(first, second, [ev("call.node", node="ask")], "step-2", "<R>2</R>",
                      at=T0 + 5)
    third = advance(second, history=(Message("caller", "hi", "ask"),))
    store.commit_step(second, third, [], "step-3", "<R>3</R>", at=T0 + 9)

    assert store.get_state("CA0001") == third
    assert store.stored_response("CA0001", "start") == "<R>1</R>"
    assert store.stored_response("CA0001", "step-2") == "<R>2</R>"
    assert store.stored_response("CA0001", "step-3") == "<R>3</R>"


def _snapshot(store: CallStore, call_sid: str) -> tuple[object, ...]:
    return (store.get_state(call_sid), store.get_call(call_sid),
            store.events_after(0), store.list_calls())


def test_a_stale_step_conflicts_and_changes_nothing(store: CallStore) -> None:
    first = new_call()
    store.commit_step(None, first, [ev("call.start")], "start", "<R>1</R>", at=T0)
    second = advance(first.at("ask"))
    store.commit_step(first, second, [ev("call.node", node="ask")], "step-2", "<R>2</R>",
                      at=T0 + 5)
    before = _snapshot(store, "CA0001")

    # Another request stepped from `first` too, and lost the race.
    stale = advance(first.at("goodbye"), status="completed", ended=True)
    with pytest.raises(StepConflict):
        store.commit_step(first, stale, [ev("call.node", node="goodbye"), ev("call.end")],
                          "step-2-dup", "<R>stale</R>", at=T0 + 6)

    assert _snapshot(store, "CA0001") == before
    assert store.stored_response("CA0001", "step-2-dup") is None
    assert [e.name for e in store.events_after(0)] == ["call.start", "call.node"]


def test_a_step_from_a_state_that_was_never_stored_conflicts(store: CallStore) -> None:
    ghost = new_call("CAghost")
    with pytest.raises(StepConflict):
        store.commit_step(ghost, advance(ghost), [ev("call.node")], "k", "<R/>", at=T0)
    assert store.get_state("CAghost") is None
    assert store.get_call("CAghost") is None
    assert store.events_after(0) == []
    assert store.stored_response("CAghost", "k") is None


def test_a_new_call_that_already_exists_conflicts(store: CallStore) -> None:
    state = new_call()
    store.commit_step(None, state, [ev("call.start")], "start", "<R>first</R>", at=T0)
    before = _snapshot(store, "CA0001")

    with pytest.raises(StepConflict):
        store.commit_step(None, dataclasses.replace(state, node="other"), [ev("call.start")],
                          "start-again", "<R>second</R>", at=T0 + 1)

    assert _snapshot(store, "CA0001") == before
    assert store.stored_response("CA0001", "start-again") is None


def test_a_request_already_answered_is_not_stepped_again(store: CallStore) -> None:
    first = new_call()
    store.commit_step(None, first, [], "start", "<R>1</R>", at=T0)
    second = advance(first)
    store.commit_step(first, second, [ev("call.node")], "gather-2", "<R>2</R>", at=T0 + 1)
    before = _snapshot(store, "CA0001")

    # The same webhook again, stepped from the state the first one produced.
    with pytest.raises(StepConflict):
        store.commit_step(second, advance(second), [ev("call.node")], "gather-2", "<R>3</R>",
                          at=T0 + 2)

    assert _snapshot(store, "CA0001") == before
    assert store.stored_response("CA0001", "gather-2") == "<R>2</R>"


def test_a_step_that_fails_midway_stores_nothing(store: CallStore) -> None:
    first = new_call()
    store.commit_step(None, first, [], "start", "<R>1</R>", at=T0)
    before = _snapshot(store, "CA0001")

    unserialisable = NewEvent("call.node", {"when": object()})
    with pytest.raises(TypeError):
        store.commit_step(first, advance(first.at("ask")), [ev("call.node"), unserialisable],
                          "step-2", "<R>2</R>", at=T0 + 1)

    assert _snapshot(store, "CA0001") == before
    assert store.stored_response("CA0001", "step-2") is None
    # Nothing was left half-done: the same step can now be committed.
    store.commit_step(first, advance(first.at("ask")), [ev("call.node")], "step-2", "<R>2</R>",
                      at=T0 + 1)
    assert store.stored_response("CA0001", "step-2") == "<R>2</R>"


def test_stored_response_is_per_call_and_request(store: CallStore) -> None:
    store.commit_step(None, new_call("CA1"), [], "start", "<R>one</R>", at=T0)
    store.commit_step(None, new_call("CA2"), [], "start", "<R>two</R>", at=T0)

    assert store.stored_response("CA1", "start") == "<R>one</R>"
    assert store.stored_response("CA2", "start") == "<R>two</R>"
    assert store.stored_response("CA1", "gather-2") is None
    assert store.stored_response("CA3", "start") is None


def test_events_get_increasing_ids_and_are_read_after_an_id(store: CallStore) -> None:
    a, b = new_call("CAa"), new_call("CAb")
    store.commit_step(None, a, [ev("call.start", n=1), ev("call.node", n=2)], "s", "<R/>", at=T0)
    store.commit_step(None, b, [ev("call.start", n=3)], "s", "<R/>", at=T0 + 1)
    store.record_events("CAa", [ev("call.error", n=4, kind="network")], at=T0 + 2)
    store.commit_step(a, advance(a), [ev("call.transcript", n=5, text="¡hola!")], "s2", "<R/>",
                      at=T0 + 3)

    events = store.events_after(0)
    assert [e.data["n"] for e in events] == [1, 2, 3, 4, 5]
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [e.call_sid for e in events] == ["CAa", "CAa", "CAb", "CAa", "CAa"]
    assert events[3].name == "call.error" and events[3].data == {"n": 4, "kind": "network"}
    assert events[4].data["text"] == "¡hola!"
    assert [e.at for e in events] == [T0, T0, T0 + 1, T0 + 2, T0 + 3]

    assert [e.data["n"] for e in store.events_after(ids[1])] == [3, 4, 5]
    assert [e.data["n"] for e in store.events_after(ids[1], "CAa")] == [4, 5]
    assert [e.data["n"] for e in store.events_after(0, "CAb")] == [3]
    assert [e.data["n"] for e in store.events_after(0, limit=2)] == [1, 2]
    assert [e.data["n"] for e in store.events_after(ids[0], "CAa", limit=2)] == [2, 4]
    assert store.events_after(ids[-1]) == []
    assert store.events_after(0, "CAnone") == []
    assert events[0].as_json()["data"] == {"n": 1}


def test_record_events_needs_no_stored_call(store: CallStore) -> None:
    store.record_events("CAunknown", [ev("call.error", kind="network"), ev("call.end")], at=T0)
    store.record_events("CAunknown", [], at=T0 + 1)

    assert [(e.call_sid, e.name) for e in store.events_after(0)] == [
        ("CAunknown", "call.error"), ("CAunknown", "call.end")]
    assert store.get_call("CAunknown") is None


def test_the_summary_follows_the_state(store: CallStore) -> None:
    state = new_call()
    store.commit_step(None, state, [], "start", "<R/>", at=T0 + 1)

    summary = store.get_call("CA0001")
    assert summary is not None
    assert summary.as_json() == {
        "call_sid": "CA0001", "flow_id": "receptionist", "flow_version": "v1-abc",
        "caller": "+15550002222", "called": "+15550001000", "status": "in-progress",
        "node": "greet", "personality": "friendly", "started_at": T0, "updated_at": T0 + 1,
        "ended_at": None, "duration": None, "outcome": None, "mood": None, "summary": "",
        "test": None}

    moved = advance(state.at("ask"), personality="professional")
    store.commit_step(state, moved, [], "step-2", "<R/>", at=T0 + 7)
    summary = store.get_call("CA0001")
    assert summary is not None
    assert (summary.node, summary.personality, summary.updated_at, summary.ended_at) == (
        "ask", "professional", T0 + 7, None)

    hung_up = advance(moved.at("goodbye"), ended=True)
    store.commit_step(moved, hung_up, [], "step-3", "<R><Hangup/></R>", at=T0 + 9)
    summary = store.get_call("CA0001")
    assert summary is not None
    assert (summary.node, summary.status, summary.ended_at) == ("goodbye", "in-progress", T0 + 9)


def test_a_final_status_in_the_state_ends_the_summary(store: CallStore) -> None:
    state = new_call(status="busy")
    store.commit_step(None, state, [], "start", "<R/>", at=T0 + 2)
    summary = store.get_call("CA0001")
    assert summary is not None
    assert (summary.status, summary.ended_at) == ("busy", T0 + 2)


def test_close_call_sets_status_duration_and_end(store: CallStore) -> None:
    state = new_call()
    store.commit_step(None, state, [], "start", "<R/>", at=T0)

    store.close_call("CA0001", "completed", 42, at=T0 + 43)

    summary = store.get_call("CA0001")
    assert summary is not None
    assert (summary.status, summary.duration, summary.ended_at, summary.updated_at) == (
        "completed", 42, T0 + 43, T0 + 43)
    closed = store.get_state("CA0001")
    assert closed is not None
    assert (closed.status, closed.ended) == ("completed", True)
    # Everything else in the state, and the step later requests are checked against, stays.
    assert dataclasses.replace(closed, status="in-progress", ended=False) == state



def test_only_a_final_status_closes_the_call(store: CallStore) -> None:
    state = new_call()
    store.commit_step(None, state, [], "start", "<R/>", at=T0)

    store.close_call("CA0001", "in-progress", None, at=T0 + 1)
    summary, latest = store.get_call("CA0001"), store.get_state("CA0001")
    assert summary is not None and latest is not None
    assert (summary.status, summary.ended_at, latest.ended) == ("in-progress", None, False)

    store.close_call("CA0001", "no-answer", 0, at=T0 + 5)
    store.close_call("CA0001", "in-progress", None, at=T0 + 6)  # late, out of order
    store.close_call("CA0001", "no-answer", 0, at=T0 + 7)  # Twilio retried the callback
    summary, latest = store.get_call("CA0001"), store.get_state("CA0001")
    assert summary is not None and latest is not None
    assert (summary.status, summary.duration, summary.ended_at) == ("no-answer", 0, T0 + 5)
    assert (latest.status, latest.ended) == ("no-answer", True)

def test_close_call_of_an_unknown_call_does_nothing(store: CallStore) -> None:
    store.close_call("CAnope", "completed", 10, at=T0)

    assert store.get_call("CAnope") is None
    assert store.get_state("CAnope") is None
    assert store.list_calls() == []


def test_a_step_racing_the_close_does_not_reopen_the_call(store: CallStore) -> None:
    state = new_call()
    store.commit_step(None, state, [], "start", "<R/>", at=T0)
    store.close_call("CA0001", "completed", 12, at=T0 + 12)

    # A webhook read the state before the close and commits after it.
    store.commit_step(state, advance(state.at("ask")), [ev("call.node")], "step-2", "<R/>",
                      at=T0 + 13)

    summary = store.get_call("CA0001")
    assert summary is not None
    assert (summary.node, summary.status, summary.duration, summary.ended_at) == (
        "ask", "completed", 12, T0 + 12)
    latest = store.get_state("CA0001")
    assert latest is not None
    assert (latest.node, latest.status, latest.ended) == ("ask", "completed", True)


def test_list_calls_most_recently_updated_first(store: CallStore) -> None:
    states = {sid: new_call(sid) for sid in ("CA1", "CA2", "CA3")}
    store.commit_step(None, states["CA1"], [], "start", "<R/>", at=T0 + 10)
    store.commit_step(None, states["CA2"], [], "start", "<R/>", at=T0 + 30)
    store.commit_step(None, states["CA3"], [], "start", "<R/>", at=T0 + 20)

    assert [c.call_sid for c in store.list_calls()] == ["CA2", "CA3", "CA1"]

    store.commit_step(states["CA1"], advance(states["CA1"]), [], "s2", "<R/>", at=T0 + 40)
    assert [c.call_sid for c in store.list_calls()] == ["CA1", "CA2", "CA3"]
    assert [c.call_sid for c in store.list_calls(limit=2)] == ["CA1", "CA2"]
    assert [c.call_sid for c in store.list_calls(limit=1)] == ["CA1"]

    store.close_call("CA3", "completed", 30, at=T0 + 50)
    assert [c.call_sid for c in store.list_calls(limit=2)] == ["CA3", "CA1"]


def test_blobs(store: CallStore) -> None:
    raw = bytes(range(256)) + b"\x00\xff"
    assert store.get_blob("audio/abc.mp3") is None

    store.put_blob("audio/abc.mp3", raw)
    store.put_blob("flow/receptionist/v1", b"{}")
    assert store.get_blob("audio/abc.mp3") == raw
    assert store.get_blob("flow/receptionist/v1") == b"{}"

    store.put_blob("audio/abc.mp3", b"")
    assert store.get_blob("audio/abc.mp3") == b""
    assert store.get_blob("audio/other.mp3") is None


def test_compare_and_set_blob_writes_only_over_the_expected_value(store: CallStore) -> None:
    assert store.compare_and_set_blob("cursor:x", None, b"1") is True  # None: absent
    assert store.compare_and_set_blob("cursor:x", None, b"2") is False
    assert store.compare_and_set_blob("cursor:x", b"0", b"2") is False
    assert store.get_blob("cursor:x") == b"1"
    assert store.compare_and_set_blob("cursor:x", b"1", b"2") is True
    assert store.get_blob("cursor:x") == b"2"
    store.put_blob("cursor:y", b"")
    assert store.compare_and_set_blob("cursor:y", None, b"3") is False  # empty is not absent
    assert store.compare_and_set_blob("cursor:y", b"", b"3") is True
    assert store.get_blob("cursor:y") == b"3"


def test_racing_compare_and_set_exactly_one_wins(
        open_again: Callable[[], CallStore]) -> None:
    handles = [open_again() for _ in range(2)]  # as two server processes would
    handles[0].put_blob("lease", b"free")
    racers = 8
    barrier = threading.Barrier(racers)
    won: list[int] = []

    def race(i: int) -> None:
        barrier.wait()
        if handles[i % 2].compare_and_set_blob("lease", b"free", f"racer-{i}".encode()):
            won.append(i)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(won) == 1
    assert handles[1].get_blob("lease") == f"racer-{won[0]}".encode()


def test_compare_and_set_of_a_blob_the_encrypted_store_encrypts(store: CallStore) -> None:
    # `stream:` blobs hold replies, so EncryptedStore encrypts them: the swap must still work.
    assert store.compare_and_set_blob("stream:x", None, b"one") is True
    assert store.compare_and_set_blob("stream:x", None, b"two") is False
    assert store.compare_and_set_blob("stream:x", b"zero", b"two") is False
    assert store.compare_and_set_blob("stream:x", b"one", b"two") is True
    assert store.get_blob("stream:x") == b"two"


def test_incr_window_counts_hits_per_key(store: CallStore) -> None:
    assert [store.incr_window("caller:+15550002222", 60) for _ in range(3)] == [1, 2, 3]
    assert store.incr_window("caller:+15550003333", 60) == 1
    assert store.incr_window("caller:+15550002222", 60) == 4


def test_incr_window_starts_over_when_the_window_closes(store: CallStore) -> None:
    assert store.incr_window("k", 0.3) == 1
    assert store.incr_window("k", 0.3) == 2
    time.sleep(0.45)
    assert store.incr_window("k", 0.3) == 1


def test_racing_incr_window_counts_every_hit_once(
        open_again: Callable[[], CallStore]) -> None:
    handles = [open_again() for _ in range(2)]  # as two server processes would
    racers, hits = 8, 5
    barrier = threading.Barrier(racers)
    seen: list[int] = []

    def race(i: int) -> None:
        barrier.wait()
        for _ in range(hits):
            seen.append(handles[i % 2].incr_window("shared", 60))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(seen) == list(range(1, racers * hits + 1))


def test_last_event_id_is_the_newest_events_id(store: CallStore) -> None:
    assert store.last_event_id() == 0
    store.record_events("CAa", [ev("call.start"), ev("call.node")], at=T0)
    store.commit_step(None, new_call("CAb"), [ev("call.start")], "s", "<R/>", at=T0 + 1)

    assert store.last_event_id() == store.events_after(0)[-1].id
    assert store.events_after(store.last_event_id()) == []


def test_ping(store: CallStore) -> None:
    assert store.ping() is True


def test_racing_steps_from_one_state_exactly_one_wins(store: CallStore) -> None:
    first = new_call()
    store.commit_step(None, first, [ev("call.start")], "start", "<R/>", at=T0)
    racers = 8
    barrier = threading.Barrier(racers)
    outcomes: dict[int, str] = {}

    def race(i: int) -> None:
        barrier.wait()
        try:
            store.commit_step(first, advance(first.at(f"node-{i}")), [ev("call.node", racer=i)],
                              f"request-{i}", f"<R>{i}</R>", at=T0 + 1)
        except StepConflict:
            outcomes[i] = "conflict"
        except Exception as error:  # reported below, not swallowed by the thread
            outcomes[i] = repr(error)
        else:
            outcomes[i] = "won"

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [i for i, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1, outcomes
    assert sorted(outcomes.values()) == ["conflict"] * (racers - 1) + ["won"], outcomes
    (winner,) = winners
    assert store.get_state("CA0001") == advance(first.at(f"node-{winner}"))
    assert [e.data for e in store.events_after(0, "CA0001")][1:] == [{"racer": winner}]
    for i in range(racers):
        expected = f"<R>{winner}</R>" if i == winner else None
        assert store.stored_response("CA0001", f"request-{i}") == expected


def test_two_handles_on_one_store_see_each_others_writes(
        open_again: Callable[[], CallStore]) -> None:
    one, two = open_again(), open_again()
    first = new_call()
    one.commit_step(None, first, [ev("call.start")], "start", "<R>1</R>", at=T0)

    assert two.get_state("CA0001") == first
    assert two.stored_response("CA0001", "start") == "<R>1</R>"
    second = advance(first.at("ask"))
    two.commit_step(first, second, [ev("call.node")], "step-2", "<R>2</R>", at=T0 + 1)

    assert one.get_state("CA0001") == second
    with pytest.raises(StepConflict):  # `one` still holds the old state: it must not win
        one.commit_step(first, advance(first.at("other")), [], "step-2b", "<R/>", at=T0 + 2)
    assert [e.name for e in one.events_after(0)] == ["call.start", "call.node"]

    two.put_blob("k", b"v")
    assert one.get_blob("k") == b"v"
    one.close_call("CA0001", "completed", 3, at=T0 + 3)
    summary = two.get_call("CA0001")
    assert summary is not None and summary.status == "completed"
    assert [c.call_sid for c in two.list_calls()] == ["CA0001"]


def test_a_closed_store_can_be_reopened(open_again: Callable[[], CallStore]) -> None:
    store = open_again()
    store.commit_step(None, new_call(), [], "start", "<R/>", at=T0)
    store.close()

    again = open_again()
    assert again.get_state("CA0001") == new_call()


# -- lookup and commit_new_call: the reads and writes of one webhook, together -------------------

def test_lookup_of_an_unknown_call_finds_nothing(store: CallStore) -> None:
    assert store.lookup("CAnope", "start") == Lookup(None, None, 0)
    assert store.lookup("CAnope", "start", counter="caller:+15550002222") == \
        Lookup(None, None, 0)


def test_lookup_reads_the_answer_the_state_and_the_count_together(store: CallStore) -> None:
    first = new_call()
    store.commit_step(None, first, [ev("call.start")], "start", "<R>1</R>", at=T0)
    second = advance(first.at("ask"), turn=1, history=(Message("caller", "hi", "ask"),))
    store.commit_step(first, second, [], "step-2", "<R>2</R>", at=T0 + 5)
    for _ in range(3):
        store.incr_window("caller:+15550002222", 60)

    # A request answered before: its answer, and no state (a repeat needs none).
    assert store.lookup("CA0001", "start") == Lookup("<R>1</R>", None, 0)
    found = store.lookup("CA0001", "step-2", counter="caller:+15550002222")
    assert found == Lookup("<R>2</R>", None, 3)
    assert found.response == store.stored_response("CA0001", "step-2")
    # A new request: the state, as get_state reads it.
    found = store.lookup("CA0001", "step-3", counter="caller:+15550002222")
    assert found == Lookup(None, second, 3)
    assert found.state == store.get_state("CA0001")
    assert store.lookup("CA0001", "step-3", counter="caller:+15550009999").count == 0


def test_lookup_does_not_count_and_sees_a_closed_window_as_empty(store: CallStore) -> None:
    assert store.incr_window("k", 0.3) == 1
    assert store.lookup("CAx", "r", counter="k").count == 1
    assert store.lookup("CAx", "r", counter="k").count == 1  # reading counted nothing
    time.sleep(0.45)
    assert store.lookup("CAx", "r", counter="k").count == 0
    assert store.incr_window("k", 0.3) == 1


def test_lookup_of_a_closed_call_reads_its_final_status(store: CallStore) -> None:
    store.commit_step(None, new_call(), [], "start", "<R/>", at=T0)
    store.close_call("CA0001", "completed", 30, at=T0 + 30)
    found = store.lookup("CA0001", "later").state
    assert found is not None and found.status == "completed" and found.ended


def test_commit_new_call_stores_the_step_and_counts_the_hit(store: CallStore) -> None:
    state = new_call(history=(Message("agent", "Hello", "greet"),))
    quota = Quota("caller:+15550002222", 60, limit=2)

    assert store.commit_new_call(state, [ev("call.start", caller="+15550002222")], "start",
                                 "<R>hello</R>", T0, quota) == 1

    assert store.get_state("CA0001") == state
    assert store.stored_response("CA0001", "start") == "<R>hello</R>"
    assert [(event.name, dict(event.data)) for event in store.events_after(0)] == \
        [("call.start", {"caller": "+15550002222"})]
    summary = store.get_call("CA0001")
    assert summary is not None and summary.caller == "+15550002222"
    # One counter with incr_window: the next hit, either way, is the second.
    assert store.incr_window("caller:+15550002222", 60) == 2
    assert store.commit_new_call(new_call("CA0002"), [], "start", "<R/>", T0, quota) == 3


def test_commit_new_call_over_the_limit_counts_the_hit_and_stores_no_step(
        store: CallStore) -> None:
    quota = Quota("caller:+15550002222", 60, limit=1)
    assert store.commit_new_call(new_call("CA0001"), [], "start", "<R/>", T0, quota) == 1

    assert store.commit_new_call(new_call("CA0002"), [ev("call.start")], "start", "<R>2</R>",
                                 T0 + 1, quota) == 2

    assert store.lookup("CA0002", "start", counter=quota.key) == Lookup(None, None, 2)
    assert store.get_call("CA0002") is None
    assert [event.call_sid for event in store.events_after(0)] == []
    assert [summary.call_sid for summary in store.list_calls()] == ["CA0001"]


def test_commit_new_call_of_a_call_that_exists_conflicts_and_counts_nothing(
        store: CallStore) -> None:
    quota = Quota("caller:+15550002222", 60, limit=5)
    first = new_call()
    assert store.commit_new_call(first, [], "start", "<R>1</R>", T0, quota) == 1
    before = _snapshot(store, "CA0001")

    with pytest.raises(StepConflict):  # Twilio's retry of the first webhook, racing it
        store.commit_new_call(first, [ev("call.start")], "start", "<R>again</R>", T0 + 1, quota)
    with pytest.raises(StepConflict):
        store.commit_new_call(first, [], "other", "<R>again</R>", T0 + 1, quota)

    assert _snapshot(store, "CA0001") == before
    assert store.lookup("CA0001", "start", counter=quota.key) == Lookup("<R>1</R>", None, 1)
    assert store.lookup("CA0001", "next", counter=quota.key) == Lookup(None, first, 1)


def test_commit_new_call_is_a_step_like_any_other(store: CallStore) -> None:
    first = new_call()
    store.commit_new_call(first, [], "start", "<R>1</R>", T0, Quota("q", 60, limit=1))
    second = advance(first.at("ask"))
    store.commit_step(first, second, [ev("call.node", node="ask")], "step-2", "<R>2</R>",
                      at=T0 + 5)
    assert store.lookup("CA0001", "step-2") == Lookup("<R>2</R>", None, 0)
    assert store.lookup("CA0001", "step-3") == Lookup(None, second, 0)


def test_racing_new_calls_of_one_caller_store_exactly_the_limit(
        open_again: Callable[[], CallStore]) -> None:
    handles = [open_again() for _ in range(2)]  # as two server processes would
    racers, limit = 8, 3
    quota = Quota("caller:+15550002222", 60, limit=limit)
    barrier = threading.Barrier(racers)
    counts: list[int] = []

    def race(i: int) -> None:
        barrier.wait()
        counts.append(handles[i % 2].commit_new_call(
            new_call(f"CA{i:04d}"), [ev("call.start")], "start", "<R/>", T0, quota))

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(counts) == list(range(1, racers + 1))
    stored = handles[0].list_calls()
    assert len(stored) == limit
    assert len(handles[0].events_after(0)) == limit


def test_has_blob_is_whether_get_blob_finds_one(store: CallStore) -> None:
    for key in ("audio:abc", "flow:receptionist", "stream:x"):
        assert store.has_blob(key) is False
        store.put_blob(key, b"\x00" * 50_000)
        assert store.has_blob(key) is True
        assert store.has_blob(key + "-other") is False
    assert store.compare_and_set_blob("cursor:pusher", None, b"1")
    assert store.has_blob("cursor:pusher") is True


# -- a new call's first write meets a stored call as a conflict first -------------------------
# Twilio's retry of the incoming-call webhook (or another request for the same CallSid) is
# answered from the store, never refused by the caller quota or told the lines are busy
# because of its own call.

CONFLICT_QUOTA = Quota(key="caller:+15550002222", limit=1, window_seconds=3600)


def first_write(store: CallStore, sid: str = "CA0001", **kwargs: object) -> int:
    return store.commit_new_call(new_call(sid), [NewEvent("call.start", {"n": 1})], "k1",
                                 "<Response/>", T0, **kwargs)  # type: ignore[arg-type]


def test_a_stored_call_conflicts_before_an_exhausted_quota(store: CallStore) -> None:
    assert first_write(store, quota=CONFLICT_QUOTA) == 1
    with pytest.raises(StepConflict):
        first_write(store, quota=CONFLICT_QUOTA)  # over the quota of 1 now, but the call is stored
    # The conflict rolled its count back: a second caller number is not affected, and this
    # number's next new call is the second hit, not the third.
    assert first_write(store, "CA0002", quota=CONFLICT_QUOTA) == 2


def test_a_stored_call_conflicts_before_full_lines(store: CallStore) -> None:
    lines = LiveCeiling(limit=1, stale_seconds=3600)
    first_write(store, quota=None, live=lines)
    with pytest.raises(StepConflict):
        first_write(store, quota=None, live=lines)  # the one line is its own
    with pytest.raises(LinesBusy):
        first_write(store, "CA0002", quota=None, live=lines)


def test_an_answered_request_key_conflicts(store: CallStore) -> None:
    first_write(store, quota=None)
    with pytest.raises(StepConflict):
        store.commit_new_call(new_call("CA0001"), [], "k1", "<Response/>", T0, None)
    events = store.events_after(0, "CA0001")
    assert [event.name for event in events] == ["call.start"]  # nothing written twice


# The calls list: facts kept in the summary row, filters and pages.


def _call(store: CallStore, sid: str, started: float, events: list[NewEvent], *,
          flow: str = "receptionist", end: bool = True) -> None:
    state = new_call(sid, started_at=started, flow_id=flow)
    store.commit_step(None, state, events, "start", "<R/>", at=started + 1)
    if end:
        store.close_call(sid, "completed", 30, at=started + 30)


def _sids(store: CallStore, limit: int = 50, **query: object) -> list[str]:
    return [call.call_sid for call in store.list_calls(limit, CallQuery(**query))]  # type: ignore[arg-type]


def test_an_ended_call_keeps_its_outcome_mood_and_summary(store: CallStore) -> None:
    _call(store, "CA1", T0, [ev("call.say", text="Hello."),
                             ev("call.transcript", speech="I want to book", sentiment=0.5),
                             ev("call.response", text="Sure, Tuesday?"),
                             ev("call.transcript", speech="great", sentiment=0.1)], end=False)
    live = store.get_call("CA1")
    assert live is not None and live.outcome is None  # live: no outcome yet

    store.close_call("CA1", "completed", 30, at=T0 + 30)
    ended = store.get_call("CA1")
    assert ended is not None
    assert (ended.outcome, ended.mood, ended.summary, ended.test) == (
        "abandoned", 0.3, "", None)  # the last words were not answered

    store.record_events("CA1", [ev("call.analysis", status="ok", summary="Booked Tuesday.",
                                   fields={"resolved": True})], at=T0 + 40)
    analysed = store.get_call("CA1")
    assert analysed is not None
    assert (analysed.outcome, analysed.summary) == ("resolved", "Booked Tuesday.")


def test_filters_by_date_flow_outcome_and_test(store: CallStore) -> None:
    _call(store, "CA1", T0, [ev("call.transfer", to="+1555", status="completed")])
    _call(store, "CA2", T0 + 100, [ev("call.recording", url="https://x/r", duration=9)],
          flow="clinic")
    _call(store, "CA3", T0 + 200, [ev("call.error", kind="flow", detail="no edge")])
    _call(store, "CA4", T0 + 300, [])
    store.record_events("CA4", [ev("call.test", source="scenario")], at=T0 + 301)

    assert _sids(store) == ["CA3", "CA2", "CA1"]  # test calls hidden
    assert _sids(store, include_test=True) == ["CA4", "CA3", "CA2", "CA1"]
    assert _sids(store, since=T0 + 100, until=T0 + 200) == ["CA2"]
    assert _sids(store, since=T0 + 100) == ["CA3", "CA2"]
    assert _sids(store, flow="clinic") == ["CA2"]
    assert _sids(store, outcome="transferred") == ["CA1"]
    assert _sids(store, outcome="voicemail") == ["CA2"]
    assert _sids(store, outcome="failed") == ["CA3"]
    assert _sids(store, outcome="abandoned", include_test=True) == ["CA4"]
    assert _sids(store, outcome="resolved") == []
    test = store.get_call("CA4")
    assert test is not None and test.test == "scenario"


def test_search_reads_the_transcript_only(store: CallStore) -> None:
    _call(store, "CA1", T0, [ev("call.transcript", speech="My Invoice is wrong")])
    _call(store, "CA2", T0 + 10, [ev("call.response", text="Your 100% refund_ is on its way")])
    _call(store, "CA3", T0 + 20, [ev("call.node", node="invoice")])

    assert _sids(store, text="invoice") == ["CA1"]  # any case; not other events
    assert _sids(store, text="100%") == ["CA2"]  # LIKE's wildcards are plain text
    assert _sids(store, text="d_ is") == ["CA2"]
    assert _sids(store, text="0% r") == ["CA2"]
    assert _sids(store, text="speech") == []  # not the stored JSON's keys
    assert _sids(store, text="nothing like it") == []
    assert _sids(store, text="x" * 10_000) == []


def test_pages_follow_the_lists_order(store: CallStore) -> None:
    for n in range(7):
        _call(store, f"CA{n}", T0 + n, [ev("call.transcript", speech=f"call {n}")])
    everything = _sids(store)
    assert everything == [f"CA{n}" for n in reversed(range(7))]

    seen: list[str] = []
    query = CallQuery()
    while True:
        page = store.list_calls(3, query)
        seen += [call.call_sid for call in page]
        if len(page) < 3:
            break
        query = CallQuery(before=page[-1].cursor())
    assert seen == everything

    first = store.list_calls(2, CallQuery(text="call"))
    rest = store.list_calls(50, CallQuery(text="call", before=first[-1].cursor()))
    assert [c.call_sid for c in first + rest] == everything


def test_a_call_that_ended_before_anyone_spoke(store: CallStore) -> None:
    _call(store, "CA1", T0, [])
    summary = store.get_call("CA1")
    assert summary is not None
    assert (summary.outcome, summary.mood, summary.summary) == ("abandoned", None, "")


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_a_failed_status_is_a_failed_call(store: CallStore, status: str) -> None:
    store.commit_step(None, new_call("CA1"), [], "start", "<R/>", at=T0 + 1)
    store.close_call("CA1", status, 0, at=T0 + 2)
    summary = store.get_call("CA1")
    assert summary is not None and summary.outcome == "failed"
