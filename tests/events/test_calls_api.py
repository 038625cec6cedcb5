"""`GET /api/calls` and `GET /api/calls/<CallSid>` after a call made through the webhooks."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from engine.store import NewEvent
from tests.events.conftest import logged_in, simulated_call, store_of


def test_calls_need_a_login(new_app: Callable[..., Flask]) -> None:
    client = new_app().test_client()

    assert client.get("/api/calls").status_code == 401
    assert client.get("/api/calls/CA123").status_code == 401


def test_a_finished_call_with_its_transcript_and_events(new_app: Callable[..., Flask]) -> None:
    app = new_app()
    call = simulated_call(app).start()
    call.say("Do you take walk-ins?")
    call.say("Nothing else, goodbye")
    assert call.hang_up().status == 200
    client = logged_in(app)

    listed = client.get("/api/calls").get_json()

    (summary,) = listed["calls"]
    assert summary["call_sid"] == call.call_sid
    assert (summary["status"], summary["flow"], summary["personality"]) == (
        "completed", "receptionist", "friendly")
    assert summary["caller"] == call.params["From"] and summary["live"] is False
    assert summary["timings"]["duration"] == 60
    assert summary["timings"]["ended_at"] >= summary["timings"]["started_at"]
    assert listed["last_event_id"] == store_of(app).last_event_id()

    detail = client.get(f"/api/calls/{call.call_sid}").get_json()
    assert detail["node"] == summary["node"] and detail["status"] == "completed"
    assert detail["offline"] is True and detail["path"][0] == "greet"
    stored = store_of(app).events_after(0, call.call_sid)
    assert [e["id"] for e in detail["events"]] == [e.id for e in stored]
    assert detail["events"][0]["name"] == "call.start" and not detail["events_truncated"]

    lines = detail["transcript"]
    said = [(line["role"], line["text"]) for line in lines]
    assert said[0] == ("agent", "Thanks for calling Acme Dental.")
    assert ("caller", "Do you take walk-ins?") in said
    assert ("caller", "Nothing else, goodbye") in said
    asked = said.index(("caller", "Do you take walk-ins?"))
    assert said[asked + 1][0] == "agent"  # the reply follows the question
    assert lines[asked + 1]["kind"] == "response" and lines[asked + 1]["offline"] is True
    heard = [item.text for item in call.heard if item.text]
    assert [text for role, text in said if role == "agent"] == heard  # what the caller heard
    for line in lines:
        assert line["at"] >= summary["timings"]["started_at"] and line["offset"] >= 0
        assert isinstance(line["event_id"], int) and line["node"]


def test_a_silence_is_a_caller_turn(new_app: Callable[..., Flask]) -> None:
    app = new_app()
    call = simulated_call(app).start()
    call.silence()

    lines = logged_in(app).get(f"/api/calls/{call.call_sid}").get_json()["transcript"]

    assert any(line["role"] == "caller" and line["silence"] for line in lines)


def test_unknown_calls_and_calls_known_only_by_their_events(
        new_app: Callable[..., Flask]) -> None:
    app = new_app()
    client = logged_in(app)
    assert client.get("/api/calls/CAnothere").status_code == 404
    store_of(app).record_events("CAnoflow", [NewEvent("call.error", {"kind": "flow"})], at=5.0)

    body = client.get("/api/calls/CAnoflow").get_json()

    assert body["status"] == "unknown" and [e["name"] for e in body["events"]] == ["call.error"]
    assert client.get("/api/calls?limit=x").status_code == 400
    assert client.get("/api/calls?limit=0").get_json()["calls"] == []
