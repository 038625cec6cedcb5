"""`open_store`: the `STORE_URL` setting turned into a `CallStore`.

Accepted forms (SQLAlchemy-style for SQLite):
- `sqlite:///relative/path.db` (relative to the working directory)
- `sqlite:////absolute/path.db`
- `sqlite://` or `sqlite:///:memory:` (a private in-memory database, for tests)
- `redis://[user:password@]host:port/db`, `rediss://...` (TLS), `unix:///path/to/redis.sock?db=0`
  (the Redis backend, to scale out), with optional `prefix=`, `ended_ttl=` and `active_ttl=`
  query parameters (see `engine.store.redis_store`)

With an `encryption_key` (the ENCRYPTION_KEY setting) the backend is wrapped in an
`EncryptedStore` (see `engine.store.encrypted`).
"""

from __future__ import annotations

from collections.abc import Callable

from engine.store.base import CallStore
from engine.store.encrypted import EncryptedStore, Keyring
from engine.store.redis_store import RedisStore
from engine.store.sqlite import SQLiteStore

ACCEPTED_FORMS = ("sqlite:///relative/path.db, sqlite:////absolute/path.db, "
                  "redis://host:port/db, rediss://host:port/db, unix:///path/to/redis.sock")


def _open_sqlite(url: str) -> CallStore:
    rest = url.partition(":")[2]  # the scheme's case does not matter
    if rest == "//":
        return SQLiteStore(":memory:")
    path = rest.removeprefix("///")
    if path == rest or not path:
        raise ValueError(f"STORE_URL {url!r}: write sqlite:///relative/path.db or "
                         f"sqlite:////absolute/path.db (three slashes, then the path)")
    if "?" in path:
        raise ValueError(f"STORE_URL {url!r}: query parameters are not supported")
    return SQLiteStore(path)


def _open_redis(url: str) -> CallStore:
    scheme, _, rest = url.partition(":")
    return RedisStore(f"{scheme.lower()}:{rest}")  # redis-py wants the scheme in lower case


_OPENERS: dict[str, Callable[[str], CallStore]] = {
    "sqlite": _open_sqlite,
    "redis": _open_redis,
    "rediss": _open_redis,
    "unix": _open_redis,
}


def open_store(url: str, encryption_key: str = "") -> CallStore:
    """The store `url` names; ValueError, naming the accepted forms, for anything else.

    With `encryption_key` (one or more comma-separated keys) transcripts and caller numbers are
    encrypted before they reach the backend."""
    scheme, colon, _ = url.strip().partition(":")
    opener = _OPENERS.get(scheme.lower()) if colon else None
    if opener is None:
        raise ValueError(f"STORE_URL {url!r}: unknown store; accepted forms: {ACCEPTED_FORMS}")
    keyring = Keyring.from_setting(encryption_key) if encryption_key.strip() else None
    store = opener(url.strip())
    return store if keyring is None else EncryptedStore(store, keyring)
