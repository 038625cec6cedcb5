"""Settings from the environment (see `.env.example`), overridable by `create_app(config)`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_KEYS = (
    "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_API_URL", "OPENAI_API_KEY",
    "OPENAI_BASE_URL", "OPENAI_MODEL", "PUSHER_APP_ID", "PUSHER_KEY", "PUSHER_SECRET",
    "PUSHER_CLUSTER", "PUSHER_HOST", "PUSHER_CHANNELS", "STORE_URL", "PUBLIC_BASE_URL",
    "DEFAULT_FLOW", "DASHBOARD_PASSWORD", "ENCRYPTION_KEY", "SECRET_KEY", "TRANSFER_ALLOW",
    "PROJECT_ROOT", "METRICS_TOKEN", "LOG_FORMAT", "LOG_LEVEL", "TRUSTED_PROXIES",
    "CALLER_CALL_LIMIT", "MAX_CALL_TURNS", "MAX_CALL_SECONDS", "LOGIN_RATE_LIMIT",
    "API_RATE_LIMIT", "ALERT_WEBHOOK_URL", "ALERT_KINDS", "SESSION_HOURS",
    "SSE_STREAMS_PER_SESSION", "SSE_STREAMS_PER_PROCESS", "RETENTION_DAYS", "MAX_LIVE_CALLS",
    "MODEL_CALLS_PER_HOUR", "CALL_WEBHOOK_URL", "WEBHOOK_SECRET", "HTTP_ALLOW_HOSTS",
    "OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_ROLES_CLAIM",
    "OIDC_DEFAULT_ROLE", "OUTBOUND_FROM", "DO_NOT_CALL_FILE", "QUIET_HOURS",
)
# Security limits (README "Security"): empty means the default; rate limits read like
# Flask-Limiter's ("5/minute", "20 per hour"), and "off" turns one off.
_WHOLE_NUMBERS = ("max_call_turns", "max_call_seconds", "session_hours",
                  "sse_streams_per_session", "sse_streams_per_process")
_DEFAULT_WHEN_EMPTY = ("caller_call_limit", "login_rate_limit", "api_rate_limit",
                       "max_live_calls", "model_calls_per_hour", *_WHOLE_NUMBERS)


@dataclass(frozen=True)
class Settings:
    """The process's configuration: one field per key of `ENV_KEYS`, lower-cased, frozen once
    read. Build it with `Settings.load`; the comments say what the less obvious fields mean.
    """

    project_root: Path
    store_url: str
    default_flow: str = "receptionist"
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_api_url: str = ""  # e.g. a local Twilio API double in tests; default api.twilio.com
    openai_api_key: str = ""
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    pusher_app_id: str = ""
    pusher_key: str = ""
    pusher_secret: str = ""
    pusher_cluster: str = ""
    pusher_host: str = ""  # name, name:port or URL; wins over the cluster (tests: a double)
    pusher_channels: str = ""  # public, private, encrypted; empty: encrypted with ENCRYPTION_KEY
    public_base_url: str = ""
    dashboard_password: str = ""
    encryption_key: str = ""
    secret_key: str = ""
    transfer_allow: tuple[str, ...] = ()
    metrics_token: str = ""  # when set, GET /metrics wants `Authorization: Bearer <token>`
    log_format: str = "text"  # text, or json: one JSON object a line
    log_level: str = ""  # empty: INFO when serving, WARNING for other `flask` commands
    trusted_proxies: str = ""  # proxies that add X-Forwarded-For (engine/web/proxy.py)
    caller_call_limit: str = "20/hour"  # new calls from one caller number, all processes
    max_call_turns: int = 100  # server-wide ceilings for flows that set lower limits or none
    max_call_seconds: int = 3600
    max_live_calls: str = "100"  # calls in progress at once, all processes; off: no ceiling
    model_calls_per_hour: str = "2000"  # model requests in an hour, all processes; off: none
    login_rate_limit: str = "5/minute"  # sign-in attempts per client address
    api_rate_limit: str = "30/minute"  # call control (transfer, end) per client address
    session_hours: int = 12  # a dashboard sign-in lasts this long (1 to 744)
    alert_webhook_url: str = ""  # Slack-compatible webhook for call.error alerts; empty: none
    alert_kinds: str = ""  # call.error kinds to alert on, comma separated; empty: the default
    sse_streams_per_session: int = 4  # open /api/events streams of one dashboard session
    sse_streams_per_process: int = 0  # of a process; 0: a quarter of GUNICORN_THREADS
    retention_days: str = ""  # days finished calls are kept; empty: 30; 0 or off: forever
    call_webhook_url: str = ""  # every flow's call.end and call.analysis posted here; empty: none
    webhook_secret: str = ""  # signs every webhook post (X-Phoney-Signature)
    oidc_issuer: str = ""  # OpenID Connect sign-in's provider (engine/web/sso.py); empty: off
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_roles_claim: str = "roles"  # the ID token's claim that names the user's roles
    oidc_default_role: str = "viewer"  # without that claim; none: such users are refused
    http_allow_hosts: str = ""  # hosts a flow's http nodes and tools may reach; empty: none
    outbound_from: str = ""  # E.164 number outbound calls come from; empty: the flow's numbers[0]
    do_not_call_file: str = ""  # numbers never called, one a line; relative to the project root
    quiet_hours: str = ""  # callee's local time nobody is called: empty 21:00-08:00; off: none

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Environment first, then `overrides` (upper-case keys, as in the environment).
        SettingsError, naming every setting that does not read, instead of settings."""
        settings, problems = cls.read(overrides, environ)
        if problems:
            raise SettingsError(problems)
        return settings

    @classmethod
    def read(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
        """As `load`, but a setting that does not read keeps its default and is described in
        the list returned beside the settings (one line each), for `flask doctor`."""
        source: dict[str, Any] = {key: value for key, value in (environ or os.environ).items()
                                  if key in ENV_KEYS and value != ""}
        source.update({key: value for key, value in (overrides or {}).items()
                       if key in ENV_KEYS})
        root = Path(source.get("PROJECT_ROOT") or Path.cwd()).resolve()
        values: dict[str, Any] = {"project_root": root,
                                  "store_url": source.get("STORE_URL")
                                  or f"sqlite:///{root / 'instance' / 'phoney.sqlite3'}"}
        problems: list[str] = []
        for spec in fields(cls):
            key = spec.name.upper()
            if spec.name in values or key not in source:
                continue
            value = source[key]
            if spec.name == "transfer_allow" and isinstance(value, str):
                value = tuple(item.strip() for item in value.split(",") if item.strip())
            if spec.name in _DEFAULT_WHEN_EMPTY and str(value).strip() == "":
                continue
            if spec.name in _WHOLE_NUMBERS:
                try:
                    value = int(str(value).strip())
                except ValueError:
                    problems.append(f"{key}={value!r}: write a whole number, such as "
                                    f"{spec.default}")
                    continue
            values[spec.name] = value
        return cls(**values), problems


class SettingsError(ValueError):
    """Settings a process cannot start with: `problems` has one line for each, naming the
    variable and what to write instead."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))
