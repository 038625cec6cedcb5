"""The Redis server the store tests use, and a fresh key prefix per test.

`TEST_REDIS_URL` names the server (default redis://127.0.0.1:6379/0). Without one the Redis
tests are skipped, with the reason; under `REQUIRE_REDIS=1` (set by .ci/run) they fail instead.
Each test gets its own prefix and its keys are deleted afterwards (SCAN + DEL of that prefix
only, never FLUSHDB: the server may be shared).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from functools import cache

import pytest
import redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def server_url() -> str:
    return os.environ.get("TEST_REDIS_URL") or DEFAULT_URL


@cache
def _unreachable() -> str | None:
    """Why the test server cannot be used, or None when it answers."""
    client = redis.Redis.from_url(server_url(), socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        return f"no Redis server answers at {server_url()} ({error})"
    finally:
        client.close()
    return None


def require_redis() -> None:
    reason = _unreachable()
    if reason is None:
        return
    if os.environ.get("REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason}; REQUIRE_REDIS=1, so the Redis tests must run", pytrace=False)
    pytest.skip(f"{reason}; start redis-server or set TEST_REDIS_URL "
                f"(REQUIRE_REDIS=1 makes this a failure)")


def delete_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(server_url())
    try:
        batch = list(client.scan_iter(match=_glob_escape(prefix) + "*", count=500))
        while batch:
            client.delete(*batch[:500])
            batch = batch[500:]
    finally:
        client.close()


def _glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted after the test."""
    require_redis()
    prefix = f"phoney-test-{uuid.uuid4().hex}:"
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def redis_url(redis_prefix: str) -> str:
    """The test server's URL with this test's prefix."""
    separator = "&" if "?" in server_url() else "?"
    return f"{server_url()}{separator}prefix={redis_prefix}"
