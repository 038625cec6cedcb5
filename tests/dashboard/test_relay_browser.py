"""A relay call on the dashboard, in a real browser (Debian's Chromium, driven by Playwright): the
call converses over ConversationRelay through the project's simulator over a real WebSocket,
with the OpenAI double as the model, while the page shows it live: a relay badge on the call in
the list and on its page, its replies with their relay timings, and the reply the caller talked
over marked with what they heard. Reloaded, the page shows the same from the call's snapshot."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engine.simulator import SimulatedCall
from tests.ai.conftest import events
from tests.dashboard.conftest import AUTH_TOKEN, ROOT, LiveServer
from tests.dashboard.test_dashboard_browser import (
    browser_page,
    http,
    sign_in,
    wait_live,
    wait_until,
)
from tests.doubles.openai_server import OpenAIDouble, Text
from tests.relay.conftest import RELAY_FLOW, RELAY_NUMBER

LONG = "Our hours are eight to five on weekdays and eight to one on Fridays."


@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(api_key="test-key") as server:
        yield server
    assert server.errors == [], "the OpenAI double failed internally"


@pytest.fixture
def served(make_dashboard_app: Callable[..., Flask], tmp_path: Path,
           double: OpenAIDouble) -> Iterator[LiveServer]:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "personalities", project / "personalities")
    (project / "flows").mkdir()
    (project / "flows" / "relay_desk.yaml").write_text(RELAY_FLOW, encoding="utf-8")
    app = make_dashboard_app(PROJECT_ROOT=str(project), OPENAI_API_KEY="test-key",
                             OPENAI_BASE_URL=double.base_url, SPEECH_WARMUP=False)
    with LiveServer(app) as live:
        yield live


def test_a_relay_call_is_badged_and_its_interruption_marked_live(
        chromium: Any, served: LiveServer, double: OpenAIDouble) -> None:
    with browser_page(chromium, served) as page:
        sign_in(page, served)
        c = SimulatedCall(http, served.url, AUTH_TOKEN, to=RELAY_NUMBER).start()
        row = f"#calls-body tr[data-call-sid={c.call_sid}]"
        page.wait_for_selector(row)
        assert page.locator(f"{row} .badge.relay").count() == 0  # not connected yet
        line = c.relay()
        page.wait_for_selector(f"{row} .badge.relay")  # the session's call.relay, live

        page.goto(f"{served.url}/calls/{c.call_sid}")
        wait_live(page)
        assert page.locator("#call-relay").is_visible()

        double.chat(Text("Yes, we do cleanings.", tokens_per_second=40),
                    Text(LONG, tokens_per_second=8))
        assert line.say("do you do cleanings").text == "Yes, we do cleanings."
        whole = page.wait_for_selector(
            ".line.agent[data-kind=response]:has-text('Yes, we do cleanings.') .timing"
            ":has-text('first sent')")
        assert whole is not None and "relay" in whole.inner_text()

        line.say("when are you open", wait=False)
        sent = line.tokens(3)
        heard = " ".join("".join(sent.tokens[:2]).split())  # playing lags behind sending
        line.interrupt(heard, duration_ms=500)
        cut = page.wait_for_selector(".line.agent.interrupted[data-heard] .interruption")
        assert cut is not None and heard in cut.inner_text()
        assert page.locator(".line.agent.interrupted .unheard").count() == 1
        assert page.locator(".line.agent.interrupted").count() == 1  # the first was heard whole
        assert page.locator(".line.system.relay:has-text('relay session connected')").count() \
            == 1

        page.reload()  # the snapshot shows the same
        wait_live(page)
        assert page.locator("#call-relay").is_visible()
        reloaded = page.wait_for_selector(".line.agent.interrupted[data-heard] .interruption")
        assert reloaded is not None and heard in reloaded.inner_text()

        line.close()
        app = served.app
        assert wait_until(lambda: any(e.get("status") == "closed" for e in events(
            app, c.call_sid, "call.relay")))
        page.wait_for_selector(".line.system.relay:has-text('the socket closed')")
        assert c.hang_up().status == 200
