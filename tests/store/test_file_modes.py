"""The SQLite store's files are its owner's alone: the database, its -wal and -shm, the
writers' lock file (0600), and the directory when the store makes it (0700). A database from
before, created 0644, is tightened when the store opens it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.store import NewEvent, SQLiteStore
from engine.store.sqlite import LOCK_SUFFIX
from tests.store.test_contract import new_call


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The usual umask (022), which by itself makes files 0644 and directories 0755."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def write_a_call(store: SQLiteStore) -> None:
    state = new_call()
    store.commit_step(None, state, [NewEvent("call.start", {})], "start", "<Response/>",
                      at=state.started_at)


def test_a_new_store_makes_its_files_for_its_owner_only(tmp_path: Path,
                                                        loose_umask: None) -> None:
    path = tmp_path / "instance" / "calls.db"
    store = SQLiteStore(str(path))
    try:
        write_a_call(store)
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}{LOCK_SUFFIX}")]
        assert all(file.exists() for file in files)
        assert {str(file): mode(file) for file in files} == {str(file): 0o600 for file in files}
        assert mode(path.parent) == 0o700
    finally:
        store.close()


def test_an_existing_database_is_tightened_and_its_directory_left_alone(
        tmp_path: Path, loose_umask: None) -> None:
    path = tmp_path / "calls.db"
    first = SQLiteStore(str(path))
    write_a_call(first)
    first.close()
    for suffix in ("", "-wal", "-shm", LOCK_SUFFIX):
        if os.path.exists(f"{path}{suffix}"):
            os.chmod(f"{path}{suffix}", 0o644)  # as a version before this one made them
    tmp_path.chmod(0o755)

    again = SQLiteStore(str(path))
    try:
        assert again.get_state("CA0001") is not None
        for suffix in ("", "-wal", "-shm", LOCK_SUFFIX):
            if os.path.exists(f"{path}{suffix}"):
                assert mode(f"{path}{suffix}") == 0o600, suffix
        assert mode(tmp_path) == 0o755  # not the store's to change: it did not make it
    finally:
        again.close()
