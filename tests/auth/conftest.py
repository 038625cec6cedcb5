"""A real OpenID Connect provider (tools/oidc: the certified oidc-provider under node) and the
dashboard served over HTTP beside it, for the sign-in tests; a browser as the dashboard tests
have it (Debian's Chromium through Playwright).

Without node or tools/oidc's packages (`make tools`) the provider's tests are skipped, saying
so; under CI (or PHONEY_REQUIRE_TOOLS) they fail instead.
"""

from __future__ import annotations

import json
import selectors
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from engine.settings import ENV_KEYS
from engine.store import AuditEntry
from engine.web.app import create_app
from tests.chromium import tools_required

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "oidc"
CLIENT_ID = "phoney-dashboard"
CLIENT_SECRET = "phoney-dashboard-test-secret-0123456789"  # as tools/oidc/provider.mjs has it
PASSWORD = "owner-password"
START_WITHIN = 20.0


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is missing: apt-get install nodejs npm, then make tools"
    if not (TOOL / "node_modules" / "oidc-provider" / "package.json").is_file():
        return "tools/oidc's npm packages are missing: run make tools (npm ci in tools/oidc)"
    return None


class Provider:
    """tools/oidc/provider.mjs, running: `issuer`, and `mode` to alter the ID tokens it issues."""

    def __init__(self, redirect_uri: str, post_logout_uri: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["node", str(TOOL / "provider.mjs"), str(self.port), redirect_uri, post_logout_uri],
            cwd=TOOL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.issuer = self._announced()

    def _announced(self) -> str:
        assert self.process.stdout is not None
        watch = selectors.DefaultSelector()
        watch.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_WITHIN
        while time.monotonic() < deadline:
            if watch.select(timeout=deadline - time.monotonic()):
                line = self.process.stdout.readline()
                if line:
                    return str(json.loads(line)["issuer"])
                break  # it ended
        self.stop()
        errors = self.process.stderr.read() if self.process.stderr else ""
        raise AssertionError(f"the OpenID provider did not start: {errors[-2000:]}")

    def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(
                f"{self.issuer}{path}", data=data, method="POST" if data else "GET",
                headers={"Content-Type": "application/json"}), timeout=10) as answer:
            found: dict[str, Any] = json.loads(answer.read())
            return found

    def mode(self, name: str) -> None:
        """Alter the next ID tokens (see tools/oidc/provider.mjs): expired, forged, ..."""
        assert self.control("/_test/mode", {"mode": name})["mode"] == name

    def served(self) -> dict[str, int]:
        """How many token and JWKS answers the provider gave."""
        return dict(self.control("/_test/served")["served"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


class _Later:
    """A WSGI app set after its server is listening (the provider must know our URL first)."""

    app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class Site:
    """The dashboard at `url`, signing in with `provider`."""

    app: Flask
    url: str
    provider: Provider | None

    def audit(self, action: str | None = None) -> list[AuditEntry]:
        entries = self.app.extensions["phoney"].store.audit_entries(500)
        return [entry for entry in entries if action is None or entry.action == action]


@pytest.fixture
def make_site(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """`make_site(provider=True, **settings)`: the dashboard over HTTP, with OpenID Connect
    against a provider of its own (or, with `provider=False`, the OIDC settings given)."""
    started: list[tuple[BaseWSGIServer, threading.Thread, Provider | None, Flask]] = []

    def make(provider: bool = True, **settings: Any) -> Site:
        later = _Later()
        server = make_server("127.0.0.1", 0, later, threaded=True)
        server.daemon_threads = True  # type: ignore[attr-defined]
        url = f"http://127.0.0.1:{server.server_port}"
        found = None
        if provider:
            missing = _missing()
            if missing is not None:
                server.server_close()
                if tools_required():
                    pytest.fail(missing)
                pytest.skip(missing)
            found = Provider(f"{url}/login/sso/callback", f"{url}/login")
            settings = {"OIDC_ISSUER": found.issuer, "OIDC_CLIENT_ID": CLIENT_ID,
                        "OIDC_CLIENT_SECRET": CLIENT_SECRET, **settings}
        app = create_app({"PROJECT_ROOT": str(ROOT), "STORE_URL": f"sqlite:///{tmp_path / 'p.db'}",
                          "DASHBOARD_PASSWORD": PASSWORD, "SECRET_KEY": "sign-in-tests",
                          "TESTING": True, "SSE_HEARTBEAT": 0.25, "LOGIN_RATE_LIMIT": "off",
                          **settings})
        later.app = app
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        started.append((server, thread, found, app))
        return Site(app, url, found)

    yield make
    for server, thread, found, app in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        if found is not None:
            found.stop()
        app.extensions["phoney"].store.close()


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context's page; the provider's pages' web font is not fetched."""
    context = chromium.new_context()
    context.route("**/fonts.googleapis.com/**", lambda route: route.abort())
    context.set_default_timeout(15000)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Any, site: Site, login: str) -> None:
    """From the dashboard's sign-in page through the provider's login and consent pages, to
    the dashboard."""
    reach_callback(page, site, login)
    page.wait_for_url(lambda url: url.startswith(site.url) and "/callback" not in url)


def reach_callback(page: Any, site: Site, login: str) -> None:
    """As `sign_in`, up to the dashboard's answer to the provider's callback."""
    page.goto(f"{site.url}/login")
    page.click("#sso-login")
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password: the test provider takes any")
    page.click("button.login-submit")
    page.wait_for_url(lambda url: url.startswith(site.url) or "/interaction/" in url)
    if "/interaction/" in page.url and page.locator("input[name=prompt][value=consent]").count():
        page.click("button.login-submit")
    page.wait_for_url(lambda url: url.startswith(site.url))


def api(page: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The page's own fetch of one of our APIs, with the session's CSRF token: its status and
    JSON."""
    return page.evaluate(
        """async ([method, path, body]) => {
             const session = await (await fetch('/api/session')).json();
             const answer = await fetch(path, {method, headers: {'Content-Type':
               'application/json', 'X-CSRF-Token': session.csrf_token || ''},
               body: body === null ? undefined : JSON.stringify(body)});
             let json = null; try { json = await answer.json(); } catch (e) {}
             return {status: answer.status, json};
           }""", [method, path, body])
