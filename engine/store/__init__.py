"""Where calls live: the `CallStore` port, its backends, and `open_store(STORE_URL)`."""

from engine.store.base import (
    CallStore,
    CallSummary,
    Lookup,
    NewEvent,
    Quota,
    StepConflict,
    StoredEvent,
)
from engine.store.encrypted import EncryptedStore, Keyring
from engine.store.factory import open_store
from engine.store.redis_store import RedisStore
from engine.store.sqlite import SQLiteStore

__all__ = [
    "CallStore",
    "CallSummary",
    "EncryptedStore",
    "Keyring",
    "Lookup",
    "NewEvent",
    "Quota",
    "RedisStore",
    "SQLiteStore",
    "StepConflict",
    "StoredEvent",
    "open_store",
]
