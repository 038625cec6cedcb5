"""TRUSTED_PROXIES: the client's address behind proxies, from X-Forwarded-For, and only then."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask, request

from engine.simulator import SimulatedCall
from engine.web.proxy import trusted_proxies
from engine.web.roles import declare
from tests.support import AUTH_TOKEN, client_transport

PROXY = "10.0.0.5"  # the proxy's own address, as the server sees the connection


def whoami(app: Flask) -> Callable[..., str]:
    """The address the app takes for the client of a request with these headers."""
    app.add_url_rule("/_test/whoami", "whoami", lambda: request.remote_addr or "")
    declare(app, "whoami", None)  # public: roles.py refuses undeclared routes
    client = app.test_client()

    def ask(forwarded_for: str | None = None) -> str:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
        answer = client.get("/_test/whoami", headers=headers,
                            environ_base={"REMOTE_ADDR": PROXY})
        return answer.get_data(as_text=True)

    return ask


def test_without_the_setting_no_header_is_trusted(make_app: Callable[..., Flask]) -> None:
    ask = whoami(make_app())
    assert ask() == PROXY
    assert ask("198.51.100.7") == PROXY  # anyone can send the header


def test_one_trusted_proxy_gives_the_address_it_saw(make_app: Callable[..., Flask]) -> None:
    ask = whoami(make_app(TRUSTED_PROXIES="1"))
    assert ask("198.51.100.7") == "198.51.100.7"
    # What the client itself put in the header comes first; the proxy appends what it saw.
    assert ask("6.6.6.6, 198.51.100.7") == "198.51.100.7"
    assert ask() == PROXY  # no header: the connection's address


def test_two_trusted_proxies(make_app: Callable[..., Flask]) -> None:
    ask = whoami(make_app(TRUSTED_PROXIES="2"))
    assert ask("6.6.6.6, 198.51.100.7, 10.0.0.9") == "198.51.100.7"


@pytest.mark.parametrize("value", ["-1", "one", "1.5", "99", "١"])
def test_a_bad_value_is_refused_with_what_is_expected(value: str) -> None:
    with pytest.raises(ValueError, match="how many proxies"):
        trusted_proxies(value)


@pytest.mark.parametrize(("value", "count"), [("", 0), (None, 0), ("0", 0), (" 2 ", 2), (1, 1)])
def test_good_values(value: str | int | None, count: int) -> None:
    assert trusted_proxies(value) == count


def test_signed_webhooks_still_pass_behind_the_proxies(make_app: Callable[..., Flask]) -> None:
    app = make_app(TRUSTED_PROXIES="1")
    transport = client_transport(app.test_client())

    def through_proxy(url: str, params: dict[str, str], headers: dict[str, str]):  # type: ignore[no-untyped-def]
        # Twilio called https://phoney.example.com; the proxy passes it on with its headers.
        public = url.replace("https://phoney.example.com", "http://10.0.0.2:8000")
        return transport(public, params, {**headers, "X-Forwarded-Proto": "https",
                                          "X-Forwarded-Host": "phoney.example.com",
                                          "X-Forwarded-For": "54.172.60.1"})

    c = SimulatedCall(through_proxy, "https://phoney.example.com", AUTH_TOKEN,
                      to="+15550001000").start()
    c.press("0")
    assert c.waiting.kind == "dial"
    assert all(exchange.answer.status == 200 for exchange in c.exchanges)


def test_failed_logins_are_counted_per_client_behind_the_proxy(
        make_app: Callable[..., Flask]) -> None:
    app = make_app(TRUSTED_PROXIES="1", LOGIN_RATE_LIMIT="3/minute")
    if "phoney.limiter" not in app.extensions:
        pytest.skip("this build has no login rate limit")
    client = app.test_client()

    def login(address: str, password: str) -> int:
        return client.post("/login", data={"password": password},
                           headers={"X-Forwarded-For": address},
                           environ_base={"REMOTE_ADDR": PROXY}).status_code

    statuses = [login("198.51.100.7", "wrong") for _ in range(5)]
    assert 429 in statuses  # the guesser is limited ...
    assert login("203.0.113.9", "test-password") in (302, 303)  # ... the owner is not
