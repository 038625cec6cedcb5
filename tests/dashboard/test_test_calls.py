"""Test calls (`flask call`, scenario runs) on the dashboard's list: hidden until "test calls"
is checked, then marked."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from engine.calls.test_calls import mark_test_call
from engine.simulator import SimulatedCall
from tests.dashboard.conftest import AUTH_TOKEN, LiveServer
from tests.dashboard.test_dashboard_browser import browser_page, http, sign_in, wait_live


def test_test_calls_are_marked_and_can_be_hidden(make_dashboard_app: Callable[..., Flask],
                                                 chromium: Any) -> None:
    app = make_dashboard_app()
    found = app.extensions["phoney"]
    with LiveServer(app) as server, browser_page(chromium, server) as page:
        real = SimulatedCall(http, server.url, AUTH_TOKEN, from_="+15557770001").start()
        test = SimulatedCall(http, server.url, AUTH_TOKEN, from_="+15557770002").start()
        mark_test_call(found.recorder, test.call_sid, "flask call", time.time())
        sign_in(page, server)
        real_row = f"tr[data-call-sid='{real.call_sid}']"
        test_row = f"tr[data-call-sid='{test.call_sid}']"
        page.wait_for_selector(real_row)
        assert not page.is_checked("#show-test-calls")  # hidden by default
        assert page.query_selector(test_row) is None
        page.check("#show-test-calls")
        page.wait_for_selector(f"{test_row}.test-call .badge.test")
        assert page.is_visible(test_row) and page.is_visible(real_row)  # shown, marked
        page.uncheck("#show-test-calls")
        page.wait_for_selector(test_row, state="detached")
        assert page.is_visible(real_row)
        page.reload()  # the choice is remembered
        page.wait_for_selector(real_row)
        wait_live(page)
        assert not page.is_checked("#show-test-calls")
        assert page.query_selector(test_row) is None
        live = SimulatedCall(http, server.url, AUTH_TOKEN, from_="+15557770003").start()
        mark_test_call(found.recorder, live.call_sid, "scenario", time.time())
        page.wait_for_selector(f"tr[data-call-sid='{live.call_sid}'].test-call", state="attached")
        assert page.is_hidden(f"tr[data-call-sid='{live.call_sid}']")
        page.check("#show-test-calls")
        page.wait_for_selector(f"tr[data-call-sid='{live.call_sid}'] .badge.test")
        for call in (real, test, live):
            call.hang_up()
