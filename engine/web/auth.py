"""Dashboard login: one password, a signed session cookie, CSRF tokens for control actions.

Without `DASHBOARD_PASSWORD` the server makes a password at start, keeps it in the store so every
server process accepts the same one, and prints it (as Jupyter does with its token): the dashboard
is never open to anyone who merely finds the port.

Twilio's webhooks (the blueprints in TWILIO_BLUEPRINTS) never open a session: Twilio sends no
cookie and those routes read none, so they get Flask's null session instead (`CookieSessions`).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from werkzeug.wrappers import Response as WerkzeugResponse

from engine.store import CallStore
from engine.web.services import services

log = logging.getLogger(__name__)

auth = Blueprint("auth", __name__)

PASSWORD_BLOB = "dashboard:password"
SECRET_BLOB = "flask:secret-key"
CSRF_HEADER = "X-CSRF-Token"

TWILIO_BLUEPRINTS = frozenset({"voice"})
"""The blueprints whose routes only Twilio calls: no session, no Flask-Limiter (security.py)."""

F = TypeVar("F", bound=Callable[..., Any])


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except on Twilio's webhooks.

    Flask opens the session before it matches the URL, and opening one builds a signing
    serializer (key derivation included) on every request: a cost Twilio's requests, which
    carry no cookie and whose routes read no session, should not pay. A request to a route of
    TWILIO_BLUEPRINTS gets Flask's null session (reads find nothing, a write raises), and Flask
    saves no null session, so no cookie is set on it either.
    """

    def __init__(self) -> None:
        self._twilio_paths: frozenset[str] | None = None

    def twilio_paths(self, app: Flask) -> frozenset[str]:
        """The paths of TWILIO_BLUEPRINTS' routes (Flask takes no new routes once it served a
        request, so they are read once). A route with URL variables is left out: its requests
        still open a session, which costs time, not correctness."""
        if self._twilio_paths is None:
            self._twilio_paths = frozenset(
                rule.rule for rule in app.url_map.iter_rules()
                if rule.endpoint.partition(".")[0] in TWILIO_BLUEPRINTS and not rule.arguments)
        return self._twilio_paths

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """None for a request to a Twilio webhook's path (Flask then uses its null session);
        Flask's signed-cookie session for any other request."""
        if request.path in self.twilio_paths(app):
            return None  # Flask falls back to make_null_session
        return super().open_session(app, request)


def _shared_secret(store: CallStore, key: str, make: Callable[[], str]) -> tuple[str, bool]:
    """A secret every server process agrees on: the store's, or a new one put there."""
    found = store.get_blob(key)
    if found is not None:
        return found.decode(), False
    # Only if still absent: processes starting together must not overwrite a secret another
    # one already uses (its session cookies would be refused by the rest).
    created = store.compare_and_set_blob(key, None, make().encode())
    return (store.get_blob(key) or b"").decode(), created


def configure_auth(app: Flask, store: CallStore, password: str, secret_key: str,
                   secure_cookies: bool, announce: bool = True) -> str:
    """Set the session key and cookie flags; return the password in force.

    A generated password is printed only when `announce`: by a server, not by every short
    `flask` command (their output lands in CI logs).
    """
    app.session_interface = CookieSessions()
    app.secret_key = secret_key or _shared_secret(
        store, SECRET_BLOB, lambda: secrets.token_urlsafe(32))[0]
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=secure_cookies, SESSION_COOKIE_NAME="phoney_session")
    if password:
        return password
    generated, new = _shared_secret(store, PASSWORD_BLOB, lambda: secrets.token_urlsafe(12))
    if not announce:
        return generated
    # Standard error, so command output (exports, JSON) stays clean.
    log.warning("Dashboard password (%s): %s  (set DASHBOARD_PASSWORD to choose your own)",
                "new" if new else "kept in the store", generated)
    return generated


def logged_in() -> bool:
    """True when this request's session has signed in with the dashboard password."""
    return bool(session.get("user"))


def csrf_token() -> str:
    """The session's CSRF token, which `csrf_protected` expects back; made and kept in the
    session on first use, so it stays the same until the session ends."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return str(token)


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/pusher/")


def login_required(view: F) -> F:
    """Pages redirect to the login page; API routes answer 401."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not logged_in():
            if _wants_json():
                return jsonify(error="login required"), 401
            return redirect(url_for("auth.login_page", next=request.full_path))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def csrf_protected(view: F) -> F:
    """State-changing requests from the page carry the session's token in a header or form."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token", "")
        expected = session.get("csrf", "")
        if not expected or not hmac.compare_digest(str(sent), str(expected)):
            return jsonify(error="missing or invalid CSRF token"), 403
        return view(*args, **kwargs)

    return cast(F, wrapper)


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not bounce the user to another site."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@auth.get("/login")
def login_page() -> str:
    """The sign-in form; `next` is where signing in leads (a local path only, else `/`)."""
    return render_template("login.html", next=_safe_next(request.args.get("next")), error=None)


@auth.post("/login")
def login() -> WerkzeugResponse | tuple[str, int]:
    """Sign in with the dashboard password (compared in constant time).

    Right: the session starts over, signed in and permanent, with a new CSRF token, and the
    answer redirects to `next` (a local path only, else `/`). Wrong or empty: the form again
    with 401, logged with the client's address; only these count against LOGIN_RATE_LIMIT.
    """
    given = request.form.get("password", "")
    expected = services().dashboard_password
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        log.warning("dashboard login refused from %s", request.remote_addr)
        return render_template("login.html", next=_safe_next(request.form.get("next")),
                               error="Wrong password."), 401
    session.clear()
    session["user"] = "admin"
    session.permanent = True
    csrf_token()
    return redirect(_safe_next(request.form.get("next")))


@auth.post("/logout")
def logout() -> WerkzeugResponse:
    """End the session (all of it, the CSRF token included) and redirect to the sign-in page."""
    session.clear()
    return redirect(url_for("auth.login_page"))


@auth.get("/api/session")
@login_required
def session_info() -> Response:
    """The CSRF token for scripts and the page's JavaScript."""
    return jsonify(user=session.get("user"), csrf_token=csrf_token())
