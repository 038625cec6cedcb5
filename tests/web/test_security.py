"""Security of the web app: denial of wallet, rate limits, encryption at rest, headers.

Logs (masking and secrets) are in test_logs.py; hostile input in test_webhook_properties.py.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response
from flask.testing import FlaskClient

from engine.calls.limits import CALLER_REFUSED, LIMIT_GOODBYE, mask_number, parse_rate
from engine.settings import Settings
from engine.simulator import SimulatedCall, Transport
from engine.store import EncryptedStore
from engine.web.roles import declare
from engine.web.security import LOGIN_WAIT, limiter_storage, pusher_hosts, security_headers
from tests.store.conftest import delete_prefix, require_redis, server_url
from tests.support import AUTH_TOKEN, client_transport

CALLER = "+15557654321"
LOCAL = "http://localhost"


def events(app: Flask, call_sid: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    store = app.extensions["phoney"].store
    return [(event.name, dict(event.data)) for event in store.events_after(0, call_sid)]


def dial(app: Flask, caller: str = CALLER, **options: Any) -> SimulatedCall:
    return SimulatedCall(client_transport(app.test_client()), LOCAL, AUTH_TOKEN,
                         from_=caller, **options).start()


# -- denial of wallet: calls per caller ---------------------------------------------------------

def test_a_caller_over_the_call_limit_is_refused_politely(make_app: Callable[..., Flask]
                                                          ) -> None:
    app = make_app(CALLER_CALL_LIMIT="2/hour")
    first, second = dial(app), dial(app)
    assert not first.ended and not second.ended  # both answered by the flow

    third = dial(app)
    assert third.ended
    assert third.last_heard() == CALLER_REFUSED
    answer = third.exchanges[-1].answer
    assert answer.status == 200 and "<Hangup" in answer.body
    assert app.extensions["phoney"].store.get_state(third.call_sid) is None  # nothing started
    refused = [data for name, data in events(app, third.call_sid) if name == "call.error"]
    assert refused and refused[0]["kind"] == "rate_limit_caller"
    assert refused[0]["caller"] == CALLER and refused[0]["limit"] == 2

    assert not dial(app, caller="+15550009999").ended  # another caller is not affected


def test_the_caller_limit_holds_across_server_processes(make_app: Callable[..., Flask]) -> None:
    one, two = make_app(CALLER_CALL_LIMIT="3 per hour"), make_app(CALLER_CALL_LIMIT="3/hour")
    assert not dial(one).ended and not dial(two).ended and not dial(one).ended
    assert dial(two).last_heard() == CALLER_REFUSED


def test_repeated_webhooks_of_one_call_count_once(make_app: Callable[..., Flask]) -> None:
    app = make_app(CALLER_CALL_LIMIT="1/hour")
    call = dial(app)
    again = call.post("/api/incoming-call")  # Twilio retrying the same call's first webhook
    assert again.status == 200 and CALLER_REFUSED not in again.body
    assert dial(app).last_heard() == CALLER_REFUSED


def test_the_caller_limit_can_be_turned_off(make_app: Callable[..., Flask]) -> None:
    app = make_app(CALLER_CALL_LIMIT="off")
    assert not any(dial(app).ended for _ in range(25))


def test_rate_settings_are_checked_at_start(make_app: Callable[..., Flask]) -> None:
    assert parse_rate("20/hour", "X") == (20, 3600.0)
    assert parse_rate(" off ", "X") is None
    with pytest.raises(ValueError, match="CALLER_CALL_LIMIT"):
        make_app(CALLER_CALL_LIMIT="lots")
    with pytest.raises(ValueError, match="MAX_CALL_TURNS"):
        make_app(MAX_CALL_TURNS="many")


# -- denial of wallet: per-call ceilings ---------------------------------------------------------

def test_a_call_past_the_server_turn_ceiling_is_told_goodbye(make_app: Callable[..., Flask]
                                                            ) -> None:
    app = make_app(MAX_CALL_TURNS="3")  # receptionist.yaml allows 30: the server's 3 win
    call = dial(app)
    for _ in range(3):
        call.say("What are your opening hours?")
    assert not call.ended
    call.say("And where are you?")
    assert call.ended and call.last_heard() == LIMIT_GOODBYE
    limit = [data for name, data in events(app, call.call_sid)
             if name == "call.node" and data.get("edge") == "limit"]
    assert limit == [{"node": "assist", "source": "assist", "edge": "limit",
                      "reason": "max_turns", "limit": 3, "by": "server"}]
    state = app.extensions["phoney"].store.get_state(call.call_sid)
    assert state is not None and state.ended and state.pending is None


def test_a_flows_own_lower_limit_still_takes_its_edge(make_app: Callable[..., Flask]) -> None:
    app = make_app(MAX_CALL_TURNS="50")  # receptionist.yaml: max_turns 30, then goodbye
    call = dial(app)
    for _ in range(31):
        if call.ended:
            break
        call.say("What are your opening hours?")
    assert call.ended
    assert LIMIT_GOODBYE not in call.transcript()
    limit = [data for name, data in events(app, call.call_sid)
             if name == "call.node" and data.get("edge") == "limit"]
    assert len(limit) == 1 and limit[0].get("by") is None and limit[0]["reason"] == "max_turns"


def test_a_call_past_the_server_time_ceiling_is_told_goodbye(make_app: Callable[..., Flask],
                                                            clock: Any) -> None:
    app = make_app(MAX_CALL_SECONDS="60")  # the flow allows 900 s
    call = dial(app)
    call.say("What are your opening hours?")
    clock.advance(61)
    call.say("And where are you?")
    assert call.ended and call.last_heard() == LIMIT_GOODBYE
    assert any(name == "call.node" and data.get("reason") == "max_seconds"
               for name, data in events(app, call.call_sid))


def test_default_ceilings_are_in_force() -> None:
    settings = Settings.load({"PROJECT_ROOT": "/tmp"}, environ={})
    assert (settings.max_call_turns, settings.max_call_seconds) == (100, 3600)
    assert parse_rate(settings.caller_call_limit, "CALLER_CALL_LIMIT") is not None


# -- rate limits on login and call control -------------------------------------------------------

def login(client: FlaskClient, password: str) -> Any:
    return client.post("/login", data={"password": password, "next": "/calls"})


def test_failed_logins_are_limited_per_address(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOGIN_RATE_LIMIT="5/minute").test_client()
    assert [login(client, "wrong").status_code for _ in range(5)] == [401] * 5

    held = login(client, "test-password")  # even the right password waits now
    assert held.status_code == 429
    assert "Retry-After" in held.headers
    page = held.get_data(as_text=True)
    assert LOGIN_WAIT in page and 'name="password"' in page and 'value="/calls"' in page
    assert held.mimetype == "text/html"

    # Another server process on the same store shares the count (it is the store's).
    other = make_app(LOGIN_RATE_LIMIT="5/minute").test_client()
    assert login(other, "test-password").status_code == 429


def test_successful_logins_do_not_count(make_app: Callable[..., Flask]) -> None:
    client = make_app(LOGIN_RATE_LIMIT="2/minute").test_client()
    assert all(login(client, "test-password").status_code == 302 for _ in range(6))
    assert client.get("/login").status_code == 200  # the page itself is never limited


def test_call_control_is_limited_with_a_json_429(make_app: Callable[..., Flask]) -> None:
    client = make_app(API_RATE_LIMIT="3/minute").test_client()
    assert login(client, "test-password").status_code == 302
    csrf = client.get("/api/session").get_json()["csrf_token"]
    statuses = [client.post("/api/end-call", data={"CallSid": "CA" + "0" * 32},
                            headers={"X-CSRF-Token": csrf}).status_code for _ in range(3)]
    assert 429 not in statuses
    over = client.post("/api/transfer-call", data={"CallSid": "CA" + "0" * 32, "To": "+1"},
                       headers={"X-CSRF-Token": csrf})
    assert over.status_code == 429
    assert over.mimetype == "application/json"
    assert over.get_json()["error"] == "too many requests"
    assert "Retry-After" in over.headers
    assert client.get("/api/calls").status_code == 200  # reading is not call control


@pytest.fixture
def redis_store_url() -> Iterator[str]:
    require_redis()
    prefix = f"phoney-test-{uuid.uuid4().hex}:"
    separator = "&" if "?" in server_url() else "?"
    yield f"{server_url()}{separator}prefix={prefix}"
    delete_prefix(prefix)


def test_with_redis_the_login_limit_is_shared_by_every_process(
        make_app: Callable[..., Flask], redis_store_url: str) -> None:
    one = make_app(STORE_URL=redis_store_url, LOGIN_RATE_LIMIT="4/minute").test_client()
    two = make_app(STORE_URL=redis_store_url, LOGIN_RATE_LIMIT="4/minute").test_client()
    assert [login(c, "wrong").status_code for c in (one, two, one, two)] == [401] * 4
    assert login(one, "wrong").status_code == 429
    assert login(two, "test-password").status_code == 429


def test_limiter_storage_follows_the_store() -> None:
    assert limiter_storage("sqlite:///x.db") == ("memory://", {})
    uri, options = limiter_storage("redis://:pw@host:6380/2?prefix=app1:&ended_ttl=5&ssl=1")
    assert uri == "redis://:pw@host:6380/2?ssl=1"
    assert options["key_prefix"] == "app1:limits"
    assert limiter_storage("unix:///run/redis.sock?db=1")[0] == "redis+unix:///run/redis.sock?db=1"
    assert limiter_storage("REDISS://h:1/0")[1]["key_prefix"] == "phoney:limits"


# -- encryption at rest, through the app ---------------------------------------------------------

def test_with_an_encryption_key_calls_are_stored_encrypted(make_app: Callable[..., Flask],
                                                           tmp_path: Path) -> None:
    db = tmp_path / "encrypted.db"
    app = make_app(STORE_URL=f"sqlite:///{db}", ENCRYPTION_KEY="a long passphrase for tests")
    assert isinstance(app.extensions["phoney"].store, EncryptedStore)
    said = "my membership number is purple giraffe seven"
    call = dial(app)
    call.say(said)

    raw = sqlite3.connect(db)
    try:
        dump = "\n".join(repr(row) for table in ("calls", "events", "responses", "blobs")
                         for row in raw.execute(f"SELECT * FROM {table}"))
    finally:
        raw.close()
    assert call.call_sid in dump
    assert "purple giraffe" not in dump and "5557654321" not in dump

    client = app.test_client()
    assert login(client, "test-password").status_code == 302
    shown = client.get(f"/api/calls/{call.call_sid}").get_data(as_text=True)
    assert "purple giraffe" in shown and CALLER in shown


# -- headers -------------------------------------------------------------------------------------

def test_pages_and_apis_carry_security_headers(client: FlaskClient) -> None:
    for answer in (client.get("/login"), client.get("/api/calls"), client.get("/")):
        headers = answer.headers
        csp = headers["Content-Security-Policy"]
        for directive in ("default-src 'self'", "connect-src 'self'", "img-src 'self' data:",
                          "style-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
            assert directive in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["X-Frame-Options"] == "DENY"
        assert "Strict-Transport-Security" not in headers  # PUBLIC_BASE_URL is not https


def test_hsts_when_the_public_url_is_https(make_app: Callable[..., Flask]) -> None:
    answer = make_app(PUBLIC_BASE_URL="https://phoney.example.com").test_client().get("/login")
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")


def test_pusher_hosts_are_allowed_only_when_pusher_is_configured(
        make_app: Callable[..., Flask]) -> None:
    pusher = {"PUSHER_APP_ID": "1", "PUSHER_KEY": "key", "PUSHER_SECRET": "pusher-secret-x",
              "PUSHER_CLUSTER": "eu", "PUBLISHER": False}
    csp = make_app(**pusher).test_client().get("/login").headers["Content-Security-Policy"]
    assert "connect-src 'self' wss://ws-eu.pusher.com https://sockjs-eu.pusher.com;" in csp

    settings = Settings.load({"PROJECT_ROOT": "/tmp", **{k: str(v) for k, v in pusher.items()},
                              "PUSHER_HOST": "http://127.0.0.1:8765"}, environ={})
    assert pusher_hosts(settings) == ["ws://127.0.0.1:8765", "http://127.0.0.1:8765"]
    plain = Settings.load({"PROJECT_ROOT": "/tmp", "PUSHER_CLUSTER": "eu"}, environ={})
    assert "pusher" not in security_headers(plain)["Content-Security-Policy"]


def test_the_dashboard_page_needs_nothing_the_policy_forbids(client: FlaskClient) -> None:
    assert login(client, "test-password").status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "<style" not in page and " style=" not in page
    assert "<script>" not in page  # scripts come from files ('self'); data blocks are JSON


def test_masked_numbers_keep_the_ends() -> None:
    assert mask_number("+15557654321") == "+1555***4321"
    assert mask_number("+1234") == "***"


def test_webhooks_still_answer_twiml_under_the_headers(inprocess_transport: Transport) -> None:
    call = SimulatedCall(inprocess_transport, LOCAL, AUTH_TOKEN).start()
    assert call.exchanges[-1].answer.content_type.startswith("text/xml")


def test_a_response_keeps_a_security_header_it_set_itself(
        make_app: Callable[..., Flask]) -> None:
    app = make_app()

    def framed() -> Response:
        answer = Response("ok")
        answer.headers["x-frame-options"] = "SAMEORIGIN"  # any case: header names are not
        return answer

    app.add_url_rule("/framed-for-test", "framed_for_test", framed)
    declare(app, "framed_for_test", None)  # public: roles.py refuses undeclared routes
    headers = app.test_client().get("/framed-for-test").headers
    assert headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert headers["X-Content-Type-Options"] == "nosniff"  # the others still added
