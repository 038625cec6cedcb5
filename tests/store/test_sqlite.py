"""What only the SQLite backend promises: its file, its schema version, its URLs, many processes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.runtime.state import Caller, CallState, state_to_dict
from engine.store import NewEvent, SQLiteStore, StepConflict, open_store, sqlite
from engine.store.sqlite import MIGRATIONS

T0 = 1_700_000_000.0


def new_call(call_sid: str = "CA0001", step: int = 1, node: str = "greet") -> CallState:
    return CallState(call_sid=call_sid, flow_id="receptionist", flow_version="v1",
                     node=node, caller=Caller(number="+15550002222"), called="+15550001000",
                     started_at=T0, personality="friendly", step=step)


def test_creates_the_directory_the_schema_and_a_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "calls.db"
    store = SQLiteStore(str(path))
    assert not path.parent.exists()  # nothing happens before first use

    assert store.ping()
    store.close()

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master"
                                               " WHERE type = 'table'")}
        assert {"calls", "events", "responses", "blobs"} <= tables
    finally:
        db.close()


def test_refuses_a_schema_newer_than_the_code(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()

    with pytest.raises(RuntimeError, match="newer"):
        SQLiteStore(str(path)).get_state("CA1")


def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    path = str(tmp_path / "calls.db")
    first = SQLiteStore(path)
    first.commit_step(None, new_call(), [], "start", "<R/>", at=T0)
    first.close()

    assert SQLiteStore(path).get_state("CA0001") == new_call()


def test_memory_store_is_shared_by_its_threads() -> None:
    store = SQLiteStore(":memory:")
    store.commit_step(None, new_call(), [], "start", "<R/>", at=T0)
    seen: list[CallState | None] = []
    thread = threading.Thread(target=lambda: seen.append(store.get_state("CA0001")))
    thread.start()
    thread.join()
    assert seen == [new_call()]
    store.close()


def test_a_closed_store_reopens_its_connections(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "calls.db"))
    store.put_blob("k", b"v")
    store.close()
    assert store.get_blob("k") == b"v"
    store.close()


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///instance/phoney.db", "instance/phoney.db"),
    ("sqlite:////var/lib/phoney/calls.db", "/var/lib/phoney/calls.db"),
    ("SQLITE:///calls.db", "calls.db"),
    ("sqlite://", ":memory:"),
    ("sqlite:///:memory:", ":memory:"),
])
def test_open_store_reads_sqlite_urls(url: str, path: str) -> None:
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    assert store.path == path


def test_open_store_relative_path_is_from_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///instance/phoney.db")
    assert store.ping()
    store.close()
    assert (tmp_path / "instance" / "phoney.db").is_file()


@pytest.mark.parametrize("url", ["postgres://db/phoney", "calls.db", "", "sqlite:calls.db",
                                 "sqlite:///"])
def test_open_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"sqlite:///"):
        open_store(url)


def _race_in_a_process(path: str, racer: int, start: object, results: object) -> None:
    store = SQLiteStore(path)
    first = new_call()
    start.wait()  # type: ignore[attr-defined]
    try:
        store.commit_step(first, new_call(step=2, node=f"node-{racer}"), [],
                          f"request-{racer}", f"<R>{racer}</R>", at=T0 + 1)
    except StepConflict:
        results.put((racer, "conflict"))  # type: ignore[attr-defined]
    except Exception as error:
        results.put((racer, repr(error)))  # type: ignore[attr-defined]
    else:
        results.put((racer, "won"))  # type: ignore[attr-defined]
    finally:
        store.close()


def test_racing_processes_exactly_one_wins(tmp_path: Path) -> None:
    path = str(tmp_path / "calls.db")
    store = SQLiteStore(path)
    store.commit_step(None, new_call(), [], "start", "<R/>", at=T0)

    context = multiprocessing.get_context("spawn")
    racers = 4
    start = context.Barrier(racers)
    results = context.Queue()
    processes = [context.Process(target=_race_in_a_process, args=(path, i, start, results))
                 for i in range(racers)]
    for process in processes:
        process.start()
    outcomes = dict(results.get(timeout=60) for _ in range(racers))
    for process in processes:
        process.join(timeout=60)

    assert sorted(outcomes.values()) == ["conflict"] * (racers - 1) + ["won"], outcomes
    (winner,) = [i for i, outcome in outcomes.items() if outcome == "won"]
    assert store.get_state("CA0001") == new_call(step=2, node=f"node-{winner}")
    store.close()



def _open_and_write(path: str, key: str, start: object, results: object) -> None:
    store = SQLiteStore(path)
    start.wait()  # type: ignore[attr-defined]
    try:
        store.put_blob(key, b"v")
        results.put("ok")  # type: ignore[attr-defined]
    except Exception as error:
        results.put(repr(error))  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_many_processes_can_open_a_new_file_at_once(tmp_path: Path) -> None:
    # Switching a new file to WAL mode does not wait under busy_timeout; openers must not fail.
    context = multiprocessing.get_context("fork")
    openers = 8
    for round_ in range(20):
        path = str(tmp_path / f"round-{round_}" / "calls.db")
        start = context.Barrier(openers)
        results = context.Queue()
        processes = [context.Process(target=_open_and_write, args=(path, f"k{i}", start, results))
                     for i in range(openers)]
        for process in processes:
            process.start()
        outcomes = [results.get(timeout=60) for _ in processes]
        for process in processes:
            process.join(timeout=60)
        assert outcomes == ["ok"] * openers
        check = SQLiteStore(path)
        assert [check.get_blob(f"k{i}") for i in range(openers)] == [b"v"] * openers
        check.close()


# -- the writers' lock file: processes take turns to write --------------------------------------

def _count_hits(path: str, hits: int, start: object, results: object) -> None:
    store = SQLiteStore(path)
    start.wait()  # type: ignore[attr-defined]
    try:
        results.put([store.incr_window("shared", 60) for _ in range(hits)])  # type: ignore
    except Exception as error:
        results.put(repr(error))  # type: ignore[attr-defined]
    finally:
        store.close()


def test_processes_writing_at_once_each_write_once(tmp_path: Path) -> None:
    path = str(tmp_path / "calls.db")
    SQLiteStore(path).close()
    context = multiprocessing.get_context("spawn")
    writers, hits = 3, 60
    start = context.Barrier(writers)
    results = context.Queue()
    processes = [context.Process(target=_count_hits, args=(path, hits, start, results))
                 for _ in range(writers)]
    for process in processes:
        process.start()
    seen = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert sorted(hit for hits_seen in seen for hit in hits_seen) == \
        list(range(1, writers * hits + 1))
    assert Path(path + sqlite.LOCK_SUFFIX).exists()


def test_a_writer_waits_for_the_lock_file_and_gives_up_in_bounded_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "calls.db")
    store = SQLiteStore(path)
    store.put_blob("k", b"1")  # opens the database (and the lock file) first
    other = os.open(path + sqlite.LOCK_SUFFIX, os.O_RDWR)  # as another process holds it
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        # Let go after a moment: the waiting write goes through.
        releaser = threading.Timer(0.05, lambda: fcntl.flock(other, fcntl.LOCK_UN))
        releaser.start()
        started = time.monotonic()
        store.put_blob("k", b"2")
        assert 0.04 < time.monotonic() - started < 2
        assert store.get_blob("k") == b"2"
        releaser.join()
        # Never let go: the write fails as SQLite's own busy wait would, and changes nothing.
        fcntl.flock(other, fcntl.LOCK_EX)
        monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 150)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.put_blob("k", b"3")
    finally:
        os.close(other)
    assert store.get_blob("k") == b"2"
    store.put_blob("k", b"4")  # once it is free again, writes go on
    assert store.get_blob("k") == b"4"
    store.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_process_takes_its_own_turn(tmp_path: Path) -> None:
    # A descriptor inherited across fork shares its lock with the parent's: the child must open
    # its own, or parent and child would both "hold" it at once.
    path = str(tmp_path / "calls.db")
    store = SQLiteStore(path)
    store.put_blob("k", b"parent")  # the lock file is open before the fork (gunicorn --preload)
    context = multiprocessing.get_context("fork")
    go, results = context.Event(), context.Queue()
    child = context.Process(target=_write_in_child, args=(store, go, results))
    child.start()
    with store._transaction():  # the parent is writing when the child asks
        go.set()
        time.sleep(0.3)
        assert results.empty()  # the child waits for its turn
    outcome, descriptor = results.get(timeout=30)
    assert outcome == "ok"
    assert descriptor not in (None, store._writer_file)  # its own, not the inherited one
    child.join(timeout=30)
    assert store.get_blob("k") == b"child"
    store.close()


def _write_in_child(store: SQLiteStore, go: object, results: object) -> None:
    try:
        go.wait(timeout=30)  # type: ignore[attr-defined]
        store.put_blob("k", b"child")
        results.put(("ok", store._writer_file))  # type: ignore[attr-defined]
    except Exception as error:
        results.put((repr(error), None))  # type: ignore[attr-defined]


# -- upgrading in place: a database made by an older Phoney ---------------------------------------

SCHEMA_VERSION_2 = (  # the DDL of schema version 2, as Phoney wrote it before version 3
    """CREATE TABLE calls (
        call_sid TEXT PRIMARY KEY, state TEXT NOT NULL, step INTEGER NOT NULL,
        flow_id TEXT NOT NULL, flow_version TEXT NOT NULL, caller TEXT NOT NULL,
        called TEXT NOT NULL, status TEXT NOT NULL, node TEXT NOT NULL,
        personality TEXT NOT NULL, started_at REAL NOT NULL, updated_at REAL NOT NULL,
        ended_at REAL, duration INTEGER, closed INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX calls_by_update ON calls (updated_at DESC)",
    """CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, call_sid TEXT NOT NULL,
        name TEXT NOT NULL, data TEXT NOT NULL, at REAL NOT NULL)""",
    "CREATE INDEX events_by_call ON events (call_sid, id)",
    """CREATE TABLE responses (call_sid TEXT NOT NULL, request_key TEXT NOT NULL,
        response TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (call_sid, request_key))
        WITHOUT ROWID""",
    "CREATE TABLE blobs (key TEXT PRIMARY KEY, value BLOB NOT NULL, at REAL NOT NULL)",
    """CREATE TABLE counters (key TEXT PRIMARY KEY, count INTEGER NOT NULL,
        expires_at REAL NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX counters_by_expiry ON counters (expires_at)",
)


def _version_2_database(path: Path) -> None:
    """A file as schema version 2 left it: one call at step 1, its answer, three events (the
    last of which has id 7), a counter in its window and an expired one, WAL mode."""
    state = new_call()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    for statement in SCHEMA_VERSION_2:
        db.execute(statement)
    db.execute(
        "INSERT INTO calls (call_sid, state, step, flow_id, flow_version, caller, called,"
        " status, node, personality, started_at, updated_at) VALUES (?, ?, 1, ?, ?, ?, ?, ?,"
        " ?, ?, ?, ?)", (state.call_sid, json.dumps(state_to_dict(state)), state.flow_id,
                         state.flow_version, state.caller.number, state.called, state.status,
                         state.node, state.personality, T0, T0))
    db.execute("INSERT INTO responses VALUES ('CA0001', 'start', '<R>old</R>', ?)", (T0,))
    for event_id in (1, 2, 7):
        db.execute("INSERT INTO events (id, call_sid, name, data, at) VALUES (?, 'CA0001',"
                   " 'call.node', '{\"n\":1}', ?)", (event_id, T0))
    db.execute("INSERT INTO counters VALUES ('caller:+15550002222', 1, ?)", (time.time() + 600,))
    db.execute("INSERT INTO counters VALUES ('caller:gone', 5, ?)", (time.time() - 1,))
    db.execute("PRAGMA user_version = 2")
    db.close()


def test_a_version_2_database_is_upgraded_on_open_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    _version_2_database(path)

    store = SQLiteStore(str(path))
    assert store.stored_response("CA0001", "start") == "<R>old</R>"
    assert [event.id for event in store.events_after(0, "CA0001")] == [1, 2, 7]
    assert store.last_event_id() == 7
    first = store.get_state("CA0001")
    assert first == new_call()
    store.commit_step(first, new_call(step=2, node="ask"),
                      [NewEvent("call.node", {"node": "ask"}), NewEvent("call.say", {})],
                      "input-1", "<R>ask</R>", at=T0 + 1)
    with pytest.raises(StepConflict):
        store.commit_step(first, new_call(step=2, node="ask"), [], "input-1b", "<R/>", at=T0 + 2)
    assert store.get_state("CA0001") == new_call(step=2, node="ask")
    # Ids go on from the largest, in order, for one call and for all.
    assert [event.id for event in store.events_after(7)] == [8, 9]
    assert [event.name for event in store.events_after(2, "CA0001")] == \
        ["call.node", "call.node", "call.say"]
    assert store.stored_response("CA0001", "input-1") == "<R>ask</R>"
    # The counter in its window goes on; the expired one starts over.
    assert store.incr_window("caller:+15550002222", 600) == 2
    assert store.incr_window("caller:gone", 600) == 1
    store.close()

    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        (events_sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'events'"
                                   ).fetchone()
        assert "AUTOINCREMENT" not in events_sql.upper()
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master"
                                                " WHERE type = 'index'")}
        assert "events_by_call" in indexes and "counters_by_expiry" not in indexes
    finally:
        db.close()


def test_expired_counters_are_purged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteStore(str(tmp_path / "calls.db"))
    assert store.incr_window("short", 0.05) == 1
    time.sleep(0.1)
    monkeypatch.setattr(store, "_next_purge", 0.0)  # the next hit purges
    assert store.incr_window("other", 60) == 1
    with store._connection() as db:
        keys = [row[0] for row in db.execute("SELECT key FROM counters")]
    assert keys == ["other"]
    store.close()


def test_event_ids_keep_growing_across_reopens(tmp_path: Path) -> None:
    path = str(tmp_path / "calls.db")
    seen: list[int] = []
    for round_ in range(3):
        store = SQLiteStore(path)
        store.record_events(f"CA{round_}", [NewEvent("call.error", {"n": round_})] * 2, at=T0)
        seen.extend(event.id for event in store.events_after(seen[-1] if seen else 0))
        store.close()
    assert seen == sorted(set(seen)) and len(seen) == 6


# -- checkpoints: a thread of their own, off the writers' path ------------------------------------

def _wait_for(condition: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_writes_leave_checkpoints_to_the_checkpointer_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoints: list[str] = []
    original = SQLiteStore._checkpoint

    def counted(store: SQLiteStore, generation: int) -> None:
        original(store, generation)
        # Counted once done: the writes below must come after the copy, not race it.
        checkpoints.append(threading.current_thread().name)

    monkeypatch.setattr(SQLiteStore, "_checkpoint", counted)
    monkeypatch.setattr(sqlite, "CHECKPOINT_DELAY", 0.2)
    path = tmp_path / "calls.db"
    store = SQLiteStore(str(path))
    with store._connection() as db:  # SQLite's own checkpoint is only a fallback
        assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == \
            sqlite.AUTOCHECKPOINT_PAGES
    store.put_blob("k", b"1")
    assert _wait_for(lambda: checkpoints, timeout=30), "one commit is checkpointed after the delay"
    assert checkpoints == ["sqlite-checkpoint"]
    checkpoints.clear()
    monkeypatch.setattr(sqlite, "CHECKPOINT_DELAY", 60.0)
    for i in range(sqlite.CHECKPOINT_EVERY):
        store.put_blob("k", str(i).encode())
    assert _wait_for(lambda: checkpoints, timeout=30), "CHECKPOINT_EVERY commits are at once"
    # All of the WAL was copied to the database: the next writer starts it over.
    store.put_blob("k", b"last")
    with store._connection() as db:
        busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and frames <= 2 and copied == frames
    store.close()


def test_the_wal_stays_small_under_many_writes(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = SQLiteStore(str(path))
    for i in range(1000):
        sid = f"CA{i:04d}"
        store.commit_step(None, new_call(call_sid=sid), [NewEvent("call.start", {"i": i})] * 4,
                          "start", "<R>" + "x" * 500 + "</R>", at=T0)
        if store._unchecked >= sqlite.CHECKPOINT_EVERY:
            # The checkpointer thread is asked now. A busy machine may not run it for a while,
            # and a server's next webhooks would wait for it no less: the writes go on once it
            # has started, so that it copies while they come, as under load.
            assert _wait_for(lambda: store._unchecked < sqlite.CHECKPOINT_EVERY, timeout=60)
    pages = os.path.getsize(str(path) + "-wal") / 4096
    assert pages < (sqlite.RESTART_PAGES + sqlite.AUTOCHECKPOINT_PAGES) / 2, pages
    store.close()


def test_a_long_wal_is_copied_to_its_end_in_the_writers_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under steady writes a passive checkpoint never reaches the WAL's end, so no writer starts
    it over. A reader's older snapshot stands in for those writes: it holds the first copy back,
    and it ends when the checkpointer takes the writers' turn, as the writes would pause."""
    monkeypatch.setattr(sqlite._CHECKPOINTER, "ask", lambda *args, **kwargs: None)
    path = tmp_path / "calls.db"
    store = SQLiteStore(str(path))

    def write(count: int, first: int) -> None:
        for i in range(first, first + count):
            store.commit_step(None, new_call(call_sid=f"CA{i:04d}"),
                              [NewEvent("call.start", {"i": i})] * 4,
                              "start", "<R>" + "x" * 500 + "</R>", at=T0)

    write(10, 0)
    reader = sqlite3.connect(str(path), isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM calls").fetchone()
    write(500, 10)
    assert os.path.getsize(str(path) + "-wal") / 4096 >= sqlite.RESTART_PAGES

    turn = store._writer_lock

    @contextlib.contextmanager
    def turn_ending_the_reader() -> Iterator[None]:
        if reader.in_transaction:
            reader.execute("COMMIT")
        with turn():
            yield

    monkeypatch.setattr(store, "_writer_lock", turn_ending_the_reader)
    store._checkpoint(store._generation)
    monkeypatch.setattr(store, "_writer_lock", turn)
    if reader.in_transaction:
        reader.execute("COMMIT")
    reader.close()
    write(1, 510)  # the next writer starts the WAL over
    with store._connection() as db:
        _, frames, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames < 100, frames  # one commit's pages, not the 4000 before
    store.close()


def test_a_closed_store_is_not_checkpointed_again(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite, "CHECKPOINT_DELAY", 0.1)
    store = SQLiteStore(str(tmp_path / "calls.db"))
    store.put_blob("k", b"v")  # asks for a checkpoint in 0.1 s
    store.close()
    time.sleep(0.3)
    assert store._checkpoint_db is None and not list(store._connections)
    store.put_blob("k", b"w")  # usable again, and checkpointed again
    assert _wait_for(lambda: store._checkpoint_db is not None)
    store.close()
    assert store.get_blob("k") == b"w"
    store.close()


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_process_checkpoints_on_its_own(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite, "CHECKPOINT_DELAY", 0.05)
    store = SQLiteStore(str(tmp_path / "calls.db"))
    store.put_blob("k", b"parent")  # the parent's checkpointer thread runs (gunicorn --preload)
    assert _wait_for(lambda: store._checkpoint_db is not None)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_checkpoint_in_child, args=(store, results))
    child.start()
    assert results.get(timeout=30) == "ok"
    child.join(timeout=30)
    assert store.get_blob("k") == b"child"
    store.close()


def _checkpoint_in_child(store: SQLiteStore, results: object) -> None:
    try:
        store.put_blob("k", b"child")
        opened = _wait_for(lambda: store._checkpoint_db is not None)
        results.put("ok" if opened else "no checkpoint")  # type: ignore[attr-defined]
    except Exception as error:
        results.put(repr(error))  # type: ignore[attr-defined]
