"""Dashboard login: one password, a signed session cookie, CSRF tokens for control actions.

Without `DASHBOARD_PASSWORD` the server makes a password at start, keeps it where every server
process finds it (so all accept the same one), and prints it once, when it is made (as Jupyter
does with its token): the dashboard is never open to anyone who merely finds the port. It and the
session key (without SECRET_KEY) are kept beside a SQLite database in 0600 files, not in it, and
in the store otherwise (engine/store/secret_files.py).

Sessions (`Sessions`): a sign-in lasts SESSION_HOURS (default 12) from the moment it was made,
however busy it is. Each one has an id, and signing out records that id in the store (shared by
every server process, checked on every request that carries a signed-in cookie), so a copy of
the cookie is refused from then on. The cookie's signing key is derived from the session key and
the dashboard password: when the password changes, every session made under the old one ends.
The cookie is `Secure` on any https request (the scheme as the app sees it: gunicorn takes it
from X-Forwarded-Proto of the proxies in FORWARDED_ALLOW_IPS), and always when PUBLIC_BASE_URL
is https.

Sign-in attempts are counted per client address in the store (`incr_window`, atomic across
threads and processes) before the password is compared: over LOGIN_RATE_LIMIT the answer is 429
and the password is not looked at. A right password starts the address's count over.

Twilio's routes never open a session: the voice webhooks are answered before Flask sees them
(engine/web/voice.py), and the blueprints in TWILIO_BLUEPRINTS (the relay WebSocket) get
Flask's null session instead (`CookieSessions`): Twilio sends no cookie and they read none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    current_app,
    has_request_context,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from werkzeug.wrappers import Response as WerkzeugResponse

from engine.store import CallStore, SecretKeeper, secret_keeper
from engine.web.audit import record
from engine.web.roles import ROLE_KEY, Role, current_role
from engine.web.roles import TWILIO_BLUEPRINTS as TWILIO_BLUEPRINTS  # (kept where it was)
from engine.web.services import services

log = logging.getLogger(__name__)

auth = Blueprint("auth", __name__)

PASSWORD_BLOB = "dashboard:password"
SECRET_BLOB = "flask:secret-key"
ENDED_BLOB = "dashboard:sessions-ended"
"""JSON {session id: when the session would have expired} of the sessions signed out."""
LOGIN_COUNT_BLOB = "dashboard:login-count:"
"""And an HMAC of a client address: the generation of that address's sign-in count."""
SSO = "phoney.sso"
"""Where engine/web/sso.py keeps the app's OpenID Connect client (None: off), on
`app.extensions`: an object with `logout_url(back_to) -> str | None`."""
SSO_KEY = "sso"
"""True in a session signed in with OpenID Connect."""
CSRF_HEADER = "X-CSRF-Token"
LOGIN_LIMIT = "phoney.login_limit"
LOGIN_WAIT = "Too many sign-in attempts from your address. Please wait a minute, then try again."
LOGIN_UNAVAILABLE = "Signing in is not possible right now. Please try again shortly."
DEFAULT_SESSION_HOURS = 12
MAX_SESSION_HOURS = 24 * 31
CLOCK_SKEW = 300.0  # seconds a session's start may lie ahead of this server's clock
CAS_TRIES = 50


F = TypeVar("F", bound=Callable[..., Any])


def session_hours(value: int | str) -> int:
    """SESSION_HOURS as a whole number of hours, 1 to MAX_SESSION_HOURS; ValueError otherwise."""
    try:
        hours = int(str(value).strip())
    except ValueError:
        hours = 0
    if not 1 <= hours <= MAX_SESSION_HOURS:
        raise ValueError(f"SESSION_HOURS={value!r}: write how many hours a dashboard sign-in "
                         f"lasts, a whole number from 1 to {MAX_SESSION_HOURS}")
    return hours


def _seconds(value: Any) -> float | None:
    """A session's time stamp (epoch seconds), or None when it holds none."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class Sessions:
    """Signed-in sessions: their start and lifetime, and the store's record of those ended.

    A session holds its id (`sid`), when it started (`at`) and when it expires (`exp`, fixed at
    sign-in: a later, longer SESSION_HOURS does not lengthen it; a shorter one shortens it).
    """

    def __init__(self, store: CallStore, hours: int = DEFAULT_SESSION_HOURS,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.hours = session_hours(hours)
        self.clock = clock

    @property
    def lifetime(self) -> float:
        """Seconds a session lasts from its sign-in."""
        return self.hours * 3600.0

    def start(self, state: SessionMixin) -> None:
        """Give a session that has just signed in its id, start and expiry."""
        now = self.clock()
        state["sid"] = secrets.token_urlsafe(18)
        state["at"] = now
        state["exp"] = now + self.lifetime

    def is_live(self, state: SessionMixin) -> bool:
        """True while the session is within its lifetime and has not been signed out (the
        store is read: a sign-out in any server process counts at once)."""
        sid, started, expires = state.get("sid"), _seconds(state.get("at")), _seconds(
            state.get("exp"))
        if not isinstance(sid, str) or started is None or expires is None:
            return False  # a cookie from before sessions had ids, or not one of ours
        now = self.clock()
        if not (started - CLOCK_SKEW <= now < min(expires, started + self.lifetime)):
            return False
        return sid not in self._ended(self.store.get_blob(ENDED_BLOB))

    def end(self, state: SessionMixin) -> None:
        """Record the session as signed out, for every server process; nothing for a session
        without an id. Raises RuntimeError if the store's record keeps changing under us."""
        sid, expires = state.get("sid"), _seconds(state.get("exp"))
        if not isinstance(sid, str):
            return
        until = expires if expires is not None else self.clock() + self.lifetime
        for _ in range(CAS_TRIES):
            raw = self.store.get_blob(ENDED_BLOB)
            now = self.clock()
            ended = {key: value for key, value in self._ended(raw).items() if value > now}
            ended[sid] = max(until, ended.get(sid, 0.0))
            if self.store.compare_and_set_blob(ENDED_BLOB, raw,
                                               json.dumps(ended, sort_keys=True).encode()):
                return
        raise RuntimeError("the store's record of ended sessions kept changing")

    @staticmethod
    def _ended(raw: bytes | None) -> dict[str, float]:
        if raw is None:
            return {}
        try:
            found = json.loads(raw)
        except ValueError:
            found = None
        if not isinstance(found, dict):
            # Not ours (or damaged): no session is taken for ended, and the next sign-out
            # replaces it. Refusing every session would leave nobody able to sign out.
            log.warning("the store's record of ended dashboard sessions is unreadable")
            return {}
        return {str(key): float(value) for key, value in found.items()
                if isinstance(value, int | float)}


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, checked against `Sessions`, except on Twilio's webhooks.

    Flask opens the session before it matches the URL, and opening one builds a signing
    serializer (key derivation included) on every request: a cost Twilio's requests, which
    carry no cookie and whose routes read no session, should not pay. A request to a route of
    TWILIO_BLUEPRINTS gets Flask's null session (reads find nothing, a write raises), and Flask
    saves no null session, so no cookie is set on it either.

    A signed-in session that has expired or was signed out opens empty (and its cookie is
    removed). The cookie's signing salt holds a digest of the dashboard password, so cookies
    signed under another password do not open at all.
    """

    def __init__(self, sessions: Sessions | None = None, password: str = "") -> None:
        self._twilio_paths: frozenset[str] | None = None
        self.sessions = sessions
        digest = hashlib.sha256(f"phoney-dashboard:{password}".encode()).hexdigest()
        self.salt = f"cookie-session:{digest}"

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
        otherwise Flask's signed-cookie session, emptied when it is signed in but no longer
        live (when the store cannot say, it opens empty and the cookie is kept)."""
        if request.path in self.twilio_paths(app):
            return None  # Flask falls back to make_null_session
        found = super().open_session(app, request)
        if found is None or self.sessions is None or not found.get("user"):
            return found
        try:
            live = self.sessions.is_live(found)
        except Exception:  # the store is unreachable: signed out for now, the cookie kept
            log.warning("dashboard session not checked: the store did not answer",
                        exc_info=True)
            return self.session_class()
        if live:
            return found
        ended = self.session_class()
        ended.modified = True  # Flask then deletes the cookie
        return ended

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure when configured so (PUBLIC_BASE_URL is https) and on any https request."""
        return bool(super().get_cookie_secure(app)) or (
            has_request_context() and request.is_secure)

    def get_expiration_time(self, app: Flask, session: SessionMixin) -> datetime | None:
        """A signed-in session's cookie expires when the session does, not a lifetime after
        each request."""
        expires = _seconds(session.get("exp"))
        if session.permanent and expires is not None:
            return datetime.fromtimestamp(expires, UTC)
        return super().get_expiration_time(app, session)


def configure_sessions(app: Flask, hours: int | str) -> None:
    """Make sessions last `hours` (SESSION_HOURS) from sign-in; ValueError for a bad value."""
    interface = app.session_interface
    if not isinstance(interface, CookieSessions) or interface.sessions is None:
        raise RuntimeError("configure_sessions: call configure_auth first")
    interface.sessions.hours = session_hours(hours)
    app.permanent_session_lifetime = timedelta(hours=interface.sessions.hours)


def _shared_secret(keeper: SecretKeeper, key: str, make: Callable[[], str]) -> tuple[str, bool]:
    """A secret every server process agrees on: the one kept, or a new one kept now; and
    whether this call is the one that kept it."""
    found = keeper.get(key)
    if found is not None:
        return found, False
    # Only if still absent: processes starting together must not overwrite a secret another
    # one already uses (its session cookies would be refused by the rest).
    created = keeper.create(key, make())
    return keeper.get(key) or "", created


def configure_auth(app: Flask, store: CallStore, password: str, secret_key: str,
                   secure_cookies: bool, announce: bool = True) -> str:
    """Set the session key and cookie flags; return the password in force.

    Without `password` the one generated and kept in the store is used; it is generated, and
    printed, only when `announce` (by a server, not by a short `flask` command, whose output
    lands in CI logs), and printed only by the process that made it: later starts and other
    workers say it is kept in the store, without showing it. A command run before any server
    gets a throwaway password and leaves the store without one, so the first server makes it
    and shows it.
    """
    keeper = secret_keeper(store)  # beside a SQLite database, not in it (secret_files.py)
    app.secret_key = secret_key or _shared_secret(
        keeper, SECRET_BLOB, lambda: secrets.token_urlsafe(32))[0]
    # The cookie is written only when the session changes: a sign-in's expiry is fixed at
    # sign-in, so rewriting it on every request gains nothing, and a request made beside a
    # change (a favicon, a script) would write back the session as it was before the change
    # (an OpenID Connect sign-in's state, say).
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=secure_cookies, SESSION_COOKIE_NAME="phoney_session",
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=DEFAULT_SESSION_HOURS),
                      SESSION_REFRESH_EACH_REQUEST=False)
    if not password:
        password = _generated_password(keeper, announce)
    app.session_interface = CookieSessions(Sessions(store), password)
    return password


def _generated_password(keeper: SecretKeeper, announce: bool) -> str:
    if not announce:
        kept = keeper.get(PASSWORD_BLOB)
        return kept if kept is not None else secrets.token_urlsafe(12)
    generated, new = _shared_secret(keeper, PASSWORD_BLOB, lambda: secrets.token_urlsafe(12))
    # Standard error, so command output (exports, JSON) stays clean.
    if new:
        log.warning("Dashboard password (new, shown only now): %s  (set DASHBOARD_PASSWORD "
                    "to choose your own)", generated)
    else:
        log.warning("Dashboard password: the one generated at the first start, kept in the "
                    "store and not shown again (set DASHBOARD_PASSWORD to choose your own)")
    return generated


@dataclass(frozen=True)
class LoginLimit:
    """Sign-in attempts one client address may make per window (LOGIN_RATE_LIMIT)."""

    attempts: int
    window_seconds: float


def configure_login_limit(app: Flask, limit: LoginLimit | None) -> None:
    """Limit sign-in attempts per client address (None: no limit)."""
    app.extensions[LOGIN_LIMIT] = limit


def _login_counter_blob(address: str) -> str:
    digest = hmac.new(str(current_app.secret_key).encode(), address.encode(), hashlib.sha256)
    return LOGIN_COUNT_BLOB + digest.hexdigest()[:32]


def count_login_attempt(store: CallStore, address: str, window_seconds: float) -> int:
    """Count one sign-in attempt from `address`; the attempts in its current window, this one
    included (atomic across threads and processes: the store's `incr_window`)."""
    generation = store.get_blob(_login_counter_blob(address))
    suffix = generation.decode() if generation else "0"
    return store.incr_window(f"login:{address}:{suffix}", window_seconds)


def restart_login_count(store: CallStore, address: str) -> None:
    """Start `address`'s count of sign-in attempts over (after a right password)."""
    store.put_blob(_login_counter_blob(address), secrets.token_hex(8).encode())


def login_wait_page(window_seconds: float | None = None) -> tuple[Response, int]:
    """The sign-in form saying to wait, as a 429 (with Retry-After when the window is known);
    `next` follows the login page's own rule."""
    page = render_template("login.html", next=_safe_next(request.form.get("next")),
                           error=LOGIN_WAIT)
    response = current_app.make_response(page)
    if window_seconds is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(window_seconds)))
    return response, 429


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


def _sessions() -> Sessions:
    interface = current_app.session_interface
    if not isinstance(interface, CookieSessions) or interface.sessions is None:
        raise RuntimeError("the app's sessions are not configured (configure_auth)")
    return interface.sessions


def _sso_on() -> bool:
    return current_app.extensions.get(SSO) is not None


def _form(error: str | None) -> str:
    return render_template("login.html", next=_safe_next(request.form.get("next")),
                           error=error, sso=_sso_on())


def start_session(user: str, role: Role, sso: bool = False) -> None:
    """Sign this session in as `user` with `role`, anew: a new id, start and CSRF token, for
    SESSION_HOURS; whatever the session held before is dropped (a sign-in's state, say)."""
    session.clear()
    session["user"] = user
    session[ROLE_KEY] = role.label
    if sso:
        session[SSO_KEY] = True
    session.permanent = True
    _sessions().start(session)
    csrf_token()


@auth.get("/login")
def login_page() -> str:
    """The sign-in form (with the company account's button when OpenID Connect is on); `next`
    is where signing in leads (a local path only, else `/`)."""
    return render_template("login.html", next=_safe_next(request.args.get("next")), error=None,
                           sso=_sso_on())


@auth.post("/login")
def login() -> WerkzeugResponse | tuple[str | Response, int]:
    """Sign in with the dashboard password (compared in constant time).

    The attempt is counted first, per client address, against LOGIN_RATE_LIMIT: over it the
    answer is the form saying to wait (429) and the password is not compared. Right: the
    address's count starts over, the session starts anew (signed in, with a new id and CSRF
    token, for SESSION_HOURS), and the answer redirects to `next` (a local path only, else
    `/`). Wrong or empty: the form again with 401, logged with the client's address.
    """
    store = services().store
    address = request.remote_addr or ""
    limit: LoginLimit | None = current_app.extensions.get(LOGIN_LIMIT)
    if limit is not None:
        try:
            attempts = count_login_attempt(store, address, limit.window_seconds)
        except Exception:  # no count, no comparison: the limit must hold
            log.warning("dashboard login not checked: the store did not count it",
                        exc_info=True)
            return _form(LOGIN_UNAVAILABLE), 503
        if attempts > limit.attempts:
            log.warning("dashboard login refused from %s: over LOGIN_RATE_LIMIT", address)
            if attempts == limit.attempts + 1:  # once a window: a flood fills no audit log
                record("sign-in.failed", "refused", who="", role="", method="password",
                       reason="over LOGIN_RATE_LIMIT")
            return login_wait_page(limit.window_seconds)
    given = request.form.get("password", "")
    expected = services().dashboard_password
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        log.warning("dashboard login refused from %s", address)
        record("sign-in.failed", "refused", who="", role="", method="password",
               reason="wrong password" if given else "no password")
        return _form("Wrong password."), 401
    if limit is not None:
        try:
            restart_login_count(store, address)
        except Exception:
            log.warning("the sign-in count of %s was not started over", address, exc_info=True)
    start_session("admin", Role.ADMIN)  # the password is the owner's: admin
    record("sign-in", method="password")
    return redirect(_safe_next(request.form.get("next")))


@auth.post("/logout")
def logout() -> WerkzeugResponse:
    """End the session (all of it, the CSRF token included) for every server process, and
    redirect to the sign-in page; a session signed in with OpenID Connect goes on to the
    provider's end-session endpoint, when it has one (which leads back to the sign-in page)."""
    back_to = None
    if logged_in():
        record("sign-out", method="oidc" if session.get(SSO_KEY) else "password")
        provider = current_app.extensions.get(SSO)
        if session.get(SSO_KEY) and provider is not None:
            back_to = provider.logout_url(_login_page_url())
        try:
            _sessions().end(session)
        except Exception:  # the cookie is still removed; a copy of it stays valid
            log.error("dashboard session not recorded as ended: a copy of its cookie stays "
                      "valid until it expires", exc_info=True)
    session.clear()
    if back_to is not None:
        # A page that moves on, not a redirect: the dashboard's CSP (form-action 'self') does
        # not let the sign-out form's answer lead to another site.
        return current_app.make_response(render_template("signed_out.html", provider=back_to))
    return redirect(url_for("auth.login_page"))


def _login_page_url() -> str:
    """The sign-in page's absolute URL (under PUBLIC_BASE_URL when it is set)."""
    base = services().settings.public_base_url.strip().rstrip("/")
    return base + url_for("auth.login_page") if base else url_for("auth.login_page",
                                                                   _external=True)


@auth.get("/api/session")
@login_required
def session_info() -> Response:
    """Who is signed in, with which role, and the CSRF token for scripts and the page's
    JavaScript."""
    role = current_role()
    return jsonify(user=session.get("user"), role=role.label if role else None,
                   csrf_token=csrf_token())
