"""The call page shows the call's post-call analysis (a `call.analysis` event): its status, the
summary and each field, as text, live when it arrives after the page was opened."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from engine.simulator import SimulatedCall
from engine.web.after_call import EXTENSION
from tests.dashboard.conftest import AUTH_TOKEN, LiveServer
from tests.dashboard.test_dashboard_browser import browser_page, http, sign_in, wait_live

TRIAGE = "+15550003000"


@pytest.fixture
def server(make_dashboard_app: Callable[..., Flask]) -> Iterator[LiveServer]:
    app = make_dashboard_app(ANALYSIS=True, ANALYSIS_OPTIONS={"poll_interval": 0.02})
    try:
        with LiveServer(app) as live:
            yield live
    finally:
        app.extensions[EXTENSION].stop()


def test_the_analysis_appears_on_the_call_page_as_text(chromium: Any,
                                                      server: LiveServer) -> None:
    with browser_page(chromium, server) as page:
        sign_in(page, server)
        call = SimulatedCall(http, server.url, AUTH_TOKEN, to=TRIAGE).start()
        page.goto(f"{server.url}/calls/{call.call_sid}")
        wait_live(page)
        assert page.is_hidden("#analysis")  # not before the call has ended
        markup = "<img src=x id=injected> my bill"
        call.say(markup)
        call.hang_up()
        page.wait_for_selector("#analysis-status[data-status=offline]")
        summary = page.text_content("#analysis-summary") or ""
        assert "the caller spoke 1 time" in summary and markup in summary
        assert page.query_selector("#injected") is None
        fields = page.text_content("#analysis-fields") or ""
        assert "reason" in fields and "callback requested" in fields and "not known" in fields
        assert "no model configured" in (page.text_content("#analysis-reason") or "")
        page.reload()  # from the stored events, not only live
        page.wait_for_selector("#analysis-status[data-status=offline]")
