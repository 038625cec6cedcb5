"""Without SECRET_KEY and DASHBOARD_PASSWORD, the session key and the generated password of a
SQLite store live in files of their own beside the database, readable by their owner only: the
database (a copy of it, a backup) lets nobody forge a session or sign in. Every process on the
file, and every restart, still agrees on them; the password is shown once, when it is made."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engine.store import SQLiteStore, open_store, secret_keeper
from engine.store.secret_files import FileSecrets
from engine.web.auth import PASSWORD_BLOB, SECRET_BLOB


def raw_bytes(database: Path) -> bytes:
    """Everything on disk of the database: the file, its WAL and shared memory."""
    return b"".join(Path(f"{database}{suffix}").read_bytes() for suffix in ("", "-wal", "-shm")
                    if Path(f"{database}{suffix}").exists())


def test_the_session_key_and_password_stay_out_of_the_database(
        make_app: Callable[..., Flask], app_config: dict[str, Any],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    database = Path(app_config["STORE_URL"].removeprefix("sqlite:///"))
    app = make_app(DASHBOARD_PASSWORD="", SECRET_KEY="")
    password = app.extensions["phoney"].dashboard_password
    key = str(app.secret_key)
    assert password in caplog.text  # shown once, at the start that made it

    on_disk = raw_bytes(database)
    assert on_disk  # the store did write its file
    assert password.encode() not in on_disk and key.encode() not in on_disk
    for name in ("flask-secret-key", "dashboard-password"):
        kept = Path(f"{database}-{name}")
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    assert Path(f"{database}-flask-secret-key").read_text().strip() == key

    caplog.clear()
    again = make_app(DASHBOARD_PASSWORD="", SECRET_KEY="")  # a restart, another worker
    assert again.secret_key == key and again.extensions["phoney"].dashboard_password == password
    assert password not in caplog.text
    signed_in = again.test_client().post("/login", data={"password": password})
    assert signed_in.status_code == 302


def test_secrets_an_older_version_kept_in_the_database_move_to_their_files(
        tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    old = SQLiteStore(str(path))
    old.put_blob(SECRET_BLOB, b"the-old-session-key")
    old.put_blob(PASSWORD_BLOB, b"the-old-password")
    old.close()

    store = open_store(f"sqlite:///{path}")
    try:
        keeper = secret_keeper(store)
        assert isinstance(keeper, FileSecrets)
        # Kept (signed-in sessions and the password people know go on working) ...
        assert keeper.get(SECRET_BLOB) == "the-old-session-key"
        assert keeper.get(PASSWORD_BLOB) == "the-old-password"
        # ... but no longer in the database.
        assert store.get_blob(SECRET_BLOB) == b"" and store.get_blob(PASSWORD_BLOB) == b""
    finally:
        store.close()
    assert b"the-old-session-key" not in raw_bytes(path)
    assert b"the-old-password" not in raw_bytes(path)


def test_processes_that_start_together_agree(tmp_path: Path) -> None:
    path = str(tmp_path / "calls.db")
    first, second = FileSecrets(path, SQLiteStore(path)), FileSecrets(path, SQLiteStore(path))
    assert first.get(SECRET_BLOB) is None
    assert first.create(SECRET_BLOB, "mine") is True
    assert second.create(SECRET_BLOB, "theirs") is False  # never overwritten
    assert second.get(SECRET_BLOB) == "mine"


def test_other_stores_keep_their_secrets_in_the_store() -> None:
    assert not isinstance(secret_keeper(SQLiteStore(":memory:")), FileSecrets)
