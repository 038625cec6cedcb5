"""Where the server's own secrets live: the session key and the generated dashboard password.

Every server process must agree on them, so they are kept where all processes look: with a
SQLite store, in files of their own beside the database (`<database>-flask-secret-key`,
`<database>-dashboard-password`), made once and readable by their owner only (0600), so the
database, or a copy of it sent along with a bug report, lets nobody sign in or forge a session
cookie; with any other store (Redis, shared by several machines), in the store, as blobs
(sealed there when ENCRYPTION_KEY is set). `secret_keeper(store)` picks the place.

A secret is made once and never overwritten: processes starting together race to create it and
the first one wins (`create` is atomic across processes), so none of them signs cookies with a
key the others refuse. A secret an older version kept in the SQLite database is moved to its file
on first read (the same value, so sessions and the password in use go on working) and blanked in
the database.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from typing import Protocol

from engine.store.base import CallStore
from engine.store.encrypted import EncryptedStore
from engine.store.sqlite import FILE_MODE, SQLiteStore

log = logging.getLogger(__name__)


class SecretKeeper(Protocol):
    """Secrets by name (the blob keys the store would keep them under), made once."""

    def get(self, key: str) -> str | None:
        """The secret kept under `key`; None when there is none yet."""

    def create(self, key: str, value: str) -> bool:
        """Keep `value` under `key` unless a secret is already kept there (atomically across
        processes); True when this call kept it."""


class StoreSecrets:
    """Secrets as blobs of the store (`compare_and_set_blob` makes `create` atomic)."""

    def __init__(self, store: CallStore) -> None:
        self.store = store

    def get(self, key: str) -> str | None:
        """The blob under `key`, decoded; None when absent or empty."""
        found = self.store.get_blob(key)
        return found.decode() if found else None

    def create(self, key: str, value: str) -> bool:
        """Put `value` only where no blob is."""
        return self.store.compare_and_set_blob(key, None, value.encode())


class FileSecrets:
    """Secrets as 0600 files beside a SQLite database: `<database>-<key, ':' as '-'>`.

    `store` is the store on that database, read once per key for a secret an older version kept
    there as a blob."""

    def __init__(self, database: str, store: CallStore) -> None:
        self.database = database
        self.store = store

    def path(self, key: str) -> str:
        """The file that keeps `key`."""
        return f"{self.database}-{key.replace(':', '-').replace('/', '-')}"

    def get(self, key: str) -> str | None:
        """The file's secret; else one the database still holds, moved to the file first."""
        found = self._read(key)
        if found is not None:
            return found
        legacy = self.store.get_blob(key)
        if not legacy:
            return None
        self.create(key, legacy.decode())
        found = self._read(key)
        if found is not None:
            # Out of the database now (there is no delete: an empty blob reads as none).
            self.store.compare_and_set_blob(key, legacy, b"")
        return found

    def create(self, key: str, value: str) -> bool:
        """Write `value` to a private temporary file and link it to its name: the name appears
        with the whole secret in it, or not at all when another process linked its own first."""
        target = self.path(key)
        temporary = f"{target}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(value + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, target)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)

    def _read(self, key: str) -> str | None:
        name = self.path(key)
        try:
            with open(name, encoding="utf-8") as file:
                found = os.fstat(file.fileno())
                if found.st_mode & 0o077:  # made loose by hand: take it back
                    os.chmod(name, stat.S_IMODE(found.st_mode) & 0o700)
                    log.warning("%s was readable by others: made private (0600)", name)
                text = file.read().strip()
        except FileNotFoundError:
            return None
        return text or None


def secret_keeper(store: CallStore) -> SecretKeeper:
    """Files beside the database for a SQLite store on a file (under ENCRYPTION_KEY too: one
    rule), the store itself otherwise (Redis, a private in-memory database, a test's double)."""
    inner = store.inner if isinstance(store, EncryptedStore) else store
    if isinstance(inner, SQLiteStore) and inner.path not in ("", ":memory:"):
        return FileSecrets(inner.path, store)
    return StoreSecrets(store)
