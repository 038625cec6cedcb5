"""Sign-in attempts are counted per client address in the store before the password is
compared: concurrent wrong passwords get no more comparisons than LOGIN_RATE_LIMIT allows, and
every server process on the store shares the one count."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from engine.web.security import LOGIN_WAIT

ATTEMPTS = 40


def attempt(app: Flask, password: str = "wrong") -> int:
    return app.test_client().post("/login", data={"password": password}).status_code


def test_concurrent_wrong_passwords_are_compared_at_most_the_limit(
        make_app: Callable[..., Flask]) -> None:
    app = make_app(LOGIN_RATE_LIMIT="5/minute")
    compared: list[str] = []
    services = app.extensions["phoney"]
    password = services.dashboard_password

    class Counting(str):
        def encode(self, *args: object, **kwargs: object) -> bytes:  # what login compares
            compared.append("x")
            return password.encode()

    services.dashboard_password = Counting(password)
    together = threading.Barrier(ATTEMPTS, timeout=120)  # (a condition, not a sleep)

    def one() -> int:
        together.wait()
        return attempt(app)

    with ThreadPoolExecutor(ATTEMPTS) as pool:
        statuses = list(pool.map(lambda _: one(), range(ATTEMPTS)))

    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == ATTEMPTS - 5, statuses
    assert len(compared) == 5
    assert attempt(app, "test-password") == 429  # the right one waits too, uncompared
    assert len(compared) == 5


def test_server_processes_on_one_store_share_the_count(make_app: Callable[..., Flask]) -> None:
    one, two = make_app(LOGIN_RATE_LIMIT="4/minute"), make_app(LOGIN_RATE_LIMIT="4/minute")
    assert [attempt(app) for app in (one, two, one, two)] == [401] * 4
    refused = one.test_client().post("/login", data={"password": "wrong", "next": "/calls"})
    assert refused.status_code == 429
    assert LOGIN_WAIT in refused.text and 'value="/calls"' in refused.text
    assert int(refused.headers["Retry-After"]) == 60
    assert attempt(two, "test-password") == 429


def test_a_right_password_starts_the_count_over(make_app: Callable[..., Flask]) -> None:
    app = make_app(LOGIN_RATE_LIMIT="3/minute")
    assert [attempt(app) for _ in range(2)] == [401, 401]
    assert attempt(app, "test-password") == 302
    assert [attempt(app) for _ in range(4)] == [401, 401, 401, 429]


def test_the_login_limit_can_be_turned_off(make_app: Callable[..., Flask]) -> None:
    app = make_app(LOGIN_RATE_LIMIT="off")
    assert all(attempt(app) == 401 for _ in range(12))
