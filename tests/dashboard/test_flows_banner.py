"""A refused edit of the flows (hot reload) on the dashboard: a banner with each problem's
file:line and message, drawn with the page and kept up to date while it is open."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engine.web.watcher import FlowWatcher
from tests.dashboard.conftest import LiveServer
from tests.dashboard.test_dashboard_browser import browser_page, sign_in
from tests.dashboard.test_dashboard_pages import logged_in

ROOT = Path(__file__).resolve().parents[2]
GOOD, BAD = "    next: assist\n\n  assist:", "    next: asist\n\n  assist:"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, root / folder)
    return root


def break_receptionist(root: Path, old: str = GOOD, new: str = BAD) -> int:
    """Edit flows/receptionist.yaml; the line of the edit."""
    path = root / "flows" / "receptionist.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text.splitlines().index(old.splitlines()[0]) + 1


def test_the_page_shows_a_refused_edit(make_dashboard_app: Callable[..., Flask],
                                       project: Path) -> None:
    app = make_dashboard_app(PROJECT_ROOT=str(project), RELOAD=False)
    client = logged_in(app)
    watcher = FlowWatcher(app.extensions["phoney"].library)
    assert 'id="flows-refused" role="alert" data-poll-ms="3000" hidden' in \
        client.get("/").get_data(as_text=True)
    line = break_receptionist(project)
    assert watcher.check()
    for path in ("/", f"/calls/CA{'0' * 32}"):
        html = client.get(path).get_data(as_text=True)
        assert 'data-poll-ms="3000" hidden' not in html
        assert f"<code>flows/receptionist.yaml:{line}</code> nodes.greet.next: unknown node " \
               "&#39;asist&#39; (did you mean &#39;assist&#39;?)" in html
        assert "still on the last good version: receptionist" in html
        assert "flows-banner.js" in html


def test_the_banner_comes_and_goes_with_the_edit(make_dashboard_app: Callable[..., Flask],
                                                 project: Path, chromium: Any) -> None:
    app = make_dashboard_app(PROJECT_ROOT=str(project), RELOAD=False)
    watcher = FlowWatcher(app.extensions["phoney"].library)
    with LiveServer(app) as server, browser_page(chromium, server) as page:
        sign_in(page, server)
        assert page.is_hidden("#flows-refused")
        line = break_receptionist(project)
        assert watcher.check()
        page.wait_for_selector("#flows-refused:visible")  # the next poll of /api/flows
        item = page.inner_text("#flows-refused-problems li")
        assert item == (f"flows/receptionist.yaml:{line} nodes.greet.next: unknown node "
                        "'asist' (did you mean 'assist'?)")
        assert "receptionist" in page.inner_text("#flows-refused-held")
        break_receptionist(project, BAD, GOOD)
        assert watcher.check()
        page.wait_for_selector("#flows-refused", state="hidden")
