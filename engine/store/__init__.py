"""Where calls live: the `CallStore` port, its backends, and `open_store(STORE_URL)`."""

from engine.store.base import (
    ALL_CALLS,
    LIVE_AT_MOST,
    MAX_SEARCH,
    AuditEntry,
    CallQuery,
    CallStore,
    CallSummary,
    Cursor,
    LinesBusy,
    LiveCeiling,
    Lookup,
    NewEvent,
    Pruned,
    Quota,
    StepConflict,
    StoredEvent,
)
from engine.store.encrypted import EncryptedStore, Keyring
from engine.store.factory import open_store
from engine.store.redis_store import RedisStore
from engine.store.secret_files import SecretKeeper, secret_keeper
from engine.store.sqlite import SQLiteStore

__all__ = [
    "ALL_CALLS",
    "LIVE_AT_MOST",
    "MAX_SEARCH",
    "AuditEntry",
    "CallQuery",
    "CallStore",
    "CallSummary",
    "Cursor",
    "EncryptedStore",
    "Keyring",
    "LinesBusy",
    "LiveCeiling",
    "Lookup",
    "NewEvent",
    "Pruned",
    "Quota",
    "RedisStore",
    "SQLiteStore",
    "SecretKeeper",
    "StepConflict",
    "StoredEvent",
    "open_store",
    "secret_keeper",
]
