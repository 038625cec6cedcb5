"""Hostile and broken webhooks: bad signatures are refused, everything signed gets safe TwiML.

Once a request carries a valid signature the answer is HTTP 200 with TwiML, whatever is wrong
with the request or inside the server: the caller must never hear Twilio's "application error".
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from engine.calls.service import APOLOGY, NO_FLOW, UNKNOWN_CALL
from engine.flows.model import Flow, Registry
from engine.runtime.state import AskModel, CallState, Failed, Replied
from engine.simulator import SimulatedCall, Transport, new_call_sid
from engine.store import CallStore, NewEvent
from engine.web.voice import FALLBACK_TEXT, MAX_DIGITS, MAX_SPEECH_CHARS
from tests.support import AUTH_TOKEN, client_transport

LOCAL = "http://localhost"
PUBLIC = "https://phoney.example.com"
ROUTES = ["/api/incoming-call", "/api/incoming-call/fallback", "/api/voice/input",
          "/api/voice/silence", "/api/voice/dial", "/api/voice/recording", "/api/voice/resume",
          "/api/call-status"]


def base_params(call_sid: str | None = None, **extra: str) -> dict[str, str]:
    return {"CallSid": new_call_sid() if call_sid is None else call_sid,
            "AccountSid": "AC" + "0" * 32, "From": "+15551230000", "To": "+15550001000",
            "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01",
            **extra}


def sign(url: str, params: Mapping[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, dict(params)))


def post(client: FlaskClient, path: str, params: Mapping[str, str], *,
         signed_url: str | None = None, base_url: str = LOCAL, token: str = AUTH_TOKEN,
         headers: Mapping[str, str] | None = None, signature: str | None = None
         ) -> TestResponse:
    """POST `params` to `path`, signed over `signed_url` (default: the URL requested)."""
    url = signed_url if signed_url is not None else base_url + path
    sent = {"X-Twilio-Signature": signature if signature is not None
            else sign(url, params, token), **(headers or {})}
    return client.post(path, data=dict(params), headers=sent, base_url=base_url)


def assert_safe(response: TestResponse, text: str | None = None) -> ElementTree.Element:
    """HTTP 200, XML TwiML that apologises and hangs up."""
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    body = response.get_data(as_text=True)
    assert len(body.encode()) < 64_000
    root = ElementTree.fromstring(body)
    assert root.tag == "Response"
    assert [child.tag for child in root] == ["Say", "Hangup"]
    if text is not None:
        assert root[0].text == text
    return root


def twiml(response: TestResponse) -> ElementTree.Element:
    assert response.status_code == 200 and response.mimetype == "text/xml"
    body = response.get_data(as_text=True)
    assert len(body.encode()) < 64_000
    return ElementTree.fromstring(body)


def spoken(root: ElementTree.Element) -> list[str]:
    return [(element.text or "") for element in root.iter("Say")]


def store_of(app: Flask) -> CallStore:
    found: CallStore = app.extensions["phoney"].store
    return found


def errors_of(app: Flask, call_sid: str) -> list[dict[str, Any]]:
    return [dict(event.data) for event in store_of(app).events_after(0, call_sid)
            if event.name == "call.error"]


@pytest.fixture
def started(inprocess_transport: Transport) -> Callable[..., SimulatedCall]:
    """Start a call in-process (on http://localhost); keyword arguments go to SimulatedCall."""

    def start(**options: Any) -> SimulatedCall:
        return SimulatedCall(inprocess_transport, LOCAL, AUTH_TOKEN, **options).start()

    return start


# -- signatures --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ROUTES)
def test_a_missing_signature_is_refused_with_an_empty_403(client: FlaskClient, path: str,
                                                          app: Flask) -> None:
    params = base_params()
    response = client.post(path, data=params, base_url=LOCAL)
    assert response.status_code == 403 and response.get_data() == b""
    assert store_of(app).get_state(params["CallSid"]) is None


@pytest.mark.parametrize("path", ROUTES)
def test_a_wrong_signature_is_refused(client: FlaskClient, path: str) -> None:
    response = post(client, path, base_params(), signature="RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert response.status_code == 403 and response.get_data() == b""


@pytest.mark.parametrize("make_bad", [
    pytest.param(lambda p: {"signed_url": LOCAL + "/api/voice/input"}, id="another-path"),
    pytest.param(lambda p: {"signed_url": "http://evil.example/api/incoming-call"},
                 id="another-host"),
    pytest.param(lambda p: {"signed_url": "https://localhost/api/incoming-call"},
                 id="another-scheme"),
    pytest.param(lambda p: {"signed_url": LOCAL + "/api/incoming-call?flow=after_hours"},
                 id="another-query"),
    pytest.param(lambda p: {"token": "not-the-token"}, id="another-token"),
    pytest.param(lambda p: {"signature": sign(LOCAL + "/api/incoming-call",
                                              {**p, "To": "+15550003000"})},
                 id="other-params"),
    pytest.param(lambda p: {"signature": ""}, id="empty"),
])
def test_a_signature_for_anything_else_is_refused(client: FlaskClient,
                                                  make_bad: Callable[..., Any]) -> None:
    params = base_params()
    response = post(client, "/api/incoming-call", params, **make_bad(params))
    assert response.status_code == 403 and response.get_data() == b""


def test_the_signature_covers_the_query_string(client: FlaskClient) -> None:
    params = base_params()
    path = "/api/incoming-call?flow=support_triage"
    response = post(client, path, params)
    assert spoken(twiml(response))[0] == "Thanks for calling Brightwave Internet."


def test_with_public_base_url_only_the_public_url_is_accepted(
        make_app: Callable[..., Flask]) -> None:
    client = make_app(PUBLIC_BASE_URL=PUBLIC + "/").test_client()
    params = base_params()

    refused = post(client, "/api/incoming-call", params)  # signed over http://localhost/...
    assert refused.status_code == 403

    response = post(client, "/api/incoming-call", params,
                    signed_url=PUBLIC + "/api/incoming-call")
    root = twiml(response)
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("action") == PUBLIC + "/api/voice/input?step=1"  # callbacks go public too

    forwarded = post(client, "/api/incoming-call", base_params(),
                     signed_url="https://other.example/api/incoming-call",
                     headers={"X-Forwarded-Proto": "https",
                              "X-Forwarded-Host": "other.example"})
    assert forwarded.status_code == 403  # the configured URL wins over forwarded headers


def test_without_trusted_proxies_a_clients_forwarded_host_is_not_read(
        client: FlaskClient) -> None:
    """A request signed for another deployment on the same Twilio account, replayed here with
    that deployment's host in X-Forwarded-Host, is refused: only the URL requested counts."""
    elsewhere = "https://abc123.ngrok.example/api/incoming-call"
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "abc123.ngrok.example"}
    assert post(client, "/api/incoming-call", base_params(), signed_url=elsewhere,
                headers=headers).status_code == 403
    assert post(client, "/api/incoming-call", base_params(),
                headers=headers).status_code == 200  # signed over the URL requested


def test_behind_trusted_proxies_their_forwarded_proto_and_host_are_honoured(
        make_app: Callable[..., Flask]) -> None:
    url = "https://abc123.ngrok.example/api/incoming-call"
    one = make_app(TRUSTED_PROXIES="1").test_client()
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "abc123.ngrok.example"}
    answer = post(one, "/api/incoming-call", base_params(), signed_url=url, headers=headers)
    assert answer.status_code == 200
    gather = twiml(answer).find("Gather")
    assert gather is not None and gather.get("action") == "/api/voice/input?step=1"
    # Behind one proxy, a value the client put before the proxy's own is not believed.
    chained = {"X-Forwarded-Proto": "https, http",
               "X-Forwarded-Host": "abc123.ngrok.example, internal:8000"}
    assert post(one, "/api/incoming-call", base_params(), signed_url=url,
                headers=chained).status_code == 403
    # Behind two, the outer proxy's value (second from the right) is the public one.
    two = make_app(TRUSTED_PROXIES="2").test_client()
    assert post(two, "/api/incoming-call", base_params(), signed_url=url,
                headers=chained).status_code == 200
    assert post(one, "/api/incoming-call", base_params(),
                signed_url=url).status_code == 403  # no headers: the local URL was signed


def test_twilios_own_signature_test_vector_holds() -> None:
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    assert sign("https://mycompany.com/myapp.php?foo=1&bar=2", params, "12345") == \
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="


# -- unknown and malformed calls ---------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/voice/input", "/api/voice/silence", "/api/voice/dial",
                                  "/api/voice/recording", "/api/voice/resume"])
def test_an_unknown_call_sid_gets_safe_twiml(client: FlaskClient, app: Flask,
                                             path: str) -> None:
    params = base_params(SpeechResult="hello")
    assert_safe(post(client, path + "?step=3", params), UNKNOWN_CALL)
    assert store_of(app).get_state(params["CallSid"]) is None


@pytest.mark.parametrize("call_sid", [
    "", "CA123", "ca" + "a" * 32, "CA" + "g" * 32, "CA" + "a" * 33, "XX" + "a" * 32,
    "CA" + "a" * 32 + "\n", " CA" + "a" * 32, "CA" + "a" * 31 + "\u0663",
    "CA" + "a" * 32 + "' OR 1=1 --",
])
@pytest.mark.parametrize("path", ["/api/incoming-call", "/api/voice/input", "/api/call-status"])
def test_a_malformed_call_sid_gets_safe_twiml_and_creates_nothing(
        client: FlaskClient, app: Flask, call_sid: str, path: str) -> None:
    params = base_params(call_sid)
    assert_safe(post(client, path, params), APOLOGY)
    assert store_of(app).list_calls() == []


def test_no_call_sid_at_all_gets_safe_twiml(client: FlaskClient, app: Flask) -> None:
    assert_safe(post(client, "/api/incoming-call", {}), APOLOGY)
    assert_safe(post(client, "/api/incoming-call", {"From": "+15551230000"}), APOLOGY)
    assert store_of(app).list_calls() == []


# -- missing and odd parameters ----------------------------------------------------------------

def test_an_incoming_call_with_only_a_call_sid_gets_the_default_flow(client: FlaskClient,
                                                                     app: Flask) -> None:
    call_sid = new_call_sid()
    root = twiml(post(client, "/api/incoming-call", {"CallSid": call_sid}))
    assert spoken(root)[0] == "Thanks for calling Acme Dental."
    state = store_of(app).get_state(call_sid)
    assert state is not None and state.caller.number == "" and state.flow_id == "receptionist"


def test_a_gather_answer_without_speech_or_digits_is_silence(
        started: Callable[..., SimulatedCall], client: FlaskClient) -> None:
    c = started()
    root = twiml(post(client, "/api/voice/input?step=1", {"CallSid": c.call_sid}))
    assert spoken(root) == ["Are you still there?"]


def test_a_dial_result_without_a_status_counts_as_failed(
        started: Callable[..., SimulatedCall], client: FlaskClient, app: Flask) -> None:
    c = started().press("0")
    assert c.waiting.kind == "dial"
    root = twiml(post(client, c.waiting.action.removeprefix(LOCAL), {"CallSid": c.call_sid}))
    assert spoken(root)[0] == "Sorry, nobody at the front desk can pick up right now."
    assert root.find("Record") is not None
    transfers = [e.data for e in store_of(app).events_after(0, c.call_sid)
                 if e.name == "call.transfer"]
    assert transfers[-1]["status"] == "failed"


def test_a_status_callback_without_a_status_closes_nothing(
        started: Callable[..., SimulatedCall], client: FlaskClient, app: Flask) -> None:
    c = started()
    response = post(client, "/api/call-status", {"CallSid": c.call_sid})
    assert response.status_code == 200
    assert ElementTree.fromstring(response.get_data(as_text=True)).tag == "Response"
    summary = store_of(app).get_call(c.call_sid)
    assert summary is not None and summary.status == "in-progress" and summary.ended_at is None


def test_a_20_kb_speech_result_is_cut_and_answered_in_bounds(
        started: Callable[..., SimulatedCall], client: FlaskClient, app: Flask) -> None:
    c = started()
    speech = ("blah " * 4_000)[:20_000]  # ten times what MAX_SPEECH_CHARS keeps
    response = post(client, "/api/voice/input?step=1",
                    {**c.params, "SpeechResult": speech, "Confidence": "0.5"})
    root = twiml(response)
    assert root.find("Gather") is not None
    transcript = [e.data for e in store_of(app).events_after(0, c.call_sid)
                  if e.name == "call.transcript"]
    assert len(transcript[-1]["speech"]) <= MAX_SPEECH_CHARS


@pytest.mark.parametrize("confidence", ["high", "", "nan", "NaN", "inf", "-inf", "1e999", "-3",
                                        "7.5", "0x1p-2", "½"])
def test_a_non_numeric_confidence_is_read_as_a_number_between_0_and_1(
        started: Callable[..., SimulatedCall], client: FlaskClient, app: Flask,
        confidence: str) -> None:
    c = started()
    response = post(client, "/api/voice/input?step=1",
                    {**c.params, "SpeechResult": "hello there", "Confidence": confidence})
    assert twiml(response).find("Gather") is not None
    event = [e for e in store_of(app).events_after(0, c.call_sid)
             if e.name == "call.transcript"][-1]
    value = event.data["confidence"]
    assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0
    json.dumps(event.as_json(), allow_nan=False)  # what the dashboard reads is strict JSON


@pytest.mark.parametrize(("digits", "dials"), [
    ("0<script>alert()</script>", True),   # the junk goes, the 0 stays
    ("0\x00\x01", True),
    ("abc", False),                        # nothing left: silence
    ("\u0660", False),                     # an Arabic-Indic zero is not a key on a phone
    ("1" * 5000, False),
])
def test_digits_with_junk_keep_only_keypad_keys(
        started: Callable[..., SimulatedCall], client: FlaskClient, app: Flask, digits: str,
        dials: bool) -> None:
    c = started()
    root = twiml(post(client, "/api/voice/input?step=1", {**c.params, "Digits": digits}))
    assert (root.find("Dial") is not None) == dials
    transcript = [e.data for e in store_of(app).events_after(0, c.call_sid)
                  if e.name == "call.transcript"][-1]
    assert len(transcript.get("digits", "")) <= MAX_DIGITS
    assert set(transcript.get("digits", "")) <= set("0123456789*#")


@pytest.mark.parametrize("number", ["\u00b2", "9" * 5000, "-5", "1.5", "abc"])
def test_odd_numbers_in_durations_and_steps_do_not_break_the_call(
        started: Callable[..., SimulatedCall], client: FlaskClient, app: Flask,
        number: str) -> None:
    c = started().press("0")
    action = c.waiting.action.removeprefix(LOCAL)
    root = twiml(post(client, action, {**c.params, "DialCallStatus": "no-answer",
                                       "DialCallDuration": number}))
    assert root.find("Record") is not None  # went on to voicemail, no apology
    state = store_of(app).get_state(c.call_sid)
    assert state is not None and state.node == "voicemail"

    root = twiml(post(client, f"/api/voice/recording?step={quote(number)}",
                      {**c.params, "RecordingUrl": "https://example.invalid/r",
                       "RecordingDuration": number}))
    assert spoken(root) == ["Thanks for calling Acme Dental. Goodbye!"]

    assert post(client, "/api/call-status", {**c.params, "CallStatus": "completed",
                                             "CallDuration": number}).status_code == 200
    summary = store_of(app).get_call(c.call_sid)
    assert summary is not None and summary.status == "completed" and summary.duration is None
    assert errors_of(app, c.call_sid) == []


def test_unexpected_extra_parameters_are_ignored(started: Callable[..., SimulatedCall],
                                                 client: FlaskClient) -> None:
    c = started()
    extra = {f"X{i}": "y" * 100 for i in range(100)}  # within the limits, none read
    root = twiml(post(client, "/api/voice/input?step=1", {**c.params, **extra,
                                                         "SpeechResult": "operator"}))
    assert root.find("Dial") is not None


# -- flows that are not there ------------------------------------------------------------------

def test_an_unknown_flow_on_incoming_call_gets_safe_twiml_and_an_error_event(
        client: FlaskClient, app: Flask) -> None:
    params = base_params()
    assert_safe(post(client, "/api/incoming-call?flow=nope", params), NO_FLOW)
    assert store_of(app).get_state(params["CallSid"]) is None
    errors = errors_of(app, params["CallSid"])
    assert len(errors) == 1 and errors[0]["kind"] == "flow" and "'nope'" in errors[0]["detail"]


def test_a_call_whose_flow_version_is_gone_gets_safe_twiml(
        started: Callable[..., SimulatedCall], client: FlaskClient, app: Flask) -> None:
    c = started()
    store = store_of(app)
    state = store.get_state(c.call_sid)
    assert state is not None
    moved = dataclasses.replace(state, flow_version="000000000000", step=state.step + 1)
    store.commit_step(state, moved, [], "test:pin-a-lost-version", "", 0.0)

    response = post(client, f"/api/voice/input?step={moved.step}",
                    {**c.params, "SpeechResult": "hello"})
    assert_safe(response, APOLOGY)
    errors = errors_of(app, c.call_sid)
    assert errors and errors[-1]["kind"] == "flow" and "000000000000" in errors[-1]["detail"]


# -- failures inside the server ----------------------------------------------------------------

class Exploding:
    offline = True

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               now: float) -> Replied | Failed:
        raise RuntimeError("the responder blew up")

    def resume(self, flow: Flow, registry: Registry, state: CallState,
               now: float) -> Replied | Failed:
        raise RuntimeError("the responder blew up")


def started_on(app: Flask) -> tuple[SimulatedCall, FlaskClient]:
    """A call started in-process on `app`, and the client it goes through."""
    client = app.test_client()
    return SimulatedCall(client_transport(client), LOCAL, AUTH_TOKEN).start(), client


def test_an_exception_inside_the_service_gets_safe_twiml_and_a_call_error_event(
        make_app: Callable[..., Flask]) -> None:
    app = make_app(ports={"responder": Exploding()})
    c, client = started_on(app)
    state = store_of(app).get_state(c.call_sid)

    response = post(client, "/api/voice/input?step=1", {**c.params, "SpeechResult": "hello"})
    assert_safe(response, APOLOGY)
    errors = errors_of(app, c.call_sid)
    assert len(errors) == 1 and errors[0]["kind"] == "internal"
    assert "RuntimeError" in errors[0]["detail"]
    assert store_of(app).get_state(c.call_sid) == state  # nothing half-committed


def test_a_store_failure_gets_safe_twiml(started: Callable[..., SimulatedCall],
                                         client: FlaskClient, app: Flask,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    c = started()
    store = store_of(app)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "commit_step", broken)
    assert_safe(post(client, "/api/voice/input?step=1", {**c.params, "SpeechResult": "hi"}),
                APOLOGY)
    assert errors_of(app, c.call_sid)[-1]["detail"].startswith("OSError")


class Echo:
    """A model that repeats what the caller said, control characters and all."""

    offline = True

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               now: float) -> Replied | Failed:
        return Replied(now, f"You said: {state.pending}", personality=ask.personality)

    def resume(self, flow: Flow, registry: Registry, state: CallState,
               now: float) -> Replied | Failed:
        return Failed(now, "ai_failure", "no stream")


def test_a_reply_with_characters_xml_cannot_carry_still_makes_valid_twiml(
        make_app: Callable[..., Flask]) -> None:
    c, client = started_on(make_app(ports={"responder": Echo()}))
    speech = "hello\x01\x02there \x1b[31m\ufffe and <b>&amp;</b> done"
    root = twiml(post(client, "/api/voice/input?step=1", {**c.params, "SpeechResult": speech}))
    assert spoken(root) == ["You said: hellothere [31m and <b>&amp;</b> done"]


# -- the fallback URL --------------------------------------------------------------------------

def test_the_fallback_url_answers_safe_twiml_when_signed(client: FlaskClient) -> None:
    assert_safe(post(client, "/api/incoming-call/fallback",
                     base_params(ErrorCode="11200", ErrorUrl=LOCAL + "/api/incoming-call")),
                FALLBACK_TEXT)
    assert client.post("/api/incoming-call/fallback", data=base_params(),
                       base_url=LOCAL).status_code == 403


def test_the_fallback_url_needs_no_call_sid(client: FlaskClient) -> None:
    assert_safe(post(client, "/api/incoming-call/fallback", {}), FALLBACK_TEXT)


def test_an_error_event_recorded_outside_a_step_reaches_the_store(app: Flask) -> None:
    """The path the voice routes use when a request cannot step the call."""
    call_sid = new_call_sid()
    store_of(app).record_events(call_sid, [NewEvent("call.error", {"kind": "internal"})], 1.0)
    assert errors_of(app, call_sid) == [{"kind": "internal"}]
