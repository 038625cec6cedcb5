"""What only the SQLite backend promises: its file, its schema version, its URLs, many processes."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from engine.runtime.state import Caller, CallState
from engine.store import SQLiteStore, StepConflict, open_store, sqlite
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
