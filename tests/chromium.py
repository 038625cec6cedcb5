"""Debian's Chromium through Playwright, one browser for the whole test session.

The `chromium` fixture is registered once, in tests/conftest.py: a session fixture imported into
two conftest files is two fixtures, and a second `sync_playwright()` started while the first
still runs fails ("Playwright Sync API inside the asyncio loop") for every browser test after it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


def tools_required() -> bool:
    """Whether a missing tool fails the test run (CI) instead of skipping."""
    return bool(os.environ.get("CI") or os.environ.get("PHONEY_REQUIRE_TOOLS"))


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright (no `playwright install`: it downloads browsers)."""
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        message = (f"{CHROMIUM} is missing: apt-get install chromium (.ci/run and "
                   f"scripts/ensure-tools do when run as root)")
        if tools_required():
            pytest.fail(message)
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "the playwright package is missing: pip install -r requirements-dev.txt"
        if tools_required():
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
