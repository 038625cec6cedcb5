"""Who may do what on the dashboard: the four roles, the role each route needs, and the check
that enforces it on every request.

Roles are cumulative: `viewer` sees calls and reads flows; `operator` also transfers, ends and
places calls; `editor` also changes flows; `admin` also reads the audit log and the settings.
The password login (DASHBOARD_PASSWORD) is `admin`; an OpenID Connect sign-in gets the role
its claims give (engine/web/sso.py).

ROUTE_ROLES is the one table of the role every dashboard route needs, kept here rather than
beside each route so that who may do what reads in one place. `install_roles` checks it before
every request: an endpoint that is neither in it nor public nor Twilio's is refused (deny by
default), and a test walks the app's url_map so that a new route cannot go undeclared. A
refusal is 401 (not signed in) or 403 (a role too low): JSON for `/api/` and `/pusher/`, a page
otherwise (a redirect to the sign-in page when not signed in); each 403 is in the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from enum import IntEnum

from flask import (
    Flask,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as WerkzeugResponse

log = logging.getLogger(__name__)


class Role(IntEnum):
    """A dashboard role; a higher one may do all that a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    EDITOR = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        """The role's name as written in settings and claims: `viewer`, `operator`, ..."""
        return self.name.lower()


ROLE_NAMES = tuple(role.label for role in Role)
"""The role names, lowest first."""


def parse_role(name: object) -> Role | None:
    """The role called `name` (any case, spaces around allowed); None for anything else."""
    if not isinstance(name, str):
        return None
    return {role.label: role for role in Role}.get(name.strip().lower())


PUBLIC_ENDPOINTS = frozenset({
    "static",  # the dashboard's CSS and scripts, the sign-in page's included
    "auth.login_page", "auth.login", "auth.logout",
    "sso.start", "sso.callback",
    "health.healthz", "health.readyz",
    "metrics.scrape",  # its own METRICS_TOKEN (engine/web/metrics.py)
})
"""Routes anyone may reach: signing in and out, health probes, Prometheus' scrape."""

TWILIO_BLUEPRINTS = frozenset({"relay"})
"""The blueprints whose routes only Twilio calls: no session, no Flask-Limiter (security.py).
The voice webhooks are not among them: they never reach Flask (engine/web/voice.py)."""

TWILIO_ENDPOINTS = frozenset({"media.audio"})
"""Other routes Twilio fetches (the speech it plays): their own checks, no role."""

V, OP, E, A = Role.VIEWER, Role.OPERATOR, Role.EDITOR, Role.ADMIN

ROUTE_ROLES: Mapping[str, Role] = {
    # Session and live events
    "auth.session_info": V,
    "events_api.stream_events": V, "events_api.live_info": V, "events_api.pusher_auth": V,
    # Calls
    "dashboard.index": V, "dashboard.call_page": V, "dashboard.transfer_targets": V,
    "calls_api.list_calls": V, "calls_api.get_call": V,
    "calls_api.overview_page": V, "calls_api.overview": V,
    "control.transfer_call": OP, "control.end_call": OP,
    # Outbound calls and campaigns (placing and stopping them are calls, so operator's)
    "outbound_api.place_call": OP, "outbound_api.stop_campaign": OP,
    "outbound_api.list_campaigns": V, "outbound_api.campaigns_page": V,
    # Flows, read only (validate and apply compute on the text sent and write nothing)
    "flows_api.list_flows": V, "flows_api.flow_graph": V,
    "editor.flows_page": V, "editor.editor_page": V,
    "editor_api.validate": V, "editor_api.apply": V, "editor_api.source": V,
    "editor_api.revisions": V, "editor_api.flow_traffic": V, "editor_api.schema": V,
    "editor_api.templates": V,
    # Test calls and scenarios from the editor: calls, so operator's
    "editor_try.ring": OP, "editor_try.move": OP, "editor_try.run": OP,
    # Flow changes
    "editor_api.save": E, "editor_api.create": E, "editor_api.restore": E,
    # Audit log and settings
    "audit.audit_api": A, "audit.audit_page": A, "audit.settings_api": A,
}
"""The role each dashboard route needs, by endpoint (blueprint.function)."""

ROLE_KEY = "role"
"""Where a signed-in session keeps its role's name."""


def current_role() -> Role | None:
    """The signed-in session's role; None when not signed in. A session from before roles (a
    password sign-in holding only `user`) is the password's: admin."""
    if not session.get("user"):
        return None
    found = parse_role(session.get(ROLE_KEY))
    if found is None and ROLE_KEY not in session and session.get("user") == "admin":
        return Role.ADMIN
    return found


def can(name: str) -> bool:
    """For templates: True when this session's role is at least the one called `name`."""
    needed, role = parse_role(name), current_role()
    return needed is not None and role is not None and role >= needed


DECLARED = "phoney.route_roles"
"""On `app.extensions`: roles of routes added to one app outside ROUTE_ROLES (`declare`)."""


def declare(app: Flask, endpoint: str, role: Role | None) -> None:
    """Declare the role a route added to `app` outside ROUTE_ROLES needs (None: public)."""
    app.extensions.setdefault(DECLARED, {})[endpoint] = role


def needed_role(endpoint: str, app: Flask | None = None) -> Role | None:
    """The role `endpoint` needs: ROUTE_ROLES', or the one `declare`d on `app` (default: the
    current app); None when it has none."""
    found = ROUTE_ROLES.get(endpoint)
    if found is None:
        found = (app or current_app).extensions.get(DECLARED, {}).get(endpoint)
    return found


def route_kind(endpoint: str, app: Flask | None = None) -> str:
    """`public`, `twilio`, a role's name, or `undeclared` for an endpoint of `app` (default:
    the current app)."""
    if endpoint in PUBLIC_ENDPOINTS:
        return "public"
    if endpoint in TWILIO_ENDPOINTS or endpoint.partition(".")[0] in TWILIO_BLUEPRINTS:
        return "twilio"
    declared = (app or current_app).extensions.get(DECLARED, {})
    if endpoint in declared and declared[endpoint] is None:
        return "public"
    needed = needed_role(endpoint, app)
    return needed.label if needed is not None else "undeclared"


def _wants_json() -> bool:
    return request.path.startswith(("/api/", "/pusher/"))


def refusal(status: int, message: str) -> tuple[Response | str, int]:
    """A refusal as JSON (APIs) or as the refusal page (pages), with `status`."""
    if _wants_json():
        return jsonify(error=message), status
    return render_template("refused.html", message=message, status=status), status


Refused = Callable[[str], None]
"""Told why, when a signed-in request is refused for its role (the audit log's recorder)."""


def _check(refused: Refused) -> WerkzeugResponse | tuple[Response | str, int] | None:
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no route matched: Flask answers 404 or 405
    if route_kind(endpoint) in ("public", "twilio"):
        return None
    role = current_role()
    if role is None:
        if _wants_json():
            return jsonify(error="login required"), 401
        return redirect(url_for("auth.login_page", next=request.full_path.rstrip("?")))
    needed = needed_role(endpoint)
    if needed is None:  # deny by default; the url_map test keeps this from happening
        log.error("route %s has no role in ROUTE_ROLES: refused", endpoint)
        refused("no role declared")
        return refusal(403, "This page has no role declared, so nobody may use it.")
    if role >= needed:
        return None
    refused(f"needs {needed.label}")
    log.warning("%s %s refused: role %s, needs %s", request.method, request.path, role.label,
                needed.label)
    return refusal(403, f"Your role ({role.label}) may not do this: it needs {needed.label}.")


def install_roles(app: Flask, refused: Refused) -> None:
    """Check ROUTE_ROLES before every request of `app` (`refused` is told of each 403), and
    give templates `can(role)` and `current_role`."""
    app.before_request(lambda: _check(refused))
    app.jinja_env.globals.update(can=can, current_role=current_role)
