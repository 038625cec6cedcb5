"""Dashboard sessions: a Secure cookie on https requests, a lifetime of SESSION_HOURS from the
sign-in, and server-side ends: a sign-out ends that session in every process (a copy of its
cookie is refused), a password change ends them all. Twilio's webhooks still open none."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.web.auth import ENDED_BLOB
from tests.web.test_twilio_routes_skip_sessions_and_limits import webhook

COOKIE = "phoney_session"


def sign_in(client: FlaskClient, password: str = "test-password", **options: Any) -> Any:
    answer = client.post("/login", data={"password": password}, **options)
    assert answer.status_code == 302, answer.status_code
    return answer


def session_cookie(answer: Any) -> str:
    found = [value for value in answer.headers.getlist("Set-Cookie")
             if value.startswith(f"{COOKIE}=")]
    assert len(found) == 1, answer.headers.getlist("Set-Cookie")
    return str(found[0])


def copy_of(client: FlaskClient, app: Flask) -> FlaskClient:
    """Another browser (another server process's client) holding `client`'s cookie."""
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    other = app.test_client()
    other.set_cookie(COOKIE, cookie.value)
    return other


def signed_in(client: FlaskClient) -> bool:
    status = client.get("/api/session").status_code
    assert status in (200, 401)
    return status == 200


def test_the_cookie_is_secure_on_an_https_request(app: Flask) -> None:
    secure = sign_in(app.test_client(), base_url="https://localhost")
    assert "; Secure" in session_cookie(secure)
    plain = sign_in(app.test_client())  # http, and PUBLIC_BASE_URL is not https
    assert "; Secure" not in session_cookie(plain)


def test_the_cookie_is_secure_on_every_request_when_the_public_url_is_https(
        make_app: Callable[..., Flask]) -> None:
    app = make_app(PUBLIC_BASE_URL="https://phoney.example.com")
    assert "; Secure" in session_cookie(sign_in(app.test_client()))


def test_a_session_lasts_session_hours_from_its_sign_in(make_app: Callable[..., Flask]) -> None:
    client = make_app(SESSION_HOURS="2").test_client()
    before = time.time()
    cookie = session_cookie(sign_in(client))
    expires = parsedate_to_datetime(cookie.split("Expires=")[1].split(";")[0]).timestamp()
    assert before + 2 * 3600 - 5 <= expires <= time.time() + 2 * 3600 + 5
    assert signed_in(client)

    with client.session_transaction() as state:  # the sign-in was 2 hours and a second ago
        state["at"] -= 2 * 3600 + 1
        state["exp"] -= 2 * 3600 + 1
    assert not signed_in(client)
    assert client.get("/").status_code == 302  # pages lead to the sign-in form again


def test_sessions_last_12_hours_by_default(app: Flask) -> None:
    cookie = session_cookie(sign_in(app.test_client()))
    expires = parsedate_to_datetime(cookie.split("Expires=")[1].split(";")[0]).timestamp()
    assert abs(expires - (time.time() + 12 * 3600)) < 60


def test_a_busy_session_still_ends_when_its_time_is_up(make_app: Callable[..., Flask]) -> None:
    client = make_app(SESSION_HOURS="1").test_client()
    sign_in(client)
    with client.session_transaction() as state:  # signed in 59 minutes ago, used ever since
        state["at"] -= 59 * 60
        state["exp"] -= 59 * 60
    assert signed_in(client)  # (each request sends the cookie again, with a fresh signature)
    with client.session_transaction() as state:
        state["at"] -= 61
        state["exp"] -= 61
    assert not signed_in(client)


def test_session_hours_are_checked_at_start(make_app: Callable[..., Flask]) -> None:
    for bad in ("0", "-3", "745", "12.5", "soon"):
        with pytest.raises(ValueError, match="SESSION_HOURS"):
            make_app(SESSION_HOURS=bad)


def test_a_sign_out_ends_that_session_in_every_process(make_app: Callable[..., Flask]) -> None:
    one, two = make_app(), make_app()  # two server processes on one store
    browser = one.test_client()
    sign_in(browser)
    stolen, stolen_too = copy_of(browser, two), copy_of(browser, one)
    assert signed_in(stolen) and signed_in(stolen_too)
    elsewhere = two.test_client()  # another sign-in, of its own
    sign_in(elsewhere)

    assert browser.post("/logout").status_code == 302
    assert not signed_in(browser)
    assert not signed_in(stolen)  # the copy of the cookie is refused, by the other process too
    assert not signed_in(stolen_too)
    assert signed_in(elsewhere)  # a sign-out ends its own session only


def test_a_refused_cookie_is_removed(app: Flask) -> None:
    browser = app.test_client()
    sign_in(browser)
    stolen = copy_of(browser, app)
    browser.post("/logout")
    answer = stolen.get("/api/session")
    assert answer.status_code == 401
    assert f"{COOKIE}=;" in session_cookie(answer)  # deleted


def test_a_password_change_ends_every_session(make_app: Callable[..., Flask]) -> None:
    before = make_app(DASHBOARD_PASSWORD="the-first-password")
    browser = before.test_client()
    sign_in(browser, "the-first-password")

    same = make_app(DASHBOARD_PASSWORD="the-first-password")  # a restart, nothing changed
    assert signed_in(copy_of(browser, same))
    changed = make_app(DASHBOARD_PASSWORD="the-second-password")
    assert not signed_in(copy_of(browser, changed))
    sign_in(changed.test_client(), "the-second-password")


def test_webhooks_still_open_no_session_and_read_no_sign_outs(app: Flask,
                                                             client: FlaskClient) -> None:
    sign_in(client)
    store = app.extensions["phoney"].store
    read: list[str] = []
    get_blob = store.get_blob

    def counting(key: str) -> Any:
        read.append(key)
        return get_blob(key)

    store.get_blob = counting
    try:
        answer = webhook(client, "/api/incoming-call")
        assert answer.status_code == 200 and "Set-Cookie" not in answer.headers
        assert ENDED_BLOB not in read
        assert signed_in(client)  # a page's request does check
        assert ENDED_BLOB in read
    finally:
        del store.get_blob


def test_with_the_store_unreachable_a_session_is_refused_but_its_cookie_kept(
        app: Flask, client: FlaskClient) -> None:
    sign_in(client)
    store = app.extensions["phoney"].store

    def unreachable(key: str) -> Any:
        raise ConnectionError("store down")

    store.get_blob = unreachable
    try:
        answer = client.get("/api/session")
        assert answer.status_code == 401
        assert not [value for value in answer.headers.getlist("Set-Cookie")
                    if value.startswith(f"{COOKIE}=")]  # not deleted: it is not known ended
    finally:
        del store.get_blob
    assert signed_in(client)  # the store is back, and so is the session


def test_sign_outs_are_kept_encrypted_with_an_encryption_key(
        make_app: Callable[..., Flask]) -> None:
    one = make_app(ENCRYPTION_KEY="a-long-random-passphrase-for-the-tests-1234")
    two = make_app(ENCRYPTION_KEY="a-long-random-passphrase-for-the-tests-1234")
    browser, other = one.test_client(), two.test_client()
    sign_in(browser)
    sign_in(other)
    stolen, stolen_too = copy_of(browser, two), copy_of(other, one)
    browser.post("/logout")
    other.post("/logout")  # a second sign-out rewrites the record (compare and set)
    assert not signed_in(stolen) and not signed_in(stolen_too)
    raw = one.extensions["phoney"].store.inner.get_blob(ENDED_BLOB)
    assert raw is not None and raw.startswith(b"enc:")
