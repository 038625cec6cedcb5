"""Every setting checked before anything is built from it: one line per problem, naming the
variable, what it holds and what to write instead.

`checked_settings(config)` is what `create_app` reads its settings with: `SettingsError`
(engine/settings.py) lists every problem at once, so a server (`flask run`, gunicorn `app:app`)
or any `flask` command stops before it opens a store or starts a thread, instead of failing
later with a traceback such as the Pusher SDK's `ValueError: Invalid app id`. The entry point
(app.py, through engine/web/startup.py) prints the lines and exits.

Each check uses the parser that later reads the setting, where there is one, so the two cannot
disagree. `flask doctor` (engine/doctor/) shows the same lines, and then checks what can only be
checked by trying (the store, the model, Pusher).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from engine.actions.hosts import HostPolicy
from engine.calls.limits import parse_ceiling, parse_rate
from engine.events.alerts import check_url
from engine.events.pusher_sink import ChannelNames
from engine.outbound.numbers import e164
from engine.outbound.quiet import QuietHours
from engine.retention import retention_days
from engine.settings import ENV_KEYS, Settings, SettingsError
from engine.store.encrypted import fernet_key
from engine.web.auth import session_hours
from engine.web.proxy import trusted_proxies
from engine.web.roles import ROLE_NAMES, parse_role

LOG_FORMATS = ("text", "json")
_CLUSTER = re.compile(r"\A[a-z0-9-]{1,40}\Z")
_FLOW_ID = re.compile(r"\A[A-Za-z0-9_.-]+\Z")
_SCHEMES = ("sqlite", "redis", "rediss", "unix")

Check = Callable[[Settings], str | None]


def _url(key: str, value: str, example: str, path_allowed: bool = True) -> str | None:
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{key}={value!r}: write an http(s) URL, such as {example}"
    if not path_allowed and (parts.path not in ("", "/") or parts.query or parts.fragment):
        return f"{key}={value!r}: write the scheme and host only, such as {example}"
    return None


def _raises(parse: Callable[[], object]) -> str | None:
    """The message of the ValueError `parse` raises (the parsers' own say what to write)."""
    try:
        parse()
    except ValueError as error:
        return str(error)
    return None


def _project_root(settings: Settings) -> str | None:
    if not settings.project_root.is_dir():
        return (f"PROJECT_ROOT={str(settings.project_root)!r}: no such directory; write the "
                f"directory that holds flows/ and personalities/")
    return None


def _store_url(settings: Settings) -> str | None:
    url = settings.store_url.strip()
    scheme, colon, rest = url.partition(":")
    if not colon or scheme.lower() not in _SCHEMES:
        return (f"STORE_URL={url!r}: write sqlite:///relative/path.db, "
                f"sqlite:////absolute/path.db or redis://host:6379/0")
    if scheme.lower() == "sqlite" and rest != "//" and \
            (not rest.startswith("///") or rest == "///" or "?" in rest):
        return (f"STORE_URL={url!r}: write sqlite:/// and then the path (three slashes; a "
                f"fourth for an absolute path), with no query")
    return None


def _twilio_api_url(settings: Settings) -> str | None:
    value = settings.twilio_api_url
    return _url("TWILIO_API_URL", value, "https://api.twilio.com") if value else None


def _openai_base_url(settings: Settings) -> str | None:
    value = settings.openai_base_url
    return _url("OPENAI_BASE_URL", value, "https://api.openai.com/v1") if value else None


def _openai_model(settings: Settings) -> str | None:
    if settings.openai_api_key and not settings.openai_model.strip():  # offline: unused
        return "OPENAI_MODEL='': write a chat model's name, such as gpt-4o-mini"
    return None


def _pusher_app_id(settings: Settings) -> str | None:
    value = settings.pusher_app_id.strip()
    if value and not value.isdigit():
        # The pusher SDK refuses anything else with "ValueError: Invalid app id".
        return (f"PUSHER_APP_ID={settings.pusher_app_id!r}: write the app's numeric id "
                f"(app_id in the Pusher dashboard's App Keys), such as 1234567")
    return None


def _pusher_cluster(settings: Settings) -> str | None:
    value = settings.pusher_cluster.strip()
    if value and not _CLUSTER.match(value):
        return (f"PUSHER_CLUSTER={settings.pusher_cluster!r}: write the cluster's name from "
                f"the Pusher dashboard, such as eu, us2 or ap1")
    return None


def _pusher_host(settings: Settings) -> str | None:
    value = settings.pusher_host.strip()
    if not value:
        return None
    try:
        parts = urlsplit(value if "://" in value else f"https://{value}")
        parts.port  # noqa: B018
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        return (f"PUSHER_HOST={value!r}: write a host, host:port or URL, such as "
                f"api-eu.pusher.com or http://127.0.0.1:6001")
    return None


def _pusher_channels(settings: Settings) -> str | None:
    if not settings.pusher_channels.strip():
        return None
    return _raises(lambda: ChannelNames.choose(settings.pusher_channels,
                                               settings.encryption_key))


def _public_base_url(settings: Settings) -> str | None:
    value = settings.public_base_url
    return _url("PUBLIC_BASE_URL", value, "https://phoney.example.com",
                path_allowed=False) if value else None


def _default_flow(settings: Settings) -> str | None:
    if not _FLOW_ID.match(settings.default_flow.strip()):
        return (f"DEFAULT_FLOW={settings.default_flow!r}: write a flow's id (its file name "
                f"in flows/ without .yaml), such as receptionist")
    return None


def _encryption_key(settings: Settings) -> str | None:
    if not settings.encryption_key.strip():
        return None
    entries = settings.encryption_key.split(",")
    if any(not entry.strip() for entry in entries):
        return ("ENCRYPTION_KEY: an empty key between commas; write one key, or several "
                "separated by single commas (the first encrypts)")
    return _raises(lambda: [fernet_key(entry) for entry in entries])


def _log_format(settings: Settings) -> str | None:
    value = settings.log_format.strip().lower()
    if value and value not in LOG_FORMATS:
        return f"LOG_FORMAT={settings.log_format!r}: write text or json"
    return None


def _log_level(settings: Settings) -> str | None:
    value = settings.log_level.strip().upper()
    if value and not value.isdigit() and not isinstance(logging.getLevelName(value), int):
        return (f"LOG_LEVEL={settings.log_level!r}: write DEBUG, INFO, WARNING, ERROR or "
                f"CRITICAL")
    return None


def _not_negative(key: str, zero: str) -> Check:
    def check(settings: Settings) -> str | None:
        value = getattr(settings, key.lower())
        if isinstance(value, int) and value < 0:
            return f"{key}={value!r}: write 0 or more (0 {zero})"
        return None
    return check


def _alert_webhook_url(settings: Settings) -> str | None:
    if settings.alert_webhook_url.strip() and \
            _raises(lambda: check_url(settings.alert_webhook_url)):
        # Not shown: a webhook URL holds its token.
        return ("ALERT_WEBHOOK_URL: write an http(s) URL, such as a Slack incoming webhook's "
                "https://hooks.slack.com/services/...")
    return None


MIN_WEBHOOK_SECRET = 16


def _call_webhook_url(settings: Settings) -> str | None:
    if not settings.call_webhook_url.strip():
        return None
    if _raises(lambda: check_url(settings.call_webhook_url)):
        # Not shown: a webhook URL may hold a token.
        return "CALL_WEBHOOK_URL: write an http(s) URL, such as https://crm.example.com/phoney"
    if not settings.webhook_secret.strip():
        return ("CALL_WEBHOOK_URL is set but WEBHOOK_SECRET is not: set WEBHOOK_SECRET (16 or "
                "more characters, e.g. from `openssl rand -hex 32`) so the receiver can verify "
                "that posts come from this server")
    return None


def _webhook_secret(settings: Settings) -> str | None:
    value = settings.webhook_secret.strip()
    if value and len(value) < MIN_WEBHOOK_SECRET:
        return (f"WEBHOOK_SECRET: {len(value)} characters is too short to sign with; write "
                f"{MIN_WEBHOOK_SECRET} or more, e.g. from `openssl rand -hex 32`")
    return None


_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_OIDC_TRIO = ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET")


def _oidc_issuer(settings: Settings) -> str | None:
    value = settings.oidc_issuer.strip()
    if not value:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        parts = None
    local = parts is not None and parts.hostname in _LOCAL_HOSTS
    if parts is None or not parts.hostname or not (
            parts.scheme == "https" or (parts.scheme == "http" and local)):
        return (f"OIDC_ISSUER={value!r}: write the provider's https URL (its issuer, where "
                f"/.well-known/openid-configuration is), such as https://login.example.com/"
                f"realms/staff; http only for localhost")
    if parts.query or parts.fragment:
        return f"OIDC_ISSUER={value!r}: write the issuer URL without a query or fragment"
    return None


def _oidc_part(key: str) -> Check:
    def check(settings: Settings) -> str | None:
        given = [name for name in _OIDC_TRIO if getattr(settings, name.lower()).strip()]
        if given and key not in given:
            return (f"{key} is not set, but {', '.join(given)} is: OpenID Connect sign-in "
                    f"needs all three of {', '.join(_OIDC_TRIO)} (or none of them)")
        return None
    return check


def _oidc_issuer_check(settings: Settings) -> str | None:
    return _oidc_part("OIDC_ISSUER")(settings) or _oidc_issuer(settings)


def _oidc_roles_claim(settings: Settings) -> str | None:
    value = settings.oidc_roles_claim
    # Empty is unset, as for every other setting (sso.py then reads `roles`).
    if any(char.isspace() for char in value.strip()):
        return (f"OIDC_ROLES_CLAIM={value!r}: write the name of the ID token's claim that lists "
                f"the user's roles, such as roles or groups")
    return None


def _oidc_default_role(settings: Settings) -> str | None:
    value = settings.oidc_default_role.strip()
    if value and value.lower() != "none" and parse_role(value) is None:
        return (f"OIDC_DEFAULT_ROLE={value!r}: use one of {', '.join(ROLE_NAMES)}, or none to "
                f"refuse users whose ID token names no role")
    return None


def _at_least_one(key: str) -> Check:
    def check(settings: Settings) -> str | None:
        value = getattr(settings, key.lower())
        if isinstance(value, int) and value < 1:
            return f"{key}={value!r}: write 1 or more"
        return None
    return check


def _do_not_call_file(settings: Settings) -> str | None:
    if not settings.do_not_call_file:
        return None
    path = settings.project_root / settings.do_not_call_file
    if not path.is_file():
        return (f"DO_NOT_CALL_FILE={settings.do_not_call_file!r}: no such file under "
                f"{settings.project_root}; write the file (one number a line) or unset it")
    return None


CHECKS: Mapping[str, Check | None] = {
    "PROJECT_ROOT": _project_root,
    "STORE_URL": _store_url,
    "TWILIO_ACCOUNT_SID": None,  # its shape is flask doctor's: a wrong one only fails control
    "TWILIO_AUTH_TOKEN": None,
    "TWILIO_API_URL": _twilio_api_url,
    "OPENAI_API_KEY": None,
    "OPENAI_BASE_URL": _openai_base_url,
    "OPENAI_MODEL": _openai_model,
    "PUSHER_APP_ID": _pusher_app_id,
    "PUSHER_KEY": None,
    "PUSHER_SECRET": None,
    "PUSHER_CLUSTER": _pusher_cluster,
    "PUSHER_HOST": _pusher_host,
    "PUSHER_CHANNELS": _pusher_channels,
    "PUBLIC_BASE_URL": _public_base_url,
    "DEFAULT_FLOW": _default_flow,
    "DASHBOARD_PASSWORD": None,
    "ENCRYPTION_KEY": _encryption_key,
    "SECRET_KEY": None,
    "TRANSFER_ALLOW": None,  # numbers in any punctuation, SIP addresses: dialled as written
    "METRICS_TOKEN": None,
    "LOG_FORMAT": _log_format,
    "LOG_LEVEL": _log_level,
    "TRUSTED_PROXIES": lambda s: _raises(lambda: trusted_proxies(s.trusted_proxies)),
    "CALLER_CALL_LIMIT": lambda s: _raises(
        lambda: parse_rate(s.caller_call_limit, "CALLER_CALL_LIMIT")),
    "MAX_CALL_TURNS": _not_negative("MAX_CALL_TURNS", "for no ceiling"),
    "MAX_CALL_SECONDS": _not_negative("MAX_CALL_SECONDS", "for no ceiling"),
    "LOGIN_RATE_LIMIT": lambda s: _raises(
        lambda: parse_rate(s.login_rate_limit, "LOGIN_RATE_LIMIT")),
    "API_RATE_LIMIT": lambda s: _raises(lambda: parse_rate(s.api_rate_limit, "API_RATE_LIMIT")),
    "ALERT_WEBHOOK_URL": _alert_webhook_url,
    "ALERT_KINDS": None,  # any kind may be named: those of later versions are no error
    "SESSION_HOURS": lambda s: _raises(lambda: session_hours(s.session_hours)),
    "SSE_STREAMS_PER_SESSION": _at_least_one("SSE_STREAMS_PER_SESSION"),
    "SSE_STREAMS_PER_PROCESS": _not_negative("SSE_STREAMS_PER_PROCESS",
                                              "for a quarter of GUNICORN_THREADS"),
    "RETENTION_DAYS": lambda s: _raises(lambda: retention_days(s.retention_days)),
    "MAX_LIVE_CALLS": lambda s: _raises(
        lambda: parse_ceiling(s.max_live_calls, "MAX_LIVE_CALLS")),
    "MODEL_CALLS_PER_HOUR": lambda s: _raises(
        lambda: parse_ceiling(s.model_calls_per_hour, "MODEL_CALLS_PER_HOUR")),
    "CALL_WEBHOOK_URL": _call_webhook_url,
    "WEBHOOK_SECRET": _webhook_secret,
    "HTTP_ALLOW_HOSTS": lambda s: _raises(lambda: HostPolicy.parse(s.http_allow_hosts)),
    "OIDC_ISSUER": _oidc_issuer_check,
    "OIDC_CLIENT_ID": _oidc_part("OIDC_CLIENT_ID"),
    "OIDC_CLIENT_SECRET": _oidc_part("OIDC_CLIENT_SECRET"),
    "OIDC_ROLES_CLAIM": _oidc_roles_claim,
    "OIDC_DEFAULT_ROLE": _oidc_default_role,
    "OUTBOUND_FROM": lambda s: _raises(lambda: e164(s.outbound_from, "OUTBOUND_FROM"))
    if s.outbound_from else None,
    "DO_NOT_CALL_FILE": _do_not_call_file,
    "QUIET_HOURS": lambda s: _raises(lambda: QuietHours.parse(s.quiet_hours)),
}
"""The check of each setting (None: free text, or checked only by `flask doctor`). A test keeps
it in step with `ENV_KEYS`: a new setting needs its entry here."""


def check_settings(settings: Settings) -> list[str]:
    """One line for each setting that cannot be used as it is, in `ENV_KEYS` order."""
    problems = []
    for key in ENV_KEYS:
        check = CHECKS.get(key)
        found = check(settings) if check is not None else None
        if found:
            problems.append(found)
    return problems


def read_settings(config: Mapping[str, Any] | None = None) -> tuple[Settings, list[str]]:
    """The settings (environment, then `config`) and every problem with them, unread ones
    (kept at their defaults) first."""
    settings, problems = Settings.read(config)
    return settings, problems + check_settings(settings)


def checked_settings(config: Mapping[str, Any] | None = None) -> Settings:
    """The settings, or SettingsError with every problem (see the module docstring)."""
    settings, problems = read_settings(config)
    if problems:
        raise SettingsError(problems)
    return settings
