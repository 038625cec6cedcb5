"""GET /api/calls' filters, pages and CSV export, /api/overview, and the bad input each refuses
(through the app, on its real store)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.store import CallStore, NewEvent
from tests.dashboard.test_dashboard_pages import logged_in, start_call
from tests.store.test_contract import new_call

MakeApp = Callable[..., Flask]
DAY = 86400.0
T0 = 1_765_000_000.0  # 2025-12-06T05:46:40Z


def store_of(app: Flask) -> CallStore:
    store: CallStore = app.extensions["phoney"].store
    return store


def seed(store: CallStore, sid: str, started: float, events: list[NewEvent], *,
         flow: str = "receptionist", caller: str = "+15550002222") -> None:
    state = new_call(sid, started_at=started, flow_id=flow)
    state = state.__class__(**{**state.__dict__, "caller": state.caller.__class__(
        **{**state.caller.__dict__, "number": caller})})
    store.commit_step(None, state, events, "start", "<R/>", at=started + 1)
    store.close_call(sid, "completed", 42, at=started + 42)


def ev(name: str, **data: Any) -> NewEvent:
    return NewEvent(name, data)


@pytest.fixture
def seeded(make_dashboard_app: MakeApp) -> tuple[Flask, FlaskClient]:
    app = make_dashboard_app()
    store = store_of(app)
    seed(store, "CA1", T0, [ev("call.transcript", speech="my invoice is wrong", sentiment=-0.5),
                            ev("call.response", text="Let me check."),
                            ev("call.timing", first_token=0.4, answer=0.9)])
    store.record_events("CA1", [ev("call.analysis", status="ok", summary="=HYPERLINK(\"x\")",
                                   fields={"resolved": True, "reason": "billing"})], T0 + 50)
    seed(store, "CA2", T0 + DAY, [ev("call.transfer", to="+1555", status="completed"),
                                  ev("call.timing", first_token=0.8, answer=1.5)], flow="clinic",
         caller="-15551234")
    seed(store, "CA3", T0 + 2 * DAY, [])
    store.record_events("CA3", [ev("call.test", source="scenario")], T0 + 2 * DAY + 50)
    return app, logged_in(app)


def sids(answer: Any) -> list[str]:
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return [call["call_sid"] for call in answer.get_json()["calls"]]


def test_filters(seeded: tuple[Flask, FlaskClient]) -> None:
    _, client = seeded
    assert sids(client.get("/api/calls")) == ["CA3", "CA2", "CA1"]  # test calls listed
    assert sids(client.get("/api/calls?test=0")) == ["CA2", "CA1"]
    assert sids(client.get("/api/calls?test=1")) == ["CA3", "CA2", "CA1"]
    assert sids(client.get("/api/calls?since=2025-12-07&test=0")) == ["CA2"]
    assert sids(client.get("/api/calls?until=2025-12-06&test=0")) == ["CA1"]  # the whole day
    assert sids(client.get(
        "/api/calls?since=2025-12-07T00:00:00%2B01:00&until=2025-12-07&test=0")) == ["CA2"]
    assert sids(client.get("/api/calls?flow=clinic&test=0")) == ["CA2"]
    assert sids(client.get("/api/calls?outcome=resolved&test=0")) == ["CA1"]
    assert sids(client.get("/api/calls?outcome=transferred&test=0")) == ["CA2"]
    assert sids(client.get("/api/calls?q=INVOICE&test=0")) == ["CA1"]
    assert sids(client.get("/api/calls?q=check&test=0")) == ["CA1"]
    assert sids(client.get("/api/calls?q=nobody+said+this&test=0")) == []
    first = client.get("/api/calls?test=0").get_json()["calls"][1]
    assert (first["outcome"], first["mood"], first["summary"]) == (
        "resolved", -0.5, '=HYPERLINK("x")')
    assert set(first) >= {"call_sid", "status", "flow", "node", "caller", "live", "test",
                          "timings"}  # the shape tests outside the project read


def test_pages_follow_next(seeded: tuple[Flask, FlaskClient]) -> None:
    _, client = seeded
    answer = client.get("/api/calls?limit=1&test=1").get_json()
    seen = [call["call_sid"] for call in answer["calls"]]
    while answer["next"]:
        assert "test=1" in answer["next"]
        answer = client.get(answer["next"]).get_json()
        seen += [call["call_sid"] for call in answer["calls"]]
    assert seen == ["CA3", "CA2", "CA1"]
    assert client.get("/api/calls?limit=5").get_json()["next"] is None


@pytest.mark.parametrize(("query", "message"), [
    ("since=yesterday", "since: 'yesterday' is not a date"),
    ("until=2025-13-01", "until:"),
    ("since=" + "9" * 50, "since:"),
    ("since=1e400", "since:"),
    ("since=nan", "since:"),
    ("since=-5", "since: '-5' is out of range"),
    ("until=9999-12-31", "until: '9999-12-31' is"),
    ("since=9999-12-31", "since: '9999-12-31' is out of range"),
    ("until=0001-01-01", "until: '0001-01-01' is out of range"),
    ("since=2025-12-06T25:00", "since:"),
    ("outcome=happy", "outcome: 'happy' is not one of transferred"),
    ("q=" + "x" * 10_000, "q: a search is at most 200 characters"),
    ("limit=lots", "limit must be a number"),
    ("limit=" + "9" * 5000, "limit must be a number"),
    ("before=not-a-cursor", "before: not a cursor"),
    ("test=maybe", "test:"),
    ("flow=" + "f" * 500, "flow: not a flow id"),
])
def test_bad_filters_are_400s(seeded: tuple[Flask, FlaskClient], query: str,
                              message: str) -> None:
    _, client = seeded
    for path in ("/api/calls", "/api/calls.csv"):
        answer = client.get(f"{path}?{query}")
        assert answer.status_code == 400, answer.get_data(as_text=True)
        assert message in answer.get_json()["error"]


def test_a_huge_limit_is_the_largest_page(seeded: tuple[Flask, FlaskClient]) -> None:
    _, client = seeded
    assert sids(client.get("/api/calls?limit=10000000&test=0")) == ["CA2", "CA1"]
    assert sids(client.get("/api/calls?limit=-4&test=0")) == ["CA2"]


def test_csv_export_with_analysis_fields_and_no_formulas(
        seeded: tuple[Flask, FlaskClient]) -> None:
    _, client = seeded
    for path in ("/api/calls.csv?test=1", "/api/calls?format=csv&test=1"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert answer.mimetype == "text/csv"
        rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
        assert [row["call_sid"] for row in rows] == ["CA3", "CA2", "CA1"]
        by_sid = {row["call_sid"]: row for row in rows}
        assert by_sid["CA1"]["field.reason"] == "billing"
        assert by_sid["CA1"]["field.resolved"] == "true"
        assert by_sid["CA1"]["summary"] == "'=HYPERLINK(\"x\")"  # defused
        assert by_sid["CA1"]["mood"] == "-0.5"  # a number stays a number
        assert by_sid["CA2"]["caller"] == "'-15551234"
        assert by_sid["CA2"]["outcome"] == "transferred"
        assert by_sid["CA1"]["started_at"] == "2025-12-06T05:46:40Z"
        assert by_sid["CA3"]["test"] == "scenario"
    paged = client.get("/api/calls.csv?limit=1")
    assert paged.headers["Link"].startswith("</api/calls.csv?limit=1&before=")


def test_overview(seeded: tuple[Flask, FlaskClient]) -> None:
    _, client = seeded
    answer = client.get("/api/overview?since=2025-12-06&until=2025-12-08")
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["calls"] == 2
    assert body["outcomes"]["resolved"] == 1 and body["outcomes"]["transferred"] == 1
    assert [(day["day"], day["calls"]) for day in body["days"]] == [
        ("2025-12-06", 1), ("2025-12-07", 1), ("2025-12-08", 0)]
    assert body["latency"]["turns"] == 2
    assert body["latency"]["first_token"] == {"p50": 0.4, "p90": 0.8}
    with_tests = client.get("/api/overview?since=2025-12-06&until=2025-12-08&test=1&tz=-300")
    assert with_tests.get_json()["calls"] == 3
    local = {day["day"]: day["calls"] for day in with_tests.get_json()["days"]}
    assert local["2025-12-05"] == 0 and local["2025-12-06"] == 1  # CA1 at 00:46 in UTC-5
    page = client.get("/overview")
    assert page.status_code == 200 and 'id="overview-days"' in page.get_data(as_text=True)


@pytest.mark.parametrize("query", ["since=nope", "tz=abc", "tz=5000", "since=4999-12-31",
                                   "until=9999-12-31", "tz=" + "9" * 5000,
                                   "since=2025-12-08&until=2025-12-01",
                                   "since=2020-01-01&until=2025-01-01"])
def test_bad_overview_ranges_are_400s(seeded: tuple[Flask, FlaskClient], query: str) -> None:
    _, client = seeded
    answer = client.get(f"/api/overview?{query}")
    assert answer.status_code == 400 and answer.get_json()["error"]


def test_the_listing_needs_a_login(make_dashboard_app: MakeApp) -> None:
    client = make_dashboard_app().test_client()
    for path in ("/api/calls?outcome=failed", "/api/calls.csv", "/api/overview"):
        assert client.get(path).status_code == 401
    assert client.get("/overview").status_code == 302


def test_a_call_that_ended_before_any_utterance(make_dashboard_app: MakeApp) -> None:
    app = make_dashboard_app()
    call = start_call(app)
    call.hang_up()
    client = logged_in(app)
    (listed,) = client.get("/api/calls").get_json()["calls"]
    assert (listed["call_sid"], listed["outcome"], listed["mood"]) == (
        call.call_sid, "abandoned", None)
    assert client.get("/api/calls?q=hello").get_json()["calls"] == []
    rows = list(csv.DictReader(io.StringIO(client.get("/api/calls.csv").get_data(as_text=True))))
    assert [row["outcome"] for row in rows] == ["abandoned"]
