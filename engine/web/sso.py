"""OpenID Connect sign-in (Authlib): `GET /login/sso` starts it, `/login/sso/callback` ends it.

On when OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are set. The provider is found by
discovery (`<OIDC_ISSUER>/.well-known/openid-configuration`, read when first needed and kept).
A sign-in is the authorization code flow with PKCE (S256), a state and a nonce, all kept in the
session cookie until the callback, which takes them out: a state is good for one callback. The
code is exchanged with the client secret, and the ID token must be signed by a key of the
provider's JWKS (fetched again once when the token names a key not among those kept, so
rotated keys are picked up), issued by OIDC_ISSUER, for OIDC_CLIENT_ID, not expired, and carry
the nonce (Authlib's checks; a token response without an ID token is refused too).

The role is the highest known role named by the claim OIDC_ROLES_CLAIM (default `roles`: a list,
or names separated by spaces or commas). Without that claim the role is OIDC_DEFAULT_ROLE
(default `viewer`; `none` refuses such users). A claim naming no known role is refused.

Every refusal (a provider that does not answer, a state already used, a code the provider
refuses, a token that fails a check, no role) is a page saying so (`refused.html`), a log line
and an audit entry (`sign-in.failed` with the reason, never the token or code). Signing out of
such a session also ends the provider's session when it offers `end_session_endpoint`
(RP-initiated logout, `logout_url`), and comes back to the sign-in page.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from authlib.integrations.base_client import MismatchingStateError, OAuthError
from authlib.integrations.flask_client import OAuth
from flask import (
    Blueprint,
    Flask,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from requests import RequestException
from werkzeug.wrappers import Response as WerkzeugResponse

from engine.settings import Settings
from engine.web.audit import record
from engine.web.auth import (
    LOGIN_LIMIT,
    SSO,
    LoginLimit,
    count_login_attempt,
    restart_login_count,
    start_session,
)
from engine.web.roles import Role, parse_role
from engine.web.services import services

log = logging.getLogger(__name__)

sso = Blueprint("sso", __name__)

NONE = "none"
"""OIDC_DEFAULT_ROLE's value that refuses users whose token has no roles claim."""
SCOPE = "openid email profile"
TIMEOUT = 5.0  # seconds for each request to the provider: a sign-in page must not hang
NEXT_KEY = "sso_next"


@dataclass(frozen=True)
class OidcSettings:
    """The OIDC_* settings, read."""

    issuer: str
    client_id: str
    client_secret: str
    roles_claim: str = "roles"
    default_role: Role | None = Role.VIEWER  # None: refused

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcSettings | None:
        """The settings of OpenID Connect sign-in; None when it is off (no OIDC_ISSUER)."""
        if not settings.oidc_issuer.strip():
            return None
        default = settings.oidc_default_role.strip().lower() or Role.VIEWER.label
        return cls(settings.oidc_issuer.strip().rstrip("/"), settings.oidc_client_id.strip(),
                   settings.oidc_client_secret, settings.oidc_roles_claim.strip() or "roles",
                   None if default == NONE else parse_role(default))

    @property
    def discovery_url(self) -> str:
        """Where the provider's metadata is."""
        return f"{self.issuer}/.well-known/openid-configuration"


class Refused(Exception):
    """A sign-in that may not go on: `reason` for the log and the audit entry, `message` for
    the person."""

    def __init__(self, reason: str, message: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message
        self.status = status


def role_from_claims(claims: Mapping[str, Any], config: OidcSettings) -> Role:
    """The role `claims` (the ID token's) give under `config`; Refused when they give none."""
    if config.roles_claim not in claims:
        if config.default_role is None:
            raise Refused(f"no {config.roles_claim!r} claim, and OIDC_DEFAULT_ROLE is none",
                          "Your account has no Phoney role. Ask an administrator to give you "
                          "one.", 403)
        return config.default_role
    value = claims[config.roles_claim]
    names = value.replace(",", " ").split() if isinstance(value, str) else value
    found = [parse_role(name) for name in names] if isinstance(names, list) else []
    known = [role for role in found if role is not None]
    if not known:
        raise Refused(f"the {config.roles_claim!r} claim names no Phoney role",
                      "Your account's roles include none of Phoney's (viewer, operator, editor, "
                      "admin). Ask an administrator to give you one.", 403)
    return max(known)


class Sso:
    """One app's OpenID Connect client (Authlib's, registered on an `OAuth` of its own)."""

    def __init__(self, app: Flask, config: OidcSettings) -> None:
        self.config = config
        self.oauth = OAuth(app)
        self.client = self.oauth.register(
            "phoney_oidc", client_id=config.client_id, client_secret=config.client_secret,
            server_metadata_url=config.discovery_url,
            client_kwargs={"scope": SCOPE, "code_challenge_method": "S256",
                           "timeout": TIMEOUT})

    def logout_url(self, back_to: str) -> str | None:
        """The provider's end-session URL leading back to `back_to`; None when it has none or
        does not answer."""
        try:
            metadata = self.client.load_server_metadata()
            if not metadata.get("end_session_endpoint"):
                return None
            found = self.client.create_logout_url(post_logout_redirect_uri=back_to,
                                                  client_id=self.config.client_id)
        except Exception:
            log.warning("sign-out: the provider's end-session endpoint is unknown (it did not "
                        "answer); signed out here only", exc_info=True)
            return None
        return str(found["url"])


def install_sso(app: Flask, settings: Settings) -> None:
    """Register the /login/sso routes on `app` (answering 404 while SSO is off) and, when the
    OIDC settings are given, its client."""
    config = OidcSettings.from_settings(settings)
    app.extensions[SSO] = Sso(app, config) if config is not None else None
    app.register_blueprint(sso)


def configured(app: Flask | None = None) -> Sso | None:
    """The app's `Sso`; None when sign-in with OpenID Connect is off."""
    return cast("Sso | None", (app or current_app).extensions.get(SSO))


def _external(endpoint: str) -> str:
    """An absolute URL of ours: under PUBLIC_BASE_URL when set (what the provider knows us by),
    else the request's own base."""
    base = services().settings.public_base_url.strip().rstrip("/")
    if base:
        return base + url_for(endpoint)
    return url_for(endpoint, _external=True)


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") \
            or urlsplit(target).netloc:
        return "/"
    return target


def _refused(error: Refused, who: str = "") -> tuple[str, int]:
    log.warning("sign-in with OpenID Connect refused from %s: %s", request.remote_addr,
                error.reason)
    record("sign-in.failed", "refused", who=who, role="", method="oidc", reason=error.reason)
    return render_template("refused.html", title="Sign-in refused", message=error.message,
                           detail=f"Reason: {error.reason}.", status=error.status), error.status


@sso.get("/login/sso")
def start() -> WerkzeugResponse | tuple[str, int]:
    """Send the browser to the provider (state, nonce and PKCE verifier kept in the session);
    `next` is where a sign-in leads (a local path only). 404 while SSO is off; a page saying so
    (503) when the provider does not answer."""
    found = configured()
    if found is None:
        return render_template("refused.html", title="Not available",
                               message="Signing in with a company account is not set up here "
                                       "(OIDC_ISSUER).", status=404), 404
    session[NEXT_KEY] = _safe_next(request.args.get("next"))
    try:
        return cast(WerkzeugResponse,
                    found.client.authorize_redirect(_external("sso.callback")))
    except Exception as error:  # discovery failed: the provider is down or not one
        waiting = _over_limit()  # counted only then: each such refusal is an audit entry
        if waiting is not None:
            return waiting
        return _refused(Refused(f"the provider did not answer ({type(error).__name__})",
                                "The sign-in provider did not answer. Please try again "
                                "shortly.", 503))


def _over_limit() -> tuple[str, int] | None:
    """A callback counts as a sign-in attempt (LOGIN_RATE_LIMIT, per client address, shared
    with the password's): over the limit, a page saying to wait (429), recorded once a window,
    so that made-up callbacks fill neither the provider's logs nor the audit log."""
    limit: LoginLimit | None = current_app.extensions.get(LOGIN_LIMIT)
    if limit is None:
        return None
    address = request.remote_addr or ""
    try:
        attempts = count_login_attempt(services().store, address, limit.window_seconds)
    except Exception:  # no count, no sign-in: the limit must hold
        log.warning("sign-in not checked: the store did not count it", exc_info=True)
        return render_template("refused.html", title="Sign-in refused", message="Signing in "
                               "is not possible right now. Please try again shortly.",
                               status=503), 503
    if attempts <= limit.attempts:
        return None
    if attempts == limit.attempts + 1:
        record("sign-in.failed", "refused", who="", role="", method="oidc",
               reason="over LOGIN_RATE_LIMIT")
    log.warning("sign-in with OpenID Connect refused from %s: over LOGIN_RATE_LIMIT", address)
    return render_template("refused.html", title="Sign-in refused", message="Too many sign-in "
                           "attempts from your address. Please wait a minute, then try again.",
                           status=429), 429


def _token(found: Sso) -> Mapping[str, Any]:
    """The callback's tokens, the ID token checked; Refused saying why otherwise."""
    if not request.args.get("state"):
        raise Refused("no state in the callback", "This sign-in link is not complete. "
                      "Please sign in again.")
    try:
        token = found.client.authorize_access_token()
    except MismatchingStateError:
        raise Refused("state unknown or already used", "This sign-in link was already used "
                      "or has expired. Please sign in again.") from None
    except OAuthError as error:
        raise Refused(f"the provider refused: {error.error}",
                      "The sign-in provider refused this sign-in. Please sign in again.") \
            from None
    except RequestException as error:
        raise Refused(f"the provider did not answer ({type(error).__name__})",
                      "The sign-in provider did not answer. Please try again shortly.",
                      503) from None
    except Exception as error:  # Authlib's and joserfc's checks of the ID token
        raise Refused(f"ID token refused: {type(error).__name__}: {str(error)[:160]}",
                      "The sign-in provider's answer did not pass our checks, so you are not "
                      "signed in.") from None
    if not isinstance(token, Mapping) or not isinstance(token.get("userinfo"), Mapping):
        raise Refused("no ID token in the provider's answer", "The sign-in provider sent no "
                      "ID token, so you are not signed in.")
    return token


@sso.get("/login/sso/callback")
def callback() -> WerkzeugResponse | tuple[str, int]:
    """Finish the sign-in: check the state, exchange the code, check the ID token, take the
    role from its claims, and start a session (a new id, a new CSRF token); refused with a
    page otherwise."""
    found = configured()
    if found is None:
        return render_template("refused.html", title="Not available",
                               message="Signing in with a company account is not set up "
                                       "here.", status=404), 404
    waiting = _over_limit()
    if waiting is not None:
        return waiting
    if request.args.get("error"):
        return _refused(Refused(f"the provider answered {request.args['error'][:60]}",
                                "The sign-in provider did not sign you in."))
    try:
        claims = _token(found)["userinfo"]
    except Refused as error:
        return _refused(error)
    who = str(claims.get("email") or claims.get("sub") or "")
    try:
        role = role_from_claims(claims, found.config)
    except Refused as error:
        return _refused(error, who)
    target = _safe_next(session.get(NEXT_KEY))
    if current_app.extensions.get(LOGIN_LIMIT) is not None:
        try:
            restart_login_count(services().store, request.remote_addr or "")
        except Exception:
            log.warning("the sign-in count of %s was not started over", request.remote_addr,
                        exc_info=True)
    start_session(who, role, sso=True)
    record("sign-in", method="oidc", subject=str(claims.get("sub", ""))[:100],
           role_from=found.config.roles_claim if found.config.roles_claim in claims
           else "OIDC_DEFAULT_ROLE")
    log.info("signed in with OpenID Connect from %s as %s (%s)", request.remote_addr, who,
             role.label)
    return redirect(target)
