"""Twilio's webhooks open no session and run none of Flask-Limiter's hooks; every other route
keeps both, and the login and call-control limits still hold."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask, request, session
from flask.sessions import SecureCookieSession
from flask.testing import FlaskClient
from flask_limiter import Limiter
from twilio.request_validator import RequestValidator

from engine.web.auth import TWILIO_BLUEPRINTS, CookieSessions
from engine.web.security import EXTENSION
from engine.web.voice import ROUTES
from tests.support import AUTH_TOKEN

SID = "CA" + "1" * 32


def webhook(client: FlaskClient, path: str, **params: str) -> Any:
    form = {"CallSid": SID, "From": "+15550002222", "To": "+15550001000",
            "CallStatus": "ringing", **params}
    signature = RequestValidator(AUTH_TOKEN).compute_signature("http://localhost" + path, form)
    return client.post(path, data=urlencode(form), headers={
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded"})


def count_limit_checks(app: Flask) -> list[str]:
    """The paths Flask-Limiter looked at from now on (its check starts by naming the route)."""
    limiter: Limiter = app.extensions[EXTENSION]
    seen: list[str] = []
    identify = limiter.identify_request

    def counting() -> str:
        seen.append(request.path)
        return identify()

    limiter.identify_request = counting  # type: ignore[method-assign]
    return seen


def test_the_voice_webhooks_are_answered_ahead_of_flask(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """No request context, no hooks, no session: Flask never sees a voice webhook."""
    dispatched: list[str] = []
    dispatch = app.full_dispatch_request

    def counting() -> Any:
        dispatched.append(request.path)
        return dispatch()

    monkeypatch.setattr(app, "full_dispatch_request", counting)
    assert webhook(client, "/api/incoming-call").status_code == 200
    assert webhook(client, "/api/call-status", CallStatus="completed").status_code == 200
    assert dispatched == []
    assert client.get("/login").status_code == 200
    assert dispatched == ["/login"]
    voice_paths = set(ROUTES)
    assert not voice_paths & {rule.rule for rule in app.url_map.iter_rules()}


def test_the_relay_socket_gets_the_null_session_and_a_page_a_real_one(app: Flask) -> None:
    interface = app.session_interface
    assert isinstance(interface, CookieSessions)
    assert interface.twilio_paths(app) == {rule.rule for rule in app.url_map.iter_rules()
                                           if rule.endpoint.partition(".")[0]
                                           in TWILIO_BLUEPRINTS}
    with app.test_request_context("/api/relay/socket", method="GET"):
        assert interface.open_session(app, request) is None
        assert interface.is_null_session(session)
        assert session.get("user") is None  # reading works, and finds nothing
    with app.test_request_context("/login"):
        assert isinstance(interface.open_session(app, request), SecureCookieSession)


def test_a_webhook_with_a_session_cookie_neither_reads_nor_sets_it(
        client: FlaskClient) -> None:
    signed_in = client.post("/login", data={"password": "test-password"})
    assert signed_in.status_code == 302
    answer = webhook(client, "/api/incoming-call")
    assert answer.status_code == 200 and "<Response>" in answer.text
    assert "Set-Cookie" not in answer.headers
    assert "Cookie" not in answer.headers.get("Vary", "")
    # The session is untouched by it: the dashboard still knows the user.
    assert client.get("/api/session").status_code == 200


def test_webhooks_skip_the_limiter_and_other_routes_do_not(app: Flask,
                                                          client: FlaskClient) -> None:
    seen = count_limit_checks(app)
    assert webhook(client, "/api/incoming-call").status_code == 200
    assert webhook(client, "/api/voice/silence?step=1").status_code == 200
    assert webhook(client, "/api/call-status", CallStatus="completed").status_code == 200
    assert seen == []
    assert "X-RateLimit-Limit" not in webhook(client, "/api/incoming-call").headers

    client.post("/login", data={"password": "wrong"})
    client.get("/api/calls")
    assert set(seen) == {"/login", "/api/calls"}


def test_an_unsigned_webhook_is_still_refused(client: FlaskClient) -> None:
    assert client.post("/api/incoming-call", data={"CallSid": SID}).status_code == 403


def test_the_login_limit_still_holds(make_app: Any) -> None:
    app = make_app(LOGIN_RATE_LIMIT="2/minute")
    client = app.test_client()
    codes = [client.post("/login", data={"password": "wrong"}).status_code for _ in range(3)]
    assert codes == [401, 401, 429]
    assert client.post("/login", data={"password": "wrong"}).headers.get("Retry-After")
    # Webhooks are not held up by it, nor counted in it.
    for _ in range(3):
        assert webhook(client, "/api/incoming-call").status_code == 200
