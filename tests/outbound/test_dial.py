"""Outbound calls: `POST /api/calls` and `flask calls dial` place a call through the twilio
SDK against the local Twilio API double (the exact REST request Twilio would receive, AMD
included); the call's vars reach its flow when Twilio's webhook comes; answering-machine
detection's asynchronous result redirects a machine to the voicemail drop."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from flask import Flask

from engine.flows.compile import compile_flow
from engine.outbound.dial import Dialer, DialError
from engine.outbound.records import TOKEN_PREFIX, read_placed
from tests.outbound.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BASE,
    REMINDER_FROM,
    dashboard,
    make_app,
    twilio_side,
)
from tests.support_twilio_api import TwilioApiDouble

CALLEE = "+15550102000"


def place(app: Flask, body: object, csrf: bool = True) -> tuple[int, dict[str, object]]:
    client, token = dashboard(app)
    answer = client.post("/api/calls", json=body,
                         headers={"X-CSRF-Token": token} if csrf else {})
    return answer.status_code, answer.get_json()


def test_the_api_places_the_call_with_machine_detection(tmp_path: Path,
                                                       api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api)
    status, body = place(app, {"flow": "reminder", "to": "+1 (555) 010-2000",
                               "vars": {"name": "Ada", "appointment": "Monday at 10"}})
    assert status == 201, body
    [sent] = api.creations()
    assert sent.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
    assert sent.basic_auth == (ACCOUNT_SID, AUTH_TOKEN)
    url = sent.form.pop("Url")
    assert sent.form == {
        "To": CALLEE, "From": REMINDER_FROM, "Method": "POST",
        "StatusCallback": f"{BASE}/api/call-status", "StatusCallbackMethod": "POST",
        "StatusCallbackEvent": "completed",  # the last of the four; all four below
        "MachineDetection": "DetectMessageEnd", "AsyncAmd": "true",
        "AsyncAmdStatusCallback": f"{BASE}/api/voice/amd",
        "AsyncAmdStatusCallbackMethod": "POST",
    }
    assert sent.lists["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{BASE}/api/incoming-call"
    query = parse_qs(parts.query)
    assert query["flow"] == ["reminder"] and len(query["placed"][0]) >= 16
    [created] = api.created
    assert body == {"ok": True, "call_sid": created.sid, "flow": "reminder", "to": CALLEE,
                    "from_": REMINDER_FROM, "status": "queued", "machine_detection": True}


def test_the_calls_vars_reach_its_flow_when_twilio_rings_it(tmp_path: Path,
                                                           api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api)
    status, _ = place(app, {"flow": "reminder", "to": CALLEE,
                            "vars": {"name": "Ada", "appointment": "your cleaning"}})
    assert status == 201
    [created] = api.created
    call = twilio_side(app, created.sid, CALLEE, REMINDER_FROM)
    call.start(urlsplit(created.url or "").path + "?" + urlsplit(created.url or "").query)
    assert "Hello Ada" in call.transcript() and "your cleaning" in call.transcript()
    state = app.extensions["phoney"].store.get_state(created.sid)
    assert state.vars == {"name": "Ada", "appointment": "your cleaning"}
    assert state.flow_id == "reminder" and state.node == "remind"
    # The other party is the callee, Twilio's `To`; the number called is ours.
    assert (state.caller.number, state.called) == (CALLEE, REMINDER_FROM)


def test_placed_calls_are_not_held_to_the_caller_limit(tmp_path: Path,
                                                      api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api, CALLER_CALL_LIMIT="1/hour")
    for index in range(3):
        to = f"+1555010300{index}"
        assert place(app, {"flow": "reminder", "to": to, "vars": {"name": f"P{index}"}})[0] == 201
        created = api.created[-1]
        call = twilio_side(app, created.sid, to, REMINDER_FROM)
        parts = urlsplit(created.url or "")
        call.start(f"{parts.path}?{parts.query}")
        assert f"Hello P{index}" in call.transcript(), call.transcript()


def test_a_webhook_that_beats_the_rest_answer_finds_the_vars_by_token(
        tmp_path: Path, api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api)
    assert place(app, {"flow": "reminder", "to": CALLEE, "vars": {"name": "Bo"}})[0] == 201
    [created] = api.created
    store = app.extensions["phoney"].store
    token = parse_qs(urlsplit(created.url or "").query)["placed"][0]
    assert store.get_blob(TOKEN_PREFIX + token) is not None
    other_sid = "CA" + "f" * 32  # as if the CallSid had not been written yet
    assert read_placed(store, other_sid) is None
    call = twilio_side(app, other_sid, CALLEE, REMINDER_FROM)
    call.start(f"/api/incoming-call?flow=reminder&placed={token}")
    assert "Hello Bo" in call.transcript()


def test_a_machine_found_later_is_redirected_to_the_voicemail_drop(
        tmp_path: Path, api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api)
    assert place(app, {"flow": "reminder", "to": CALLEE, "vars": {"name": "Ada"}})[0] == 201
    [created] = api.created
    call = twilio_side(app, created.sid, CALLEE, REMINDER_FROM)
    parts = urlsplit(created.url or "")
    call.start(f"{parts.path}?{parts.query}")
    assert call.waiting.kind == "gather"  # a person would be asked to confirm by now

    answer = call.post("/api/voice/amd", {"AnsweredBy": "machine_end_beep",
                                          "MachineDetectionDuration": "4100"})
    assert answer.status == 200
    [update] = api.call_updates(created.sid)
    assert update.form == {"Url": f"{BASE}/api/voice/machine?answered_by=machine_end_beep",
                           "Method": "POST"}
    message = call.post("/api/voice/machine?answered_by=machine_end_beep")
    assert "Hello Ada" in message.body and "please call us at" in message.body
    assert "<Hangup" in message.body and "<Gather" not in message.body
    store = app.extensions["phoney"].store
    names = [(e.name, e.data.get("edge")) for e in store.events_after(0, created.sid)]
    assert ("call.amd", None) in names and ("call.node", "machine") in names


def test_a_person_found_by_detection_changes_nothing(tmp_path: Path,
                                                   api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api)
    assert place(app, {"flow": "reminder", "to": CALLEE})[0] == 201
    [created] = api.created
    call = twilio_side(app, created.sid, CALLEE, REMINDER_FROM)
    parts = urlsplit(created.url or "")
    call.start(f"{parts.path}?{parts.query}")
    assert call.post("/api/voice/amd", {"AnsweredBy": "human"}).status == 200
    assert api.call_updates(created.sid) == []


def test_bad_requests_are_refused_with_a_reason_and_nothing_placed(
        tmp_path: Path, api: TwilioApiDouble) -> None:
    (tmp_path / "dnc.txt").write_text("# asked not to be called\n+1 555 010 9999\n")
    app = make_app(tmp_path, api, DO_NOT_CALL_FILE=str(tmp_path / "dnc.txt"))
    cases = [
        ({"flow": "reminder", "to": "(555) 010-2000"}, 400, "has no country code"),
        ({"flow": "reminder", "to": "call me"}, 400, "is not a phone number"),
        ({"flow": "nope", "to": CALLEE}, 404, "unknown flow 'nope'"),
        ({"flow": "reminder", "to": CALLEE, "vars": ["x"]}, 400, "vars must be an object"),
        ({"flow": "reminder", "to": CALLEE, "vars": {"a b": 1}}, 400, "var name 'a b'"),
        ({"flow": "reminder", "to": "+15550109999"}, 403, "is on the do-not-call list"),
        ("not an object", 400, "send JSON"),
    ]
    for body, status, message in cases:
        got, answer = place(app, body)
        assert (got, message in str(answer.get("error"))) == (status, True), (body, answer)
    assert place(app, {"flow": "reminder", "to": CALLEE}, csrf=False)[0] == 403
    assert api.creations() == []


def test_twilios_refusals_keep_their_code(tmp_path: Path, api: TwilioApiDouble) -> None:
    api.refuse(CALLEE, 400, 21211, f"Invalid 'To' Phone Number: {CALLEE}")
    app = make_app(tmp_path, api)
    status, body = place(app, {"flow": "reminder", "to": CALLEE})
    assert status == 502
    assert body == {"error": f"Twilio refused the call to {CALLEE}: Invalid 'To' Phone "
                             f"Number: {CALLEE} (code 21211)", "twilio_code": 21211}
    wrong = make_app(tmp_path / "w", api, TWILIO_AUTH_TOKEN="0" * 32)
    status, body = place(wrong, {"flow": "reminder", "to": CALLEE})
    assert (status, body["twilio_code"]) == (502, 20003)
    assert "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in str(body["error"])
    assert api.created == []


def test_the_number_called_from(tmp_path: Path, api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api, OUTBOUND_FROM="+1 555 000 7777")
    assert place(app, {"flow": "reminder", "to": CALLEE})[0] == 201
    assert api.creations()[0].form["From"] == "+15550007777"
    bare = compile_flow({"flow": "bare", "personality": "p", "start": "a", "nodes": {
        "a": {"type": "hangup"}}}).flow
    store = app.extensions["phoney"].store
    dialer = Dialer(lambda: None, store, lambda: {"bare": bare}, base_url=BASE)
    try:
        dialer.dial("bare", CALLEE)
    except DialError as error:
        assert error.message == ("no number to call from: set OUTBOUND_FROM, or give flow "
                                 "'bare' its `numbers`")
    else:
        raise AssertionError("placed a call with no number to call from")
    no_amd = api.creations()[0]
    assert "MachineDetection" in no_amd.form  # the reminder declares on_machine


def test_a_flow_without_on_machine_asks_no_detection(tmp_path: Path,
                                                   api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api)
    assert place(app, {"flow": "receptionist", "to": CALLEE})[0] == 201
    form = api.creations()[0].form
    assert form["From"] == "+15550001000"
    assert not {"MachineDetection", "AsyncAmd", "AsyncAmdStatusCallback"} & set(form)


def test_flask_calls_dial(tmp_path: Path, api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["calls", "dial", "reminder", CALLEE, "--var", "name=Ada",
                                 "--var", "appointment=Monday at 10"])
    assert result.exit_code == 0, result.output
    [created] = api.created
    assert result.output.strip().splitlines()[-1] == (
        f"{created.sid}: calling {CALLEE} from {REMINDER_FROM} on flow reminder with "
        f"answering-machine detection (queued)")
    placed = read_placed(app.extensions["phoney"].store, created.sid)
    assert placed is not None and placed.vars == {"name": "Ada", "appointment": "Monday at 10"}
    assert placed.by == "cli"
    assert api.creations()[0].form["MachineDetection"] == "DetectMessageEnd"
    bad = runner.invoke(args=["calls", "dial", "reminder", CALLEE, "--var", "name"])
    assert bad.exit_code == 1 and "--var 'name': write name=value" in bad.output
    gone = runner.invoke(args=["calls", "dial", "reminder", "12"])
    assert gone.exit_code == 1 and "is not a phone number" in gone.output
    assert len(api.creations()) == 1


def test_placing_calls_counts_against_api_rate_limit(tmp_path: Path,
                                                     api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api, API_RATE_LIMIT="2/minute")
    client, token = dashboard(app)
    answers = [client.post("/api/calls", json={"flow": "reminder", "to": CALLEE},
                           headers={"X-CSRF-Token": token}).status_code for _ in range(3)]
    assert answers == [201, 201, 429]
    assert len(api.creations()) == 2
    assert client.get("/api/campaigns").status_code == 200  # reading is not limited


def test_a_redirect_twilio_refuses_is_recorded_and_the_callback_still_answered(
        tmp_path: Path, api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api)
    assert place(app, {"flow": "reminder", "to": CALLEE})[0] == 201
    [created] = api.created
    call = twilio_side(app, created.sid, CALLEE, REMINDER_FROM)
    parts = urlsplit(created.url or "")
    call.start(f"{parts.path}?{parts.query}")
    del api.calls[created.sid]  # Twilio no longer knows the call: the update answers 404
    answer = call.post("/api/voice/amd", {"AnsweredBy": "machine_start"})
    assert answer.status == 200 and "<Response" in answer.body
    store = app.extensions["phoney"].store
    [error] = [e.data for e in store.events_after(0, created.sid) if e.name == "call.error"]
    assert error["kind"] == "machine"
    assert "could not redirect the call to its voicemail drop" in error["detail"]
    assert store.get_state(created.sid).node == "remind"  # the call goes on as it was
