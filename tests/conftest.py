"""Shared fixtures: the app on a temporary store, the same app over real HTTP, simulated calls.

    def test_something(call):
        c = call(to="+15550003000").start()   # a SimulatedCall against the live server
        c.press("2")

`app` uses the bundled flows and personalities (PROJECT_ROOT is the repository), a SQLite store
in tmp_path, the auth token `tests.support.AUTH_TOKEN` and the settable `clock` (a weekday
morning unless a test moves it). The environment's own settings are kept out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, make_server

from engine.settings import ENV_KEYS
from engine.simulator import SimulatedCall, Transport
from engine.web.app import create_app
from tests.chromium import chromium  # noqa: F401 (the session's one browser, for every test)
from tests.support import AUTH_TOKEN, Clock, client_transport, requests_transport

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment first: keep a developer's own settings out of the tests."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app_config(tmp_path: Path) -> dict[str, Any]:
    """The config `app` is made with; a test may change it before asking for `app`."""
    return {
        "PROJECT_ROOT": str(ROOT), "STORE_URL": f"sqlite:///{tmp_path / 'phoney.db'}",
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "DASHBOARD_PASSWORD": "test-password",
        "SECRET_KEY": "test-secret", "TESTING": True,
    }


@pytest.fixture
def make_app(clean_environment: None, app_config: dict[str, Any],
             clock: Clock) -> Iterator[Callable[..., Flask]]:
    """More apps on the same store (a restart, a second server process), closed at the end.

    `make(ports={...}, **config)`: `ports` are the call service's ports to hand in instead of
    what the settings build (engine/bootstrap.py: responder, voicing, store, ...)."""
    made: list[Flask] = []

    def make(ports: dict[str, Any] | None = None, **overrides: Any) -> Flask:
        created = create_app({**app_config, **overrides}, clock=clock, **(ports or {}))
        made.append(created)
        return created

    yield make
    for each in made:
        each.extensions["phoney"].store.close()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def inprocess_transport(client: FlaskClient) -> Transport:
    """A simulator transport through `client`; calls made with it use http://localhost."""
    return client_transport(client)


class LiveServer:
    """`app` served over HTTP on 127.0.0.1. `swap(other)` serves another app from the same
    port at once, as a restarted server would (the next request reaches the new one)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval, so shutdown() at the end of every test returns at once.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       name="live-server", daemon=True)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, start_response)

    def swap(self, app: Flask) -> None:
        self.app = app

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    server = LiveServer(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http_transport() -> Transport:
    """A simulator transport over real HTTP (requests)."""
    return requests_transport


@pytest.fixture
def call(live_server: LiveServer,
         http_transport: Transport) -> Callable[..., SimulatedCall]:
    """Make a SimulatedCall against the live server; keyword arguments go to SimulatedCall."""

    def make(**options: Any) -> SimulatedCall:
        return SimulatedCall(http_transport, live_server.url, AUTH_TOKEN, **options)

    return make
