"""Fixtures for the end-to-end suite: a Redis prefix of the test's own, and gunicorn servers.

These tests need a Redis server (TEST_REDIS_URL, default redis://127.0.0.1:6379/0): without one
they are skipped with the reason, and under REQUIRE_REDIS=1 (set by .ci/run) they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from engine.store.redis_store import RedisStore
from tests.e2e.harness import (
    ROOT,
    Gunicorn,
    delete_prefix,
    new_prefix,
    redis_unreachable,
    store_url,
)
from tests.support import AUTH_TOKEN

PASSWORD = "e2e-password"

StartServers = Callable[..., list[Gunicorn]]


def require_redis() -> None:
    reason = redis_unreachable()
    if reason is None:
        return
    if os.environ.get("REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason}; REQUIRE_REDIS=1, so the end-to-end tests must run",
                    pytrace=False)
    pytest.skip(f"{reason}; start redis-server or set TEST_REDIS_URL "
                f"(REQUIRE_REDIS=1 makes this a failure)")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix no other test uses; its keys are deleted (SCAN + DEL) afterwards."""
    require_redis()
    prefix = new_prefix("e2e")
    yield prefix
    delete_prefix(prefix)


@pytest.fixture
def store(redis_prefix: str) -> Iterator[RedisStore]:
    """The servers' store, read directly: the Redis store on `redis_prefix`."""
    opened = RedisStore(store_url(redis_prefix))
    yield opened
    opened.close()


def server_env(url: str, **extra: str) -> dict[str, str]:
    """What every test server gets: the store at `url`, the bundled flows (unless `extra` names
    a PROJECT_ROOT), the test token and password."""
    return {"STORE_URL": url, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "DASHBOARD_PASSWORD": PASSWORD, "PROJECT_ROOT": str(ROOT), **extra}


def login(server: Gunicorn) -> requests.Session:
    """A dashboard session signed in on `server` (any server: they share the session key)."""
    session = requests.Session()
    answer = session.post(server.url + "/login", data={"password": PASSWORD},
                          allow_redirects=False, timeout=10)
    assert answer.status_code in (302, 303), answer.text[:300]
    return session


@pytest.fixture
def start_servers(tmp_path: Path) -> Iterator[StartServers]:
    """`start_servers(count, env, workers=1)`: that many gunicorn servers (`env` for all, or a
    list of one env each), started together and ready; all stopped at the end of the test
    (their logs are printed, which pytest shows on failure)."""
    started: list[Gunicorn] = []

    def start(count: int, env: dict[str, str] | list[dict[str, str]],
              workers: int = 1) -> list[Gunicorn]:
        envs = env if isinstance(env, list) else [env] * count
        assert len(envs) == count
        servers = [Gunicorn(each, tmp_path / f"gunicorn-{len(started) + i}.log",
                            workers=workers) for i, each in enumerate(envs)]
        for server in servers:
            started.append(server.start())
        for server in servers:
            server.wait_ready()
        return servers

    yield start
    for server in started:
        server.stop()
    for server in started:
        print(f"--- {server.url} (pid {server.process.pid if server.process else '-'}) ---")
        print(server.log_tail(80))
