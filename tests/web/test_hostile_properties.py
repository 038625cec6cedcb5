"""Property: hostile requests at every route get an answer, never a 500 or a traceback.

test_webhook_properties.py sends Twilio's own parameter names with any text. This file goes
further on the same routes: any parameter names, huge values, hostile query strings (`flow`,
`step`) and idempotency headers, CallSids of the right shape that no call has, and raw bodies of
random bytes (signed over what the server will parse, so they get past the signature). Then the
dashboard and its APIs, logged in and not, with any path segment, query and form.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from engine.simulator import SimulatedCall
from engine.web.webhook_form import MAX_WEBHOOK_BYTES, MAX_WEBHOOK_FIELDS
from tests.support import AUTH_TOKEN, client_transport
from tests.web.test_bad_input import LOCAL, ROUTES, post, sign

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
NAMES = st.one_of(st.sampled_from(["CallSid", "From", "To", "SpeechResult", "Digits",
                                   "Confidence", "CallStatus", "DialCallStatus",
                                   "RecordingDuration", "CallDuration", "AccountSid"]),
                  TEXT.filter(bool))
HUGE = st.integers(0, 120_000).map(lambda n: "9" * n)
VALUES = st.one_of(TEXT, HUGE, st.sampled_from(
    ["nan", "inf", "-1", "1e400", "0x10", "²", "<Say>x</Say>", "]]>", "&amp;", "\x00",
     "{{ 7*7 }}", "{% raw %}", "' OR 1=1 --", "../../etc/passwd", "%00", "\u202e"]))
FORMS = st.dictionaries(NAMES, VALUES, max_size=12)
QUERIES = st.dictionaries(st.sampled_from(["flow", "step", "x", ""]),
                          st.one_of(TEXT, HUGE.map(lambda s: s[:5000])), max_size=3)
# Any header value HTTP can carry (a line break would end the header).
HEADER = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
                 max_size=200)
SIDS = st.one_of(st.just("known"), st.text("0123456789abcdef", min_size=32, max_size=32)
                 .map(lambda tail: "CA" + tail), TEXT)
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_twiml(answer: TestResponse) -> None:
    assert answer.status_code == 200, answer.status_code
    assert answer.mimetype == "text/xml"
    body = answer.get_data(as_text=True)
    assert "Traceback" not in body
    assert len(body.encode()) <= 64_000
    assert ElementTree.fromstring(body).tag == "Response"


@pytest.fixture
def known_call(app: Flask) -> SimulatedCall:
    return SimulatedCall(client_transport(app.test_client()), LOCAL, AUTH_TOKEN).start()


@PROPERTY
@given(route=st.sampled_from(ROUTES), form=FORMS, query=QUERIES, sid=SIDS,
       token=st.one_of(st.none(), HEADER, HUGE.map(lambda s: s[:10_000])))
def test_any_parameters_at_any_twilio_route(client: FlaskClient, known_call: SimulatedCall,
                                            route: str, form: dict[str, str],
                                            query: dict[str, str], sid: str,
                                            token: str | None) -> None:
    params = {**form, "CallSid": known_call.call_sid if sid == "known" else sid}
    path = route + ("?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}"
                                   for k, v in query.items()) if query else "")
    headers = {"I-Twilio-Idempotency-Token": token} if token is not None else None
    answer = post(client, path, params, headers=headers)
    if len(urlencode(params)) > MAX_WEBHOOK_BYTES:  # no webhook is that large: refused unread
        assert answer.status_code == 413, answer.status_code
        assert "Traceback" not in answer.get_data(as_text=True)
        return
    assert_twiml(answer)


@PROPERTY
@given(route=st.sampled_from(ROUTES), fields=st.integers(MAX_WEBHOOK_FIELDS - 5,
                                                         MAX_WEBHOOK_FIELDS * 20),
       value=st.sampled_from(["", "1", "y" * 50]), signed=st.booleans())
def test_over_many_fields_are_refused_before_the_signature(
        client: FlaskClient, known_call: SimulatedCall, route: str, fields: int, value: str,
        signed: bool) -> None:
    params = {"CallSid": known_call.call_sid, **{f"X{i}": value for i in range(fields)}}
    body = urlencode(params)
    headers = {"X-Twilio-Signature": sign(LOCAL + route, params) if signed else "forged"}
    answer = client.post(route, data=body, content_type="application/x-www-form-urlencoded",
                         headers=headers, base_url=LOCAL)
    if len(params) > MAX_WEBHOOK_FIELDS or len(body) > MAX_WEBHOOK_BYTES:
        assert answer.status_code == 413, (len(params), len(body), answer.status_code)
    elif signed:
        assert_twiml(answer)
    else:
        assert answer.status_code == 403


@PROPERTY
@given(route=st.sampled_from(ROUTES), proto=st.sampled_from(["https", "http", "https, http"]),
       host=st.sampled_from(["other.example", "localhost", "other.example, localhost",
                             "localhost:80", "evil.example:443"]),
       header=st.sampled_from(["X-Forwarded-Host", "Forwarded", "X-Original-Host"]))
def test_forwarded_headers_never_move_the_signed_url(
        client: FlaskClient, known_call: SimulatedCall, route: str, proto: str, host: str,
        header: str) -> None:
    """Without TRUSTED_PROXIES, a request signed for the host a forwarded header names is
    refused; only one signed over the URL requested is accepted, whatever the headers say."""
    params = {**known_call.params, "CallSid": known_call.call_sid}
    first = host.split(",")[0].strip()
    headers = {"X-Forwarded-Proto": proto, header: host if header != "Forwarded"
               else f"host={first};proto={proto.split(',')[0]}"}
    if f"{proto.split(',')[0]}://{first}" not in (LOCAL, "http://localhost:80"):
        forged = post(client, route, params, headers=headers,
                      signed_url=f"{proto.split(',')[0].strip()}://{first}{route}")
        assert forged.status_code == 403
    assert_twiml(post(client, route, params, headers=headers))


@PROPERTY
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=600),
       prefix=st.sampled_from([b"", b"CallSid=CA" + b"0" * 32 + b"&", b"SpeechResult=%FF%FE&"]))
def test_raw_bodies_of_random_bytes(client: FlaskClient, route: str, body: bytes,
                                    prefix: bytes) -> None:
    raw = prefix + body
    # Sign what the server will read: the form as werkzeug parses it (invalid UTF-8 replaced).
    params = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                            errors="replace"))
    answer = client.post(route, data=raw, content_type="application/x-www-form-urlencoded",
                         headers={"X-Twilio-Signature": sign(LOCAL + route, params)},
                         base_url=LOCAL)
    assert answer.status_code in (200, 403), answer.status_code
    if answer.status_code == 200:
        assert_twiml(answer)


# -- the dashboard and its APIs ----------------------------------------------------------------

SEGMENTS = st.one_of(TEXT.filter(lambda s: s.strip("/.") != ""),
                     st.sampled_from(["CA" + "0" * 32, "..", "%2e%2e", "receptionist",
                                      "<script>", "a" * 3000]))
PAGES = ["/api/calls/{}", "/calls/{}", "/api/flows/{}/graph", "/audio/{}.mp3",
         "/api/calls/{}/transfer-targets", "/api/calls?limit={}", "/api/events?after={}",
         "/api/events?call={}", "/api/flows/receptionist/graph?format={}&version={}",
         "/login?next={}", "/api/live?{}"]


@pytest.fixture
def dashboard(make_app: Callable[..., Flask]) -> Flask:
    return make_app(SSE_LIFETIME=0.05, SSE_POLL=0.01, LOGIN_RATE_LIMIT="off",
                    API_RATE_LIMIT="off", PUBLISHER=False)


def assert_no_failure(answer: TestResponse, what: str) -> None:
    # 500 is what an exception escaping a view gives; 502/503 are the control routes' own
    # answers when Twilio cannot be reached or is not configured.
    assert answer.status_code != 500, what
    assert answer.status_code < 500 or what in ("/api/transfer-call", "/api/end-call"), \
        (what, answer.status_code)
    body = answer.get_data(as_text=True)
    assert "Traceback" not in body and 'File "/' not in body, what


@PROPERTY
@given(page=st.sampled_from(PAGES), segment=SEGMENTS, logged_in=st.booleans())
def test_any_dashboard_path_or_query(dashboard: Flask, page: str, segment: str,
                                     logged_in: bool) -> None:
    client = dashboard.test_client()
    if logged_in:
        client.post("/login", data={"password": "test-password"})
    url = page.format(*[quote(segment, safe="")] * page.count("{}"))
    assert_no_failure(client.get(url), url)


@PROPERTY
@given(path=st.sampled_from(["/login", "/logout", "/api/transfer-call", "/api/end-call",
                             "/pusher/auth"]),
       form=st.dictionaries(st.sampled_from(["password", "next", "CallSid", "To", "target",
                                             "socket_id", "channel_name", "csrf_token"])
                            | TEXT, VALUES, max_size=6),
       as_json=st.booleans(), logged_in=st.booleans())
def test_any_form_at_the_dashboards_posts(dashboard: Flask, path: str, form: dict[str, str],
                                          as_json: bool, logged_in: bool) -> None:
    client = dashboard.test_client()
    headers = {}
    if logged_in:
        client.post("/login", data={"password": "test-password"})
        headers["X-CSRF-Token"] = client.get("/api/session").get_json()["csrf_token"]
    answer = (client.post(path, json=form, headers=headers) if as_json
              else client.post(path, data=form, headers=headers))
    assert_no_failure(answer, path)
