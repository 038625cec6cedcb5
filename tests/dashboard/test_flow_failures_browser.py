"""A condition that fails while the call runs is shown on the call's page, in the errors panel
and the transcript, as what it meant: counted as false (the call took another way)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask

from engine.simulator import SimulatedCall
from tests.dashboard.conftest import AUTH_TOKEN, LiveServer
from tests.dashboard.test_dashboard_browser import ROOT, browser_page, http, sign_in, wait_live

FLOW = """\
flow: sums
personality: friendly
numbers: ["+15550009000"]
vars: {business: Acme, count: 1}
start: check
nodes:
  check:
    type: switch
    routes:
      - when: "vars.count + 'x' == 'y'"
        to: bye
    next: ask
  ask:
    type: gather
    prompt: Say something.
    next: bye
    no_input: {retries: 0, then: bye}
  bye:
    type: hangup
"""


def test_a_failed_condition_shows_on_the_call_page(
        chromium: Any, make_dashboard_app: Callable[..., Flask], tmp_path: Path) -> None:
    shutil.copytree(ROOT / "personalities", tmp_path / "project" / "personalities")
    (tmp_path / "project" / "flows").mkdir()
    (tmp_path / "project" / "flows" / "sums.yaml").write_text(FLOW, encoding="utf-8")
    app = make_dashboard_app(PROJECT_ROOT=str(tmp_path / "project"), DEFAULT_FLOW="sums",
                             SPEECH_WARMUP=False)
    with LiveServer(app) as server, browser_page(chromium, server) as page:
        sign_in(page, server)
        call = SimulatedCall(http, server.url, AUTH_TOKEN, to="+15550009000").start()
        assert call.waiting.kind == "gather"  # the failed route counted as false
        page.goto(f"{server.url}/calls/{call.call_sid}")
        wait_live(page)
        page.wait_for_selector("#errors li.error-entry[data-kind=condition]")
        entry = page.text_content("#errors li.error-entry[data-kind=condition]") or ""
        assert "condition failed at run time, counted as false" in entry
        assert "nodes.check.routes[0].when: TypeError" in entry
        assert "condition failed at run time" in (page.text_content("#transcript") or "")
