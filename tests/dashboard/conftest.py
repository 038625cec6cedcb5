"""Fixtures for the dashboard tests: an app with call control pointed at the Twilio REST double,
served over real HTTP, and (for the browser tests) Debian's Chromium driven by Playwright."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from engine.settings import ENV_KEYS
from engine.web.app import create_app
from engine.web.events_api import EXTENSION, LiveEvents
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, tools_required  # noqa: F401 (used here)
from tests.support_twilio_api import TwilioApiDouble

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "5f1c0ffee0ddba11c0ffee0ddba11c0f"
PASSWORD = "dashboard-pw"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment first: keep a developer's own settings out of the tests."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def twilio_api() -> Iterator[TwilioApiDouble]:
    with TwilioApiDouble(ACCOUNT_SID, AUTH_TOKEN, any_call=True) as double:
        yield double


@pytest.fixture
def make_dashboard_app(tmp_path: Path,
                       twilio_api: TwilioApiDouble) -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        config: dict[str, Any] = {
            "PROJECT_ROOT": str(ROOT), "STORE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_URL": twilio_api.url, "DASHBOARD_PASSWORD": PASSWORD,
            "SECRET_KEY": "dashboard-test-secret", "TESTING": True,
            # A stream finds out its browser has gone when it next writes: soon, so teardown
            # does not wait long for the streams to end before closing their store.
            "SSE_HEARTBEAT": 0.25, **overrides,
        }
        app = create_app({key: value for key, value in config.items() if value is not None})
        made.append(app)
        return app

    yield make
    for app in made:
        live = app.extensions.get(EXTENSION)
        if isinstance(live, LiveEvents):
            if live.publisher is not None:
                live.publisher.stop(timeout=2.0)  # before its store goes
            # Server-sent event streams read the store from their own threads until they end.
            deadline = time.monotonic() + 10
            while live.open_streams and time.monotonic() < deadline:
                time.sleep(0.05)
            assert live.open_streams == 0, "an event stream outlived its browser"
        app.extensions["phoney"].store.close()


class LiveServer:
    """`app` over HTTP on 127.0.0.1, a thread per request (server-sent events hold one)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.server.daemon_threads = True  # type: ignore[attr-defined]  # open event streams
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       name="dashboard-live-server", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


