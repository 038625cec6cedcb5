"""The session key and the generated dashboard password are shared by every server process.

Processes that start together on a fresh store race to create them. The first one stored wins
and nobody overwrites it: otherwise a process that already uses its own key would refuse the
session cookies made by the others (the dashboard logs out at random behind a load balancer).
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from engine.store import SQLiteStore
from engine.web.auth import configure_auth


class RacingStore:
    """A store where another process stores every blob right after we first find it absent."""

    def __init__(self) -> None:
        self.inner = SQLiteStore(":memory:")
        self.raced: set[str] = set()

    def get_blob(self, key: str) -> bytes | None:
        found = self.inner.get_blob(key)
        if found is None and key not in self.raced:
            self.raced.add(key)
            self.inner.put_blob(key, f"theirs:{key}".encode())
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_secret_another_process_stored_first_is_kept() -> None:
    store = RacingStore()
    app = Flask(__name__)
    password = configure_auth(app, store, "", "", secure_cookies=False)  # type: ignore[arg-type]
    assert app.secret_key == "theirs:flask:secret-key"
    assert password.startswith("theirs:")
    assert store.inner.get_blob("flask:secret-key") == b"theirs:flask:secret-key"


def test_processes_on_one_store_agree() -> None:
    store = SQLiteStore(":memory:")
    apps = [Flask(f"app{i}") for i in range(3)]
    passwords = {configure_auth(app, store, "", "", secure_cookies=False) for app in apps}
    assert len(passwords) == 1
    assert len({app.secret_key for app in apps}) == 1
