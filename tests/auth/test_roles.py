"""Roles on every route: each route of the app's url_map has a declared role (or is public or
Twilio's), and each role may use exactly the routes at or below it, refused otherwise with 403
(JSON for APIs, a page for pages) and an audit entry; the Pusher channel authorization and the
event stream included. The password login is admin."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.web.app import create_app
from engine.web.auth import CookieSessions
from engine.web.roles import ROLE_KEY, ROUTE_ROLES, Role, route_kind
from tests.auth.conftest import PASSWORD, ROOT

CSRF = "csrf-token-for-tests"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    # A copy of the project's flows: an editor's requests must not write into the checkout.
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    made = create_app({"PROJECT_ROOT": str(tmp_path), "STORE_URL": "sqlite://",
                       "DASHBOARD_PASSWORD": PASSWORD, "SECRET_KEY": "roles-tests",
                       "TESTING": True, "PUSHER_APP_ID": "1234", "PUSHER_KEY": "key",
                       "PUSHER_SECRET": "secret", "PUSHER_CLUSTER": "eu",
                       "PUSHER_CHANNELS": "private", "LOGIN_RATE_LIMIT": "off",
                       "API_RATE_LIMIT": "off", "PUBLISHER": False})
    yield made
    made.extensions["phoney"].store.close()


def signed_in(app: Flask, role: Role | str | None) -> FlaskClient:
    """A client whose session has signed in with `role` (a name Phoney does not know too), as
    a sign-in leaves it."""
    client = app.test_client()
    if role is None:
        return client
    interface = app.session_interface
    assert isinstance(interface, CookieSessions) and interface.sessions is not None
    with client.session_transaction() as state:
        name = role.label if isinstance(role, Role) else role
        state.update({"user": f"{name}@example.com", ROLE_KEY: name, "csrf": CSRF})
        state.permanent = True
        interface.sessions.start(state)
    return client


def test_every_route_has_a_declared_role(app: Flask) -> None:
    kinds = {rule.endpoint: route_kind(rule.endpoint, app) for rule in app.url_map.iter_rules()}
    assert [endpoint for endpoint, kind in kinds.items() if kind == "undeclared"] == []
    assert set(ROUTE_ROLES) <= set(kinds), "ROUTE_ROLES names routes the app does not have"
    assert kinds["audit.audit_api"] == "admin" and kinds["media.audio"] == "twilio"


def test_an_undeclared_route_is_refused_to_everyone(app: Flask) -> None:
    app.add_url_rule("/forgotten", "forgotten", lambda: "secret")
    answer = signed_in(app, Role.ADMIN).get("/forgotten")
    assert answer.status_code == 403 and "no role declared" in answer.text


REQUESTS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "auth.session_info": ("GET", "/api/session", None),
    "events_api.live_info": ("GET", "/api/live", None),
    "events_api.pusher_auth": ("POST", "/pusher/auth", None),
    "dashboard.index": ("GET", "/", None),
    "dashboard.call_page": ("GET", "/calls/CA1", None),
    "dashboard.transfer_targets": ("GET", "/api/calls/CA1/transfer-targets", None),
    "calls_api.list_calls": ("GET", "/api/calls", None),
    "calls_api.get_call": ("GET", "/api/calls/CA1", None),
    "calls_api.overview_page": ("GET", "/overview", None),
    "calls_api.overview": ("GET", "/api/overview", None),
    "control.transfer_call": ("POST", "/api/transfer-call", {"CallSid": "CA1", "to": "+1555"}),
    "control.end_call": ("POST", "/api/end-call", {"CallSid": "CA1"}),
    "outbound_api.place_call": ("POST", "/api/calls", {}),
    "outbound_api.stop_campaign": ("POST", "/api/campaigns/nope/stop", {}),
    "outbound_api.list_campaigns": ("GET", "/api/campaigns", None),
    "outbound_api.campaigns_page": ("GET", "/campaigns", None),
    "flows_api.list_flows": ("GET", "/api/flows", None),
    "flows_api.flow_graph": ("GET", "/api/flows/receptionist/graph", None),
    "editor.flows_page": ("GET", "/flows", None),
    "editor.editor_page": ("GET", "/flows/receptionist", None),
    "editor_api.validate": ("POST", "/api/flows/validate", {"yaml": "flow: x"}),
    "editor_api.apply": ("POST", "/api/flows/apply", {}),
    "editor_api.source": ("GET", "/api/flows/receptionist/source", None),
    "editor_api.revisions": ("GET", "/api/flows/receptionist/revisions", None),
    "editor_api.flow_traffic": ("GET", "/api/flows/receptionist/traffic", None),
    "editor_api.schema": ("GET", "/api/flows/schema", None),
    "editor_api.templates": ("GET", "/api/flows/templates", None),
    "editor_try.ring": ("POST", "/api/flows/no_such_flow/calls", {}),
    "editor_try.move": ("POST", "/api/flows/no_such_flow/calls/CA1", {}),
    "editor_try.run": ("POST", "/api/flows/no_such_flow/scenarios", {}),
    "editor_api.save": ("PUT", "/api/flows/receptionist", {}),
    "editor_api.create": ("POST", "/api/flows", {"flow": "Not An Id"}),
    "editor_api.restore": ("POST", "/api/flows/receptionist/revisions/999/restore", {}),
    "audit.audit_api": ("GET", "/api/audit", None),
    "audit.audit_page": ("GET", "/audit", None),
    "audit.settings_api": ("GET", "/api/settings", None),
}
"""A request to each route (the event stream apart, below), none that changes anything."""


def test_the_table_of_requests_covers_every_route() -> None:
    missing = set(ROUTE_ROLES) - set(REQUESTS) - {"events_api.stream_events"}
    assert not missing, f"add a request that changes nothing to REQUESTS for: {sorted(missing)}"
    assert set(REQUESTS) <= set(ROUTE_ROLES)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_may_use_the_routes_at_or_below_it_and_no_other(app: Flask,
                                                                  role: Role) -> None:
    client = signed_in(app, role)
    for endpoint, (method, path, body) in REQUESTS.items():
        answer = client.open(path, method=method, json=body, headers={"X-CSRF-Token": CSRF})
        refused = answer.status_code == 403 and "may not do this" in answer.text
        assert refused == (role < ROUTE_ROLES[endpoint]), (role, endpoint, answer.status_code,
                                                           answer.text[:200])
        if refused and path.startswith("/api/"):
            assert answer.json == {"error": f"Your role ({role.label}) may not do this: it "
                                            f"needs {ROUTE_ROLES[endpoint].label}."}
        elif refused:
            assert "text/html" in answer.content_type and "needs" in answer.text
    entries = app.extensions["phoney"].store.audit_entries(500)
    refusals = [entry for entry in entries if entry.action == "request.refused"]
    assert len(refusals) == sum(role < ROUTE_ROLES[endpoint] for endpoint in REQUESTS)
    assert all(entry.role == role.label and entry.outcome == "refused" for entry in refusals)


def test_without_a_role_nothing_but_signing_in_is_open(app: Flask) -> None:
    anonymous, unknown = signed_in(app, None), signed_in(app, "superuser")
    for method, path, body in [*REQUESTS.values(), ("GET", "/api/events", None)]:
        for client in (anonymous, unknown):
            answer = client.open(path, method=method, json=body,
                                 headers={"X-CSRF-Token": CSRF})
            if path.startswith(("/api/", "/pusher/")):
                assert answer.status_code == 401, (path, answer.status_code)
            else:
                assert answer.status_code == 302 and "/login" in answer.headers["Location"]
    assert anonymous.get("/login").status_code == 200
    assert anonymous.get("/healthz").status_code == 200


def test_the_event_stream_and_pusher_channels_are_a_viewers(app: Flask) -> None:
    viewer = signed_in(app, Role.VIEWER)
    stream = viewer.get("/api/events", buffered=False)
    try:
        assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    finally:
        stream.close()
    signed = viewer.post("/pusher/auth", data={"socket_id": "1234.5678",
                                               "channel_name": "private-calls"})
    assert signed.status_code == 200 and signed.json["auth"].startswith("key:")


def test_the_password_is_the_owners_and_signs_in_as_admin(app: Flask) -> None:
    client = app.test_client()
    assert client.post("/login", data={"password": "wrong"}).status_code == 401
    assert client.post("/login", data={"password": PASSWORD}).status_code == 302
    assert client.get("/api/session").json["role"] == "admin"
    assert client.get("/api/audit").status_code == 200
    failed, done = app.extensions["phoney"].store.audit_entries(2)[::-1]
    assert (failed.action, failed.outcome, failed.what) == (
        "sign-in.failed", "refused", {"method": "password", "reason": "wrong password"})
    assert (done.action, done.who, done.role) == ("sign-in", "admin", "admin")
    assert PASSWORD not in str([entry.as_json() for entry in
                                app.extensions["phoney"].store.audit_entries()])
