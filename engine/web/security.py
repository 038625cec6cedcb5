"""Hardening of the web app: response headers, rate limits, and logs that keep secrets.

`install_log_redaction(settings)` (first thing in `create_app`) masks, in every log record of
the process, E.164 numbers (`+15551234567` -> `+1555***4567`), numbers written with separators
(`(555) 123-4567` -> `(***) ***-4567`, `555-123-4567`, `555.123.4567`, `+44 20 7946 0958`), the
whole values of speech and text fields (`SpeechResult=my pin is 4321&...`, `"text": "..."`),
and the configured secrets (TWILIO_AUTH_TOKEN,
OPENAI_API_KEY, PUSHER_SECRET, DASHBOARD_PASSWORD, ENCRYPTION_KEY, SECRET_KEY, METRICS_TOKEN, a
Redis password in STORE_URL). The filter sits on the root logger and, because a logger's filters
never see the records its children propagate to it, also in the log record factory, so it runs
once on every record whatever logger made it and whatever handler writes it. The password
generated when DASHBOARD_PASSWORD is not set is not a configured secret: it is logged once, on
purpose, by the process that made it, so the operator can sign in (engine/web/auth.py).

`install_security(app, settings)` (after the blueprints) adds:
- headers on every response: a Content-Security-Policy that lets the dashboard load only its
  own scripts, styles and images (and connect to Pusher's hosts when Pusher is configured),
  nosniff, same-origin referrers, no framing, and HSTS when PUBLIC_BASE_URL is https;
- sign-in attempts per client address (LOGIN_RATE_LIMIT, 5/minute), counted in the store
  before the password is compared (engine/web/auth.py), so every process shares one count;
- Flask-Limiter limits: call control, transfer and end together, per client address
  (API_RATE_LIMIT, 30/minute), counted in Redis when STORE_URL is Redis (so every process
  shares them), in memory otherwise;
  over a limit the APIs answer 429 JSON and the login page says to wait, both with
  Retry-After. No limit applies to Twilio's webhooks (the per-caller limit is the call
  service's, in the store), so Flask-Limiter's per-request hooks are skipped on them: they cost
  a webhook a tenth of its time for nothing (bench/profile_webhook.py);
- the sessions' lifetime, SESSION_HOURS (engine/web/auth.py);
- request size limits: bodies over 1 MiB (MAX_CONTENT_LENGTH) are refused with 413 before
  they are read (a 30 MiB password was read and compared), as are multipart fields over 64 kB
  and forms of more than 200 fields; Twilio's webhooks have tighter limits of their own,
  checked before their signature (engine/web/webhook_form.py).
The client address is REMOTE_ADDR: behind proxies set TRUSTED_PROXIES (engine/web/proxy.py),
or every client shares the proxy's count.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Flask, Response, jsonify, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.exceptions import TooManyRequests

from engine.calls.limits import parse_rate
from engine.settings import Settings
from engine.store.redis_store import DEFAULT_PREFIX
from engine.web.auth import (
    DEFAULT_SESSION_HOURS,
    TWILIO_BLUEPRINTS,
    LoginLimit,
    configure_login_limit,
    configure_sessions,
    login_wait_page,
)
from engine.web.auth import LOGIN_WAIT as LOGIN_WAIT  # (where the tests look for it)
from engine.web.control import control
from engine.web.outbound_api import outbound_api

log = logging.getLogger(__name__)

EXTENSION = "phoney.limiter"
LOGIN_ENDPOINT = "auth.login"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words and digits everywhere

# -- logs -----------------------------------------------------------------------------------------

_E164 = re.compile(r"(?<![\w+%])(\+|%2[Bb])(\d{7,15})(?![\d])")
_QUOTED = r"""\\"(?:(?!\\").)*\\"|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"""
_FIELD = re.compile(
    r"""(?P<key>(?P<kq>\\?["'])?\b(?:SpeechResult|UnstableSpeechResult|StableSpeechResult|speech|
                         text|transcript|pending|utterance|Digits|digits)\b(?(kq)(?P=kq)))
        (?P<sep>(?(kq)\s*[:=,]\s*|\s*[:=]\s*))
        (?P<value>""" + _QUOTED + r"""
                 |\[\s*(?:""" + _QUOTED + r""")(?:\s*,\s*(?:""" + _QUOTED + r"""))*\s*\]
                 |(?(kq)[^\s,}\]&]+
                  |(?:(?![,;]?\s+[A-Za-z_][\w.\-]*=|\s+HTTP/\d)[^&\r\n])+))""",
    re.VERBOSE)
"""A speech, text or digits field and its whole value: quoted (also as escaped JSON, or a list
of quoted strings), or bare. A bare value after a quoted key (JSON, a repr) ends at `,`, `}`,
`]` or a space; after a bare key (a form, `key=value` text) it runs to the next `&`, the end of
the line, the next `name=` field, or an access log's ` HTTP/1.1`: speech has spaces and commas
in it, and a form-encoded value ends only at `&`."""
_NATIONAL = re.compile(
    r"""(?<![\w.+\-/:%])(?:\+?1[-.\ ])?
        (?:\(\d{3}\)\ ?\d{3}[-.\ ]|\d{3}(?P<sep>[-.])\d{3}(?P=sep))\d{4}
        (?![\w\-]|[.:/]\d)""",
    re.VERBOSE)
"""A national number written with separators (`(555) 123-4567`, `555-123-4567`,
`555.123.4567`), maybe with `1-` or `+1 ` before."""
_NATIONAL_HINT = re.compile(r"\d{3}[-.\ )]\ ?\d{3}[-.\ ]\d{4}")
"""Found in every match of _NATIONAL: the cheap test that comes first."""
_INTERNATIONAL = re.compile(r"\+(?<![\w+%]\+)\d{1,3}(?:[ .\-]\(?\d{1,5}\)?){2,6}"
                            r"(?![\w\-]|[.:/]\d)")
"""An international number written with separators (`+44 20 7946 0958`)."""
_DIGIT = re.compile(r"\d")
_FIELD_WORDS = ("SpeechResult", "speech", "text", "transcript", "pending", "utterance",
                "Digits", "digits")
"""A word every match of _FIELD holds (kept with it: a new key there needs its word here)."""
REDACTED = "[redacted]"
SECRET = "[secret]"


def mask_e164(match: re.Match[str]) -> str:
    """The mask for one E.164 number matched in a log line: its `+` (or `%2B`), the first and
    last four digits around `***` (`+1555***4567`); under 9 digits, no digit (`+***`)."""
    plus, digits = match.group(1), match.group(2)
    if len(digits) < 9:
        return f"{plus}***"
    return f"{plus}{digits[:4]}***{digits[-4:]}"


def mask_separated(match: re.Match[str]) -> str:
    """The mask for a number written with separators: every digit but the last four as `*`,
    the separators kept (`(555) 123-4567` -> `(***) ***-4567`); a match of fewer than 8 digits
    (not a phone number) is left as it is."""
    text = match.group(0)
    digits = sum(character.isdigit() for character in text)
    if not 8 <= digits <= 15:
        return text
    hidden = digits - 4
    return _DIGIT.sub(lambda _: "*", text, count=hidden)


def _redact_field(match: re.Match[str]) -> str:
    value = match.group("value")
    if value.startswith("["):  # a list of quoted strings: one quoted mask
        inner = value[1:].lstrip()
        quote = '\\"' if inner.startswith('\\"') else inner[:1]
        masked = f"[{quote}{REDACTED}{quote}]"
    else:
        quote = '\\"' if value.startswith('\\"') else (
            value[0] if value[:1] in ("'", '"') else "")
        masked = f"{quote}{REDACTED}{quote}"
    return f"{match.group('key')}{match.group('sep')}{masked}"


class RedactingFilter(logging.Filter):
    """Masks numbers, speech and secrets in a record's message, traceback and stack."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add_secrets(self, values: Iterable[str]) -> None:
        """Mask these values as `[secret]` from now on (empty ones, and those shorter than
        MIN_SECRET_CHARS, are ignored). Secrets are only ever added; thread-safe."""
        found = {value for value in values if value and len(value) >= MIN_SECRET_CHARS}
        with self._lock:
            if found - self._secrets:
                self._secrets |= found
                ordered = sorted(self._secrets, key=len, reverse=True)  # longest first
                self._pattern = re.compile("|".join(re.escape(value) for value in ordered))

    def clean(self, text: str) -> str:
        """`text` with the secrets as `[secret]`, the values of speech, text and digits fields
        as `[redacted]` (their quotes kept), E.164 numbers masked (`mask_e164`) and numbers
        written with separators too (`mask_separated`)."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(SECRET, text)
        # Each pattern runs only where it can match (most lines hold no field name and no
        # number): every log line of the process, the access log's included, comes here.
        if any(word in text for word in _FIELD_WORDS):
            text = _FIELD.sub(_redact_field, text)
        if "+" in text or "%2" in text:
            text = _E164.sub(mask_e164, text)
        if _NATIONAL_HINT.search(text):
            text = _NATIONAL.sub(mask_separated, text)
        if "+" in text:
            text = _INTERNATIONAL.sub(mask_separated, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Clean `record`'s message (with its arguments merged in), traceback and stack in
        place, once per record. Always True: no record is dropped, and one whose message does
        not format is left for the handler to report."""
        if getattr(record, "_phoney_redacted", False):
            return True
        record.__dict__["_phoney_redacted"] = True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        cleaned = self.clean(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            # Formatters use a record's exc_text when it has one: this is what they will print.
            record.exc_text = self.clean(_FORMATTER.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        return True


_FORMATTER = logging.Formatter()
_FILTER = RedactingFilter()


def log_filter() -> RedactingFilter:
    """The process's redacting filter (one for every app: logging is process-wide)."""
    return _FILTER


def configured_secrets(settings: Settings) -> list[str]:
    """The secret values of `settings`, to mask in logs: the Twilio token, the OpenAI key, the
    Pusher secret, the dashboard password, the secret key, the metrics token, ENCRYPTION_KEY
    (whole and each entry) and the password in STORE_URL; those not set are left out."""
    values = [settings.twilio_auth_token, settings.openai_api_key, settings.pusher_secret,
              settings.dashboard_password, settings.secret_key,
              str(getattr(settings, "metrics_token", "") or "")]
    key = settings.encryption_key.strip()
    if key:
        values += [key, *(entry.strip() for entry in key.split(","))]
    try:
        password = urlsplit(settings.store_url).password
    except ValueError:
        password = None
    if password:
        values.append(password)
    return [value for value in values if value]


def install_log_redaction(settings: Settings) -> RedactingFilter:
    """Mask numbers, speech and this app's secrets in every log record from now on."""
    _FILTER.add_secrets(configured_secrets(settings))
    root = logging.getLogger()
    if _FILTER not in root.filters:
        root.addFilter(_FILTER)
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "phoney_redacting", False):
        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            _FILTER.filter(record)
            return record

        make_record.phoney_redacting = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(make_record)
    return _FILTER


# -- headers --------------------------------------------------------------------------------------

def pusher_hosts(settings: Settings) -> list[str]:
    """Where pusher-js connects: the cluster's hosts, or PUSHER_HOST's (a self-hosted server)."""
    if not (settings.pusher_app_id and settings.pusher_key and settings.pusher_secret):
        return []
    host = settings.pusher_host.strip()
    if host:
        parts = urlsplit(host if "://" in host else f"https://{host}")
        if parts.hostname and not parts.hostname.endswith(".pusher.com"):
            where = parts.hostname + (f":{parts.port}" if parts.port else "")
            secure = parts.scheme != "http"
            return [f"{'wss' if secure else 'ws'}://{where}",
                    f"{'https' if secure else 'http'}://{where}"]
    cluster = settings.pusher_cluster.strip() or "mt1"
    return [f"wss://ws-{cluster}.pusher.com", f"https://sockjs-{cluster}.pusher.com"]


def security_headers(settings: Settings) -> dict[str, str]:
    """The headers every response gets unless it sets them itself: the Content-Security-Policy
    (own scripts, styles and images, `data:` images, connections to itself and to Pusher's
    hosts), nosniff, same-origin referrers, no framing, and HSTS when PUBLIC_BASE_URL is https."""
    connect = " ".join(["'self'", *pusher_hosts(settings)])
    headers = {
        "Content-Security-Policy": (
            f"default-src 'self'; connect-src {connect}; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
            "form-action 'self'; object-src 'none'"),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }
    if settings.public_base_url.strip().lower().startswith("https://"):
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


def _install_headers(app: Flask, settings: Settings) -> None:
    defaults = [(name.lower(), name, value) for name, value in security_headers(settings).items()]

    def add_headers(response: Response) -> Response:
        # One pass over what the response set, one extend: a third of `setdefault` a header,
        # which scans the headers each time (on every webhook).
        headers = response.headers
        present = {name.lower() for name, _ in headers}  # (name, value) pairs
        headers.extend([(name, value) for lower, name, value in defaults
                        if lower not in present])
        return response

    app.after_request(add_headers)


# -- rate limits ----------------------------------------------------------------------------------

def limiter_storage(store_url: str) -> tuple[str, dict[str, Any]]:
    """Flask-Limiter's storage URI and options: the store's Redis, or this process's memory."""
    url = store_url.strip()
    scheme, _, rest = url.partition(":")
    if scheme.lower() not in ("redis", "rediss", "unix"):
        return "memory://", {}
    base, _, query = f"{scheme.lower()}:{rest}".partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    prefix = dict(params).get("prefix", DEFAULT_PREFIX)
    # The store's own parameters mean nothing to redis-py; keep the others (db, ssl_...).
    kept = [(name, value) for name, value in params
            if name not in ("prefix", "ended_ttl", "active_ttl")]
    if base.startswith("unix:"):
        base = "redis+" + base
    uri = base + (f"?{urlencode(kept)}" if kept else "")
    return uri, {"key_prefix": f"{prefix}limits", "socket_timeout": 2,
                 "socket_connect_timeout": 2}


def _limit(text: str, setting: str) -> str | None:
    """A Flask-Limiter limit string, checked now (a typo fails at start, not at a request)."""
    rate = parse_rate(text, setting)
    return None if rate is None else text.strip()


def _too_many(error: TooManyRequests) -> Response | tuple[Response | str, int]:
    retry = getattr(error, "retry_after", None)
    if request.endpoint == LOGIN_ENDPOINT or request.path == "/login":
        page, status = login_wait_page()
        if retry is not None:
            page.headers.setdefault("Retry-After", str(retry))
        return page, status
    body: dict[str, Any] = {"error": "too many requests",
                            "detail": f"rate limit exceeded ({error.description})"}
    if retry is not None:
        body["retry_after"] = retry
    return jsonify(body), 429


def install_rate_limits(app: Flask, settings: Settings) -> Limiter:
    """Put Flask-Limiter on `app` (call after the blueprints) and return it, also kept in
    `app.extensions[EXTENSION]`.

    Per client address: every call control request, one count for all, by API_RATE_LIMIT;
    sign-in attempts by LOGIN_RATE_LIMIT, counted by the login view itself in the store, before
    it compares the password (engine/web/auth.py), so the count is one for every process and
    concurrent attempts cannot slip past it. "off" turns either off; a limit that does not
    parse raises ValueError here. Over a limit the answer is a 429 (JSON, or the login page).
    Twilio's webhooks skip the limiter. Flask-Limiter's storage errors are swallowed: with its
    Redis unreachable, call control passes unlimited.
    """
    uri, options = limiter_storage(settings.store_url)
    limiter = Limiter(get_remote_address, app=app, storage_uri=uri, storage_options=options,
                      strategy="fixed-window", headers_enabled=True, swallow_errors=True,
                      key_prefix="phoney")
    login = parse_rate(settings.login_rate_limit, "LOGIN_RATE_LIMIT")
    configure_login_limit(app, LoginLimit(*login) if login else None)
    api = _limit(settings.api_rate_limit, "API_RATE_LIMIT")
    if api:
        limiter.shared_limit(api, scope="control")(control)  # one count for all control
        # Placing calls and stopping campaigns are control too; reading campaigns is not.
        limiter.shared_limit(api, scope="control", methods=["POST"])(outbound_api)
    app.register_error_handler(429, _too_many)
    app.extensions[EXTENSION] = limiter
    skipped = skip_limiter_on_twilio_routes(app, limiter)
    if skipped != 3:
        log.warning("Flask-Limiter registered %d request hooks, not the 3 expected: Twilio's "
                    "webhooks may still run them", skipped)
    return limiter


def _is_limiter_hook(function: Any, limiter: Limiter) -> bool:
    if getattr(function, "__self__", None) is limiter:  # _check_request_limit, a method
        return True
    return isinstance(function, functools.partial) and any(  # header and teardown hooks
        argument is limiter for argument in function.args)


def skip_limiter_on_twilio_routes(app: Flask, limiter: Limiter) -> int:
    """Make the app-wide hooks Flask-Limiter registered (limit check, rate-limit headers, its
    teardown) pass over requests routed to TWILIO_BLUEPRINTS; returns how many it changed.

    Flask has no app-wide hook "for every blueprint but one", so each hook is wrapped in place;
    everything else keeps its limits as before."""
    changed = 0

    def before(hook: Callable[[], Any]) -> Callable[[], Any]:
        @functools.wraps(hook)
        def unless_twilio() -> Any:
            return None if request.blueprint in TWILIO_BLUEPRINTS else hook()
        return unless_twilio

    def after(hook: Callable[[Response], Response]) -> Callable[[Response], Response]:
        @functools.wraps(hook)
        def unless_twilio(response: Response) -> Response:
            return response if request.blueprint in TWILIO_BLUEPRINTS else hook(response)
        return unless_twilio

    def teardown(hook: Callable[[BaseException | None], Any]
                 ) -> Callable[[BaseException | None], Any]:
        @functools.wraps(hook)
        def unless_twilio(error: BaseException | None = None) -> Any:
            return None if request.blueprint in TWILIO_BLUEPRINTS else hook(error)
        return unless_twilio

    wrappers: tuple[tuple[dict[Any, list[Any]], Callable[[Any], Any]], ...] = (
        (app.before_request_funcs, before), (app.after_request_funcs, after),
        (app.teardown_request_funcs, teardown))
    for registry, wrap in wrappers:
        hooks = registry.get(None, [])
        for index, hook in enumerate(hooks):
            if _is_limiter_hook(hook, limiter):
                hooks[index] = wrap(hook)
                changed += 1
    return changed


MAX_BODY_BYTES = 1024 * 1024
"""The largest request body any route takes (the dashboard's forms and JSON are a few kB)."""

MAX_FIELD_BYTES = 64 * 1024
"""The largest multipart form field (werkzeug's MAX_FORM_MEMORY_SIZE, for multipart only)."""

MAX_FORM_FIELDS = 200
"""The most fields a form may have (werkzeug's MAX_FORM_PARTS)."""


BODY_LIMITS = {"MAX_CONTENT_LENGTH": MAX_BODY_BYTES,
               "MAX_FORM_MEMORY_SIZE": MAX_FIELD_BYTES, "MAX_FORM_PARTS": MAX_FORM_FIELDS}
"""Flask's request size settings as `create_app` sets them (before a test's `config`)."""


def install_security(app: Flask, settings: Settings) -> None:
    """Headers, rate limits and the sessions' lifetime (SESSION_HOURS; ValueError when it is
    not 1 to 744 hours); call after the blueprints are registered and `configure_auth`."""
    configure_sessions(app, getattr(settings, "session_hours", DEFAULT_SESSION_HOURS))
    _install_headers(app, settings)
    install_rate_limits(app, settings)
