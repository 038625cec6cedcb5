"""Call control (`/api/transfer-call`, `/api/end-call`) against a local double of Twilio's REST API.

A call is started through the simulator, over the app's own webhooks, so the store knows it; the
dashboard (a separate test client, logged in, with its CSRF token) then acts on it, and the double
shows what reached "Twilio".
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from twilio.base.exceptions import TwilioRestException

from engine.settings import ENV_KEYS
from engine.simulator import HttpAnswer, SimulatedCall, new_call_sid
from engine.web.app import create_app
from engine.web.control import MAX_INLINE_TWIML, TRANSFER_TEXT
from engine.web.twilio_rest import RedirectingHttpClient, TwilioRest
from tests.support_twilio_api import TwilioApiDouble
from tests.web.test_metrics import ERRORS, grew, scrape

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "5f1c0ffee0ddba11c0ffee0ddba11c0f"
FRONT_DESK = "+15550001111"  # receptionist.yaml: vars.front_desk, the front_desk node's `to`
NOT_DECLARED = "+19005550123"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment first: keep a developer's own settings out of the tests."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def api() -> Iterator[TwilioApiDouble]:
    with TwilioApiDouble(ACCOUNT_SID, AUTH_TOKEN) as double:
        yield double


def make_app(tmp_path: Path, **overrides: Any) -> Flask:
    config: dict[str, Any] = {
        "PROJECT_ROOT": str(ROOT), "STORE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "DASHBOARD_PASSWORD": "pw", "SECRET_KEY": "test-secret", "TESTING": True,
    }
    config.update(overrides)
    return create_app({key: value for key, value in config.items() if value is not None})


def start_call(app: Flask, auth_token: str = AUTH_TOKEN,
               base_url: str = "http://localhost") -> SimulatedCall:
    """A call to the receptionist's number, through the webhooks, as Twilio would make it."""
    client = app.test_client()

    def transport(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> HttpAnswer:
        parts = urlsplit(url)
        answer = client.post(parts.path + ("?" + parts.query if parts.query else ""),
                             data=dict(params), headers=dict(headers),
                             base_url=f"{parts.scheme}://{parts.netloc}")
        return HttpAnswer(answer.status_code, answer.get_data(as_text=True),
                          answer.content_type)

    return SimulatedCall(transport, base_url, auth_token).start()


def dashboard(app: Flask) -> tuple[FlaskClient, str]:
    """A logged-in dashboard client (its own cookie jar) and its CSRF token."""
    client = app.test_client()
    assert client.post("/login", data={"password": "pw"}).status_code == 302
    token = client.get("/api/session").get_json()["csrf_token"]
    assert token
    return client, str(token)


@dataclass
class Scene:
    app: Flask
    api: TwilioApiDouble
    call: SimulatedCall
    client: FlaskClient
    csrf: str

    def post(self, path: str, **data: str) -> Any:
        return self.client.post(path, data=data, headers={"X-CSRF-Token": self.csrf})

    def transfer(self, to: str) -> Any:
        return self.post("/api/transfer-call", CallSid=self.call.call_sid, To=to)

    def events(self, name: str) -> list[dict[str, Any]]:
        store = self.app.extensions["phoney"].store
        return [dict(e.data) for e in store.events_after(0, self.call.call_sid) if e.name == name]


def scene(tmp_path: Path, api: TwilioApiDouble, **overrides: Any) -> Scene:
    overrides.setdefault("TWILIO_API_URL", api.url)
    app = make_app(tmp_path, **overrides)
    call = start_call(app, overrides.get("TWILIO_AUTH_TOKEN", AUTH_TOKEN),
                      overrides.get("PUBLIC_BASE_URL") or "http://localhost")
    assert call.waiting.kind == "gather", call.transcript()
    api.add_call(call.call_sid, to=call.params["To"], from_=call.params["From"])
    client, csrf = dashboard(app)
    return Scene(app, api, call, client, csrf)


def dial_of(twiml: str) -> ElementTree.Element:
    root = ElementTree.fromstring(twiml)
    dials = root.findall("Dial")
    assert len(dials) == 1, twiml
    return dials[0]


# -- transfer ----------------------------------------------------------------------------------

def test_transfer_to_the_flows_front_desk_updates_the_call_with_inline_twiml(
        tmp_path: Path, api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api)
    step = s.app.extensions["phoney"].store.get_state(s.call.call_sid).step

    answer = s.transfer(FRONT_DESK)

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json() == {"ok": True, "call_sid": s.call.call_sid, "to": FRONT_DESK}
    assert len(api.requests) == 1
    sent = api.requests[0]
    assert sent.method == "POST"
    assert sent.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{s.call.call_sid}.json"
    assert sent.basic_auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert set(sent.form) == {"Twiml"}
    twiml = sent.form["Twiml"]
    assert len(twiml) <= MAX_INLINE_TWIML
    assert f"<Number>{FRONT_DESK}</Number>" in twiml
    assert TRANSFER_TEXT in twiml
    dial = dial_of(twiml)
    assert dial.get("action") == f"http://localhost/api/voice/dial?step={step}"
    assert dial.get("method") == "POST"
    assert dial.get("timeout") == "20"  # the front_desk node's own timeout
    assert [e for e in s.events("call.transfer") if e.get("source") == "dashboard"] == [
        {"node": "assist", "to": FRONT_DESK, "status": "requested", "source": "dashboard",
         "by": "admin"}]


def test_transfer_accepts_json_and_a_formatted_number(tmp_path: Path,
                                                      api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api)
    answer = s.client.post("/api/transfer-call", headers={"X-CSRF-Token": s.csrf},
                           json={"CallSid": s.call.call_sid, "target": "+1 (555) 000-1111"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert f"<Number>{FRONT_DESK}</Number>" in api.requests[0].form["Twiml"]


def test_transfer_to_a_number_the_flow_does_not_declare_is_refused(
        tmp_path: Path, api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api)

    answer = s.transfer(NOT_DECLARED)

    assert answer.status_code == 403
    body = answer.get_json()
    assert FRONT_DESK in body["error"] and body["allowed"] == [FRONT_DESK]
    assert api.requests == []
    assert not [e for e in s.events("call.transfer") if e.get("source") == "dashboard"]


def test_transfer_allow_lets_extra_targets_through(tmp_path: Path,
                                                   api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api, TRANSFER_ALLOW="+15550009999, sip:ops@pbx.example.com")

    assert s.transfer("+15550009999").status_code == 200
    assert s.transfer("sip:ops@pbx.example.com").status_code == 200
    assert s.transfer(NOT_DECLARED).status_code == 403

    first, second = (r.form["Twiml"] for r in api.requests)
    assert "<Number>+15550009999</Number>" in first
    assert dial_of(first).get("timeout") == "30"
    assert "<Sip>sip:ops@pbx.example.com</Sip>" in second


def test_transfer_twiml_over_twilios_inline_limit_is_not_sent(tmp_path: Path,
                                                              api: TwilioApiDouble) -> None:
    long_target = "sip:" + "a" * MAX_INLINE_TWIML + "@pbx.example.com"
    s = scene(tmp_path, api, TRANSFER_ALLOW=long_target)

    answer = s.transfer(long_target)

    assert answer.status_code == 500
    assert "4000" in answer.get_json()["error"]
    assert api.requests == []


def test_dial_action_uses_the_public_base_url(tmp_path: Path, api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api, PUBLIC_BASE_URL="https://phoney.example.com/")
    assert s.transfer(FRONT_DESK).status_code == 200
    action = dial_of(api.requests[0].form["Twiml"]).get("action") or ""
    assert action.startswith("https://phoney.example.com/api/voice/dial?step=")


def test_after_the_transferred_leg_ends_the_call_comes_back_to_its_flow(
        tmp_path: Path, api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api)
    store = s.app.extensions["phoney"].store
    before = store.get_state(s.call.call_sid)
    assert s.transfer(FRONT_DESK).status_code == 200
    twiml = api.requests[0].form["Twiml"]

    # Twilio runs the new TwiML: the caller hears the announcement and the <Dial> rings ...
    s.call._read(s.call._parse(twiml), s.call.base_url + "/")
    assert s.call.last_heard() == TRANSFER_TEXT
    assert s.call.dialed[-1] == FRONT_DESK
    assert s.call.waiting.kind == "dial"
    # ... nobody answers, and Twilio posts the dial action: the flow takes the call back.
    s.call.dial_ends("no-answer")

    assert s.call.waiting.kind == "gather"
    assert "virtual receptionist" in s.call.last_heard()
    after = store.get_state(s.call.call_sid)
    assert after.node == "assist" and after.step == before.step + 1 and not after.ended
    s.call.say("What are your hours?")  # and the conversation goes on
    assert s.call.waiting.kind == "gather"


# -- end ---------------------------------------------------------------------------------------

def test_end_call_completes_the_call_at_twilio(tmp_path: Path, api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api)

    answer = s.post("/api/end-call", CallSid=s.call.call_sid)

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert [(r.method, r.form) for r in api.call_updates(s.call.call_sid)] == [
        ("POST", {"Status": "completed"})]
    assert api.requests[0].basic_auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert api.calls[s.call.call_sid].status == "completed"
    assert s.events("call.end") == [{"node": "assist", "status": "requested",
                                     "source": "dashboard", "by": "admin"}]


# -- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/transfer-call", "/api/end-call"])
def test_control_needs_a_login(tmp_path: Path, api: TwilioApiDouble, path: str) -> None:
    s = scene(tmp_path, api)
    anonymous = s.app.test_client()
    answer = anonymous.post(path, data={"CallSid": s.call.call_sid, "To": FRONT_DESK})
    assert answer.status_code == 401
    assert answer.get_json() == {"error": "login required"}
    assert api.requests == []


@pytest.mark.parametrize("path", ["/api/transfer-call", "/api/end-call"])
@pytest.mark.parametrize("token", [None, "forged-token"])
def test_control_needs_the_sessions_csrf_token(tmp_path: Path, api: TwilioApiDouble, path: str,
                                               token: str | None) -> None:
    s = scene(tmp_path, api)
    headers = {"X-CSRF-Token": token} if token else {}
    answer = s.client.post(path, data={"CallSid": s.call.call_sid, "To": FRONT_DESK},
                           headers=headers)
    assert answer.status_code == 403
    assert "CSRF" in answer.get_json()["error"]
    assert api.requests == []


def test_unknown_and_malformed_calls(tmp_path: Path, api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api)
    unknown = new_call_sid()

    transfer = s.post("/api/transfer-call", CallSid=unknown, To=FRONT_DESK)
    end = s.post("/api/end-call", CallSid=unknown)
    malformed = s.post("/api/end-call", CallSid="CA123")
    missing = s.post("/api/end-call")
    no_target = s.post("/api/transfer-call", CallSid=s.call.call_sid)

    assert (transfer.status_code, end.status_code) == (404, 404)
    assert unknown in transfer.get_json()["error"]
    assert (malformed.status_code, missing.status_code, no_target.status_code) == (400, 400, 400)
    assert api.requests == []


def test_a_call_that_has_ended_cannot_be_controlled(tmp_path: Path,
                                                    api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api)
    assert s.call.hang_up().status == 200  # Twilio's status callback: completed

    transfer = s.transfer(FRONT_DESK)
    end = s.post("/api/end-call", CallSid=s.call.call_sid)

    assert (transfer.status_code, end.status_code) == (409, 409)
    assert "ended" in transfer.get_json()["error"]
    assert api.requests == []


def test_without_an_account_sid_control_is_unavailable(tmp_path: Path,
                                                       api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api, TWILIO_ACCOUNT_SID=None)

    for answer in (s.transfer(FRONT_DESK), s.post("/api/end-call", CallSid=s.call.call_sid)):
        assert answer.status_code == 503
        assert answer.get_json()["error"] == (
            "call control needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    assert api.requests == []


# -- Twilio failing ----------------------------------------------------------------------------

def test_twilio_refusing_the_credentials_is_a_502_with_its_message(
        tmp_path: Path, api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api, TWILIO_AUTH_TOKEN="not-the-token-twilio-knows")

    for answer in (s.transfer(FRONT_DESK), s.post("/api/end-call", CallSid=s.call.call_sid)):
        assert answer.status_code == 502
        assert answer.is_json
        body = answer.get_json()
        assert "Authenticate" in body["error"] and "Traceback" not in body["error"]
        assert (body["twilio_status"], body["twilio_code"]) == (401, 20003)
    assert len(api.requests) == 2
    assert api.requests[0].basic_auth == (ACCOUNT_SID, "not-the-token-twilio-knows")
    assert not [e for e in s.events("call.transfer") if e.get("source") == "dashboard"]
    assert any(e.get("kind") == "control" for e in s.events("call.error"))


def test_twilio_unreachable_is_a_502(tmp_path: Path, api: TwilioApiDouble) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = scene(tmp_path, api, TWILIO_API_URL=f"http://127.0.0.1:{port}")

    for answer in (s.transfer(FRONT_DESK), s.post("/api/end-call", CallSid=s.call.call_sid)):
        assert answer.status_code == 502
        assert answer.is_json
        assert "could not reach Twilio" in answer.get_json()["error"]
    assert api.requests == []


def test_twilio_saying_the_call_is_gone_is_a_502(tmp_path: Path,
                                                  api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api)
    del api.calls[s.call.call_sid]  # Twilio no longer knows the call

    answer = s.transfer(FRONT_DESK)

    assert answer.status_code == 502
    assert answer.get_json()["twilio_code"] == 20404


def test_twilio_saying_the_call_has_ended_is_a_409(tmp_path: Path,
                                                   api: TwilioApiDouble) -> None:
    s = scene(tmp_path, api)
    api.calls[s.call.call_sid].status = "completed"  # the status callback has not arrived yet

    answer = s.transfer(FRONT_DESK)

    assert answer.status_code == 409
    assert answer.get_json()["twilio_code"] == 21220


# -- the REST client and the double ------------------------------------------------------------

@pytest.mark.parametrize(("url", "expected"), [
    ("https://api.twilio.com/2010-04-01/Accounts/AC1/Calls/CA1.json",
     "http://127.0.0.1:8099/2010-04-01/Accounts/AC1/Calls/CA1.json"),
    ("https://api.dublin.ie1.twilio.com/2010-04-01/Calls.json?x=1",
     "http://127.0.0.1:8099/2010-04-01/Calls.json?x=1"),
    ("https://api.twilio.com.evil.example/2010-04-01", "https://api.twilio.com.evil.example/2010-04-01"),
    ("https://example.com/https://api.twilio.com/", "https://example.com/https://api.twilio.com/"),
])
def test_the_http_client_redirects_only_twilio_api_urls(url: str, expected: str) -> None:
    assert RedirectingHttpClient("http://127.0.0.1:8099/ignored/path").rewrite(url) == expected
    assert RedirectingHttpClient().rewrite(url) == url
    assert RedirectingHttpClient().timeout == 10.0


def test_the_rest_client_is_made_once_and_only_with_credentials(api: TwilioApiDouble) -> None:
    rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api.url)
    assert rest.client() is rest.client()
    with pytest.raises(RuntimeError, match="TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"):
        TwilioRest("", AUTH_TOKEN).client()


def test_the_double_answers_like_twilio(api: TwilioApiDouble) -> None:
    client = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api.url).client()
    sid = new_call_sid()
    api.add_call(sid)

    fetched = client.calls(sid).fetch()
    assert (fetched.sid, fetched.status, fetched.account_sid) == (sid, "in-progress",
                                                                 ACCOUNT_SID)

    def refused(**changes: str) -> tuple[int, int | None]:
        with pytest.raises(TwilioRestException) as caught:
            client.calls(sid).update(**changes)
        return caught.value.status, caught.value.code

    assert refused(twiml="<Response/>", url="https://example.com/x") == (400, 21208)
    assert refused(twiml="<Response><Say>" + "a" * 4000 + "</Say></Response>") == (400, 32018)
    assert refused(status="ringing") == (400, 20001)
    with pytest.raises(TwilioRestException) as unknown:
        client.calls(new_call_sid()).update(status="completed")
    assert (unknown.value.status, unknown.value.code) == (404, 20404)

    updated = client.calls(sid).update(twiml="<Response><Hangup/></Response>")
    assert updated.status == "in-progress"
    assert client.calls(sid).update(status="completed").status == "completed"
    assert refused(twiml="<Response/>") == (400, 21220)  # no redirecting a finished call

    wrong = TwilioRest(ACCOUNT_SID, "wrong", api.url).client()
    with pytest.raises(TwilioRestException) as denied:
        wrong.calls(sid).fetch()
    assert (denied.value.status, denied.value.code) == (401, 20003)
    assert "Authenticate" in denied.value.msg


def test_a_control_error_is_counted_in_the_metrics(tmp_path: Path,
                                                   api: TwilioApiDouble) -> None:
    # Dashboard actions record their errors through the same recorder as the call service.
    s = scene(tmp_path, api, TWILIO_AUTH_TOKEN="not-the-token-twilio-knows")
    before = scrape(s.client)
    assert s.transfer(FRONT_DESK).status_code == 502
    assert grew(before, scrape(s.client), ERRORS, kind="control") == 1


def test_a_call_page_for_a_call_sid_with_a_trailing_newline_is_not_found(
        tmp_path: Path, api: TwilioApiDouble) -> None:
    # `match` with `$` accepts "CA...\n"; the dashboard's routes must not.
    s = scene(tmp_path, api)
    assert s.client.get(f"/calls/{s.call.call_sid}").status_code == 200
    assert s.client.get(f"/calls/{s.call.call_sid}%0A").status_code == 404
