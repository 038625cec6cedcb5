"""The owners' dashboard in Chromium: the calls list with outcome, summary and mood, its filters
and transcript search (test calls hidden until asked for), the call page's sentiment curve and
recording link, and the overview page.

`PHONEY_UPDATE_SCREENSHOT=1` also writes the pictures to docs/ (dashboard-calls.png,
dashboard-call-mood.png, dashboard-overview.png); otherwise they go to the test's tmp_path only.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engine.calls.test_calls import mark_test_call
from engine.simulator import SimulatedCall
from engine.web.after_call import EXTENSION
from tests.dashboard.conftest import AUTH_TOKEN, ROOT, LiveServer
from tests.dashboard.test_dashboard_browser import browser_page, http, sign_in, wait_live

TRIAGE = "+15550003000"  # flows/support_triage.yaml


@pytest.fixture
def server(make_dashboard_app: Callable[..., Flask]) -> Iterator[LiveServer]:
    app = make_dashboard_app(ANALYSIS=True, ANALYSIS_OPTIONS={"poll_interval": 0.02})
    try:
        with LiveServer(app) as live:
            yield live
    finally:
        app.extensions[EXTENSION].stop()


def _shot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=False)
    if os.environ.get("PHONEY_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, ROOT / "docs" / name)


def _voicemail(server: LiveServer) -> SimulatedCall:
    call = SimulatedCall(http, server.url, AUTH_TOKEN, to=TRIAGE, from_="+15557770001").start()
    call.say("I want to ask about sales and pricing please")
    call.dial_ends("busy")
    call.record(14)
    call.hang_up()
    return call


def _moody(server: LiveServer) -> SimulatedCall:
    call = SimulatedCall(http, server.url, AUTH_TOKEN, to=TRIAGE, from_="+15557770002").start()
    call.say("This is terrible, nothing works and I am so frustrated")
    call.say("Okay, thank you, that is really great and helpful")
    call.hang_up()
    return call


def test_the_list_filters_searches_and_hides_test_calls(chromium: Any, server: LiveServer,
                                                        tmp_path: Path) -> None:
    voicemail, moody = _voicemail(server), _moody(server)
    test = SimulatedCall(http, server.url, AUTH_TOKEN, to=TRIAGE, from_="+15557770003").start()
    found = server.app.extensions["phoney"]
    mark_test_call(found.recorder, test.call_sid, "scenario", time.time())
    test.hang_up()
    rows = {sid: f"#calls-body tr[data-call-sid={sid}]"
            for sid in (voicemail.call_sid, moody.call_sid, test.call_sid)}
    with browser_page(chromium, server) as page:
        sign_in(page, server)
        wait_live(page)
        page.wait_for_selector(f"{rows[voicemail.call_sid]} .pill.outcome[data-outcome=voicemail]")
        page.wait_for_selector(f"{rows[moody.call_sid]} td.mood[data-mood]")
        # The summary comes with the analysis, after the call ended.
        page.wait_for_function("s => (document.querySelector(s + ' td.summary') || {}).textContent"
                               " .includes('spoke 2 times')", arg=rows[moody.call_sid])
        assert page.query_selector(rows[test.call_sid]) is None  # hidden by default
        assert not page.is_checked("#show-test-calls")
        started = page.text_content(f"{rows[voicemail.call_sid]} td.started") or ""
        assert ":" in started and started != "–"
        assert "happy" in (page.text_content(f"{rows[moody.call_sid]} td.mood") or "") or (
            "neutral" in (page.text_content(f"{rows[moody.call_sid]} td.mood") or ""))
        _shot(page, tmp_path, "dashboard-calls.png")

        page.select_option("#calls-filters select[name=outcome]", "voicemail")
        page.click("#calls-filters button[type=submit]")
        page.wait_for_selector(rows[moody.call_sid], state="detached")
        assert page.is_visible(rows[voicemail.call_sid])
        assert "outcome=voicemail" in page.url
        assert "outcome=voicemail" in (page.get_attribute("#calls-csv", "href") or "")

        page.select_option("#calls-filters select[name=outcome]", "")
        page.fill("#calls-filters input[name=q]", "FRUSTRATED")
        page.click("#calls-filters button[type=submit]")
        page.wait_for_selector(rows[voicemail.call_sid], state="detached")
        assert page.is_visible(rows[moody.call_sid])

        page.click("#calls-filters button[type=reset]")
        page.check("#show-test-calls")
        page.wait_for_selector(f"{rows[test.call_sid]} .badge.test")
        assert page.is_visible(rows[voicemail.call_sid])

        page.fill("#calls-filters input[name=since]", "2001-01-01")
        page.fill("#calls-filters input[name=until]", "2001-01-02")
        page.click("#calls-filters button[type=submit]")
        page.wait_for_selector("#calls-empty", state="visible")
        assert page.query_selector_all("#calls-body tr") == []


def test_the_call_page_draws_the_mood_and_links_the_recording(
        chromium: Any, server: LiveServer, tmp_path: Path) -> None:
    voicemail = _voicemail(server)
    with browser_page(chromium, server) as page:
        sign_in(page, server)
        page.goto(f"{server.url}/calls/{voicemail.call_sid}")
        wait_live(page)
        link = page.wait_for_selector("#recordings a")
        assert link is not None
        assert (link.get_attribute("href") or "").startswith("https://api.twilio.com/")
        assert "0:14" in (link.text_content() or "")
        assert page.is_hidden("#recordings-empty")

        call = SimulatedCall(http, server.url, AUTH_TOKEN, to=TRIAGE).start()
        page.goto(f"{server.url}/calls/{call.call_sid}")
        wait_live(page)
        assert page.is_visible("#mood-empty")
        call.say("This is terrible, nothing works and I am so frustrated")
        page.wait_for_selector("#mood-chart[data-points='1'] svg circle")  # live
        call.say("Okay, thank you, that is really great and helpful")
        page.wait_for_selector("#mood-chart[data-points='2']")
        dots = page.query_selector_all("#mood-chart svg circle.dot")
        ys = [float(dot.get_attribute("cy") or 0) for dot in dots]
        assert len(ys) == 2 and ys[0] > ys[1]  # the mood rose: the second dot is higher
        titles = [dot.text_content() or "" for dot in dots]
        assert titles[0].startswith("utterance 1: -")
        assert page.query_selector("#transcript .timing") is not None  # per-turn latency
        call.hang_up()
        page.wait_for_selector("#analysis-status[data-status=offline]")
        page.reload()  # drawn again from the stored events
        page.wait_for_selector("#mood-chart[data-points='2']")
        _shot(page, tmp_path, "dashboard-call-mood.png")


def test_the_overview_counts_calls_and_outcomes(chromium: Any, server: LiveServer,
                                                tmp_path: Path) -> None:
    _voicemail(server)
    _moody(server)
    with browser_page(chromium, server) as page:
        sign_in(page, server)
        page.click("#overview-link")
        page.wait_for_url("**/overview")
        wait_live(page)
        page.wait_for_function("() => document.getElementById('overview-calls').textContent"
                               " === '2'")
        voicemail = page.text_content("#overview-outcomes tr[data-outcome=voicemail] .count")
        assert voicemail == "1"
        assert page.get_attribute("#overview-days", "data-days") == "30"
        bars = page.query_selector_all("#overview-days svg rect.bar")
        assert len(bars) == 30
        assert "2 calls" in (bars[-1].text_content() or "")
        assert page.text_content("#overview-latency tr[data-key=answer] .p50") != "–"
        _moody(server)  # live: it loads again when a call ends
        page.wait_for_function("() => document.getElementById('overview-calls').textContent"
                               " === '3'")
        _shot(page, tmp_path, "dashboard-overview.png")
