"""Campaigns against the Twilio API double, on a clock the test drives: pacing, concurrency,
retries of busy and unanswered calls, quiet hours in each callee's time zone, the do-not-call
list, bad rows of the CSV, Twilio's refusals, and a stop followed by a resume from the store."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from engine.outbound.campaign import (
    Campaign,
    CampaignRunner,
    campaign_id,
    campaigns,
    load,
    request_stop,
)
from engine.outbound.campaign_file import CampaignFileError, read_rows
from engine.outbound.numbers import DoNotCall
from engine.outbound.quiet import QuietHours
from engine.web.outbound_api import dialer
from tests.outbound.conftest import dashboard, make_app
from tests.support_twilio_api import TwilioApiDouble

CHICAGO = ZoneInfo("America/Chicago")
WEDNESDAY_10 = datetime(2026, 3, 4, 10, 0, tzinfo=CHICAGO).timestamp()


class Clock:
    """Time that passes only when the runner sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        self.now += seconds


def numbers(count: int) -> list[str]:
    return [f"+1555010{index:04d}" for index in range(count)]


def csv_of(rows: list[str], header: str = "to,name") -> str:
    return "\n".join([header, *rows]) + "\n"


def runner(app: Flask, text: str, clock: Clock, *, rate: float = 600.0, concurrency: int = 5,
           retries: int = 2, retry_delay: float = 600.0, quiet: str = "off",
           do_not_call: DoNotCall | None = None, **options: Any) -> CampaignRunner:
    svc = app.extensions["phoney"]
    rows = read_rows(text, do_not_call or DoNotCall())
    campaign = Campaign(campaign_id("reminder", text), "reminder", "people.csv", rate,
                        concurrency, retries, retry_delay, clock(), rows=rows)
    return CampaignRunner(campaign, dialer(svc), svc.store, default_zone="America/Chicago",
                          quiet=QuietHours.parse(quiet), clock=clock, sleep=clock.sleep,
                          poll=2.0, **options)


@pytest.fixture
def app(tmp_path: Path, api: TwilioApiDouble) -> Flask:
    return make_app(tmp_path, api)


def test_calls_are_paced_at_the_rate(app: Flask, api: TwilioApiDouble) -> None:
    clock = Clock(WEDNESDAY_10)
    run = runner(app, csv_of([f"{n},Ada" for n in numbers(4)]), clock, rate=6)
    ended = run.run()
    assert ended.status == "done" and ended.counts() == {"done": 4}
    placed = [row.placed_at[0] for row in ended.rows]
    assert [round(b - a, 3) for a, b in itertools.pairwise(placed)] == [10.0] * 3
    assert [c.to for c in api.created] == numbers(4)
    assert all(c.form.get("MachineDetection") == "DetectMessageEnd" for c in api.creations())


def test_no_more_calls_at_once_than_the_concurrency(app: Flask, api: TwilioApiDouble) -> None:
    clock = Clock(WEDNESDAY_10)
    ended = runner(app, csv_of([f"{n},Bo" for n in numbers(7)]), clock, concurrency=2).run()
    assert ended.counts() == {"done": 7}
    assert api.most_at_once() == 2  # reached, never passed


def test_busy_and_unanswered_calls_are_tried_again_a_bounded_number_of_times(
        app: Flask, api: TwilioApiDouble) -> None:
    patient, busy, broken = numbers(3)
    api.add_outcome(patient, "busy", "no-answer", "completed")
    api.add_outcome(busy, "busy", "busy", "busy", "completed")
    api.add_outcome(broken, "failed")
    clock = Clock(WEDNESDAY_10)
    ended = runner(app, csv_of([f"{patient},A", f"{busy},B", f"{broken},C"]), clock,
                   retries=2, retry_delay=900).run()
    rows = {row.to: row for row in ended.rows}
    assert (rows[patient].state, rows[patient].attempts) == ("done", 3)
    gaps = [b - a for a, b in zip(rows[patient].placed_at, rows[patient].placed_at[1:],
                                  strict=False)]
    assert all(gap >= 900 for gap in gaps), gaps
    assert (rows[busy].state, rows[busy].attempts, rows[busy].why) == (
        "failed", 3, "the call ended busy")
    assert (rows[broken].state, rows[broken].attempts) == ("failed", 1)
    assert [c.to for c in api.created].count(busy) == 3  # its fourth outcome never asked for


def test_quiet_hours_follow_each_callees_time_zone(app: Flask, api: TwilioApiDouble) -> None:
    ten_pm = datetime(2026, 3, 4, 22, 0, tzinfo=CHICAGO).timestamp()
    chicago, tokyo, default = numbers(3)
    text = csv_of([f"{chicago},A,America/Chicago", f"{tokyo},B,Asia/Tokyo", f"{default},C,"],
                  header="to,name,timezone")
    clock = Clock(ten_pm)
    ended = runner(app, text, clock, quiet="21:00-08:00").run()
    rows = {row.to: row for row in ended.rows}
    assert rows[tokyo].placed_at == [ten_pm]  # 1 pm in Tokyo
    eight_am = datetime(2026, 3, 5, 8, 0, tzinfo=CHICAGO).timestamp()
    assert rows[chicago].placed_at[0] >= eight_am
    assert rows[default].placed_at[0] >= eight_am  # no timezone: the flow's (Chicago)
    for row in (rows[chicago], rows[default]):
        local = datetime.fromtimestamp(row.placed_at[0], CHICAGO)
        assert local.hour == 8  # when the quiet hours end, not hours later
    assert ended.counts() == {"done": 3}


def test_bad_rows_duplicates_and_the_do_not_call_list_are_reported_and_skipped(
        tmp_path: Path, app: Flask, api: TwilioApiDouble) -> None:
    (tmp_path / "dnc.txt").write_text("+1 555 010 0002  # asked us not to call\n")
    first, second, listed = numbers(3)
    text = csv_of([f"{first},A", "555-0100,B", f"{second},C", "+1 (555) 010-0000,D",
                   f"{listed},E", "", "not a number,F", f"{second},G,Mars/Olympus"],
                  header="to,name,timezone")
    rows = read_rows(text, DoNotCall(tmp_path / "dnc.txt"))
    skipped = [(row.line, row.why) for row in rows if row.state == "skipped"]
    assert skipped == [
        (3, "to '555-0100' is not a phone number: write it in E.164, a + and 7 to 15 digits, "
            "such as +15550001111"),
        (5, f"{first} repeats line 2"),
        (6, f"{listed} is on the do-not-call list"),
        (8, "to 'not a number' is not a phone number: write it in E.164, a + and 7 to 15 "
            "digits, such as +15550001111"),
        (9, "unknown time zone 'Mars/Olympus': write an IANA name such as America/New_York"),
    ]
    assert [row.to for row in rows if row.state == "pending"] == [first, second]
    assert rows[0].vars == {"name": "A"}
    clock = Clock(WEDNESDAY_10)
    run = runner(app, text, clock, do_not_call=DoNotCall(tmp_path / "dnc.txt"))
    ended = run.run()
    assert ended.counts() == {"done": 2, "skipped": 5}
    assert sorted(c.to for c in api.created) == [first, second]
    with pytest.raises(CampaignFileError, match="no `to` column"):
        read_rows("phone,name\n+15550100000,A\n", DoNotCall())
    with pytest.raises(CampaignFileError, match="column 'first name' cannot be a var name"):
        read_rows("to,first name\n+15550100000,A\n", DoNotCall())
    with pytest.raises(CampaignFileError, match="the file is empty"):
        read_rows("", DoNotCall())


def test_twilios_refusal_fails_the_row_and_the_campaign_goes_on(
        app: Flask, api: TwilioApiDouble) -> None:
    bad, good = numbers(2)
    api.refuse(bad, 400, 21211, f"Invalid 'To' Phone Number: {bad}")
    ended = runner(app, csv_of([f"{bad},A", f"{good},B"]), Clock(WEDNESDAY_10)).run()
    rows = {row.to: row for row in ended.rows}
    assert (rows[bad].state, rows[bad].attempts) == ("failed", 1)
    assert rows[bad].why == (f"Twilio refused the call to {bad}: Invalid 'To' Phone Number: "
                             f"{bad} (code 21211)")
    assert rows[good].state == "done"


def test_a_stopped_campaign_resumes_from_the_store(app: Flask, api: TwilioApiDouble) -> None:
    store = app.extensions["phoney"].store
    text = csv_of([f"{n},A" for n in numbers(5)])
    clock = Clock(WEDNESDAY_10)
    stop_after: list[str] = []

    def said(line: str) -> None:  # stop once the second call is placed, as campaign-stop does
        if "calling" in line:
            stop_after.append(line)
            if len(stop_after) == 2:
                assert request_stop(store, campaign_id("reminder", text))

    first = runner(app, text, clock, rate=6, said=said).run()
    assert first.status == "stopped"
    stored = load(store, first.id)
    assert stored is not None and stored.status == "stopped"
    assert [row.state for row in stored.rows].count("pending") == 3
    calling = [row.to for row in stored.rows if row.state == "calling"]
    assert calling  # under way when it stopped: looked up again on resume

    # A new process: the campaign read back from the store, run again.
    svc = app.extensions["phoney"]
    again = CampaignRunner(stored, dialer(svc), store, default_zone="America/Chicago",
                           quiet=QuietHours.parse("off"), clock=clock, sleep=clock.sleep)
    ended = again.run()
    assert ended.status == "done" and ended.counts() == {"done": 5}
    assert sorted(c.to for c in api.created) == numbers(5)  # nobody called twice
    assert load(store, first.id).status == "done"  # type: ignore[union-attr]


def test_an_interrupt_stops_it_with_its_progress_kept(app: Flask, api: TwilioApiDouble) -> None:
    store = app.extensions["phoney"].store
    clock = Clock(WEDNESDAY_10)

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    run = runner(app, csv_of([f"{n},A" for n in numbers(3)]), clock, rate=1)
    run.sleep = interrupted
    ended = run.run()
    assert ended.status == "stopped"
    kept = load(store, ended.id)
    assert kept is not None and kept.status == "stopped" and len(api.created) == 1
    assert [row.state for row in kept.rows] == ["calling", "pending", "pending"]


def test_the_commands_and_the_dashboard(tmp_path: Path, api: TwilioApiDouble) -> None:
    app = make_app(tmp_path, api, QUIET_HOURS="off")
    people = tmp_path / "people.csv"
    a, b = numbers(2)
    people.write_text(csv_of([f"{a},Ada", "12,Bad", f"{b},Bo"]))
    cli = app.test_cli_runner()
    result = cli.invoke(args=["calls", "campaign", "reminder", str(people), "--rate", "600/min",
                              "--concurrency", "2", "--retry-delay", "0s", "--poll", "0.01"])
    assert result.exit_code == 0, result.output
    ident = campaign_id("reminder", people.read_text())
    assert f"{people}:3: skipped: to '12' is not a phone number" in result.output
    assert f"campaign {ident}: done (2 done, 1 skipped)" in result.output
    again = cli.invoke(args=["calls", "campaign", "reminder", str(people), "--poll", "0.01"])
    assert f"campaign {ident}: resuming (2 done, 1 skipped)" in again.output
    assert len(api.created) == 2

    client, csrf = dashboard(app)
    [summary] = client.get("/api/campaigns").get_json()["campaigns"]
    assert (summary["id"], summary["status"], summary["counts"], summary["progress"]) == (
        ident, "done", {"done": 2, "skipped": 1}, 100.0)
    assert summary["skipped"][0]["line"] == 3
    page = client.get("/campaigns").get_data(as_text=True)
    assert ident in page and "is not a phone number" in page

    assert client.post(f"/api/campaigns/{ident}/stop").status_code == 403  # no CSRF token
    stopped = client.post(f"/api/campaigns/{ident}/stop", headers={"X-CSRF-Token": csrf})
    assert stopped.status_code == 200 and stopped.get_json()["campaign"]["stop_requested"]
    assert client.post("/api/campaigns/nope/stop",
                       headers={"X-CSRF-Token": csrf}).status_code == 404
    unknown = cli.invoke(args=["calls", "campaign-stop", "nope"])
    assert unknown.exit_code == 1 and "unknown campaign 'nope'" in unknown.output
    assert cli.invoke(args=["calls", "campaign-stop", ident]).exit_code == 0
    listed = cli.invoke(args=["calls", "campaigns"])
    assert ident in listed.output
    assert [c.id for c in campaigns(app.extensions["phoney"].store)] == [ident]
    bad = cli.invoke(args=["calls", "campaign", "reminder", str(people), "--rate", "fast"])
    assert bad.exit_code == 2 and "write calls a minute" in bad.output


def test_numbers_and_vars_are_sealed_with_an_encryption_key(tmp_path: Path,
                                                           api: TwilioApiDouble) -> None:
    key = "KySI1a0JOfXgMWbDZeGSiezisekxI6reCfrtS6HAd6w="
    app = make_app(tmp_path, api, ENCRYPTION_KEY=key)
    store = app.extensions["phoney"].store
    number = numbers(1)[0]
    ended = runner(app, csv_of([f"{number},Lovelace"]), Clock(WEDNESDAY_10)).run()
    assert ended.counts() == {"done": 1} and load(store, ended.id) is not None
    [created] = api.created
    inner = store.inner
    for raw in (inner.get_blob(f"outbound:campaign:{ended.id}"),
                inner.get_blob(f"outbound:placed:{created.sid}")):
        assert raw is not None and b"Lovelace" not in raw and number.encode() not in raw
