"""The audit log as the dashboard writes and shows it: who signed in (or failed to), who
transferred, ended or placed a call, who saved, made or restored a flow, who read the settings,
and every request refused for its role or its CSRF token.

Each entry has who (the signed-in user), their role, when, from where (`request.remote_addr`:
the client's address as engine/web/proxy.py derives it behind TRUSTED_PROXIES) and what (the
identifiers acted on and the answer's status). Entries live in the call store
(`CallStore.record_audit`), shared by every server process and pruned with the calls
(RETENTION_DAYS). What an entry holds is cleaned first (`clean`): no passwords, tokens, codes,
states, nonces or keys, whatever a caller of `record` passes, and no request bodies.

Control actions and flow changes are recorded by an after-request hook from AUDITED (endpoint:
action), so the routes themselves stay as they are; sign-ins record themselves (auth.py,
sso.py). `GET /api/audit` and `/audit` (admin) read the log newest first, `?before=<id>` pages
back; `GET /api/settings` (admin) shows the settings, secrets as set or not, and is recorded.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, g, jsonify, render_template, request, session
from werkzeug.exceptions import BadRequest

from engine.settings import ENV_KEYS
from engine.store import AuditEntry
from engine.web.roles import current_role, route_kind
from engine.web.services import services

log = logging.getLogger(__name__)

audit = Blueprint("audit", __name__)

AUDITED: Mapping[str, str] = {
    "control.transfer_call": "call.transfer",
    "control.end_call": "call.end",
    "outbound_api.place_call": "call.dial",
    "outbound_api.stop_campaign": "campaign.stop",
    "editor_try.ring": "call.test",
    "editor_api.save": "flow.save",
    "editor_api.create": "flow.create",
    "editor_api.restore": "flow.restore",
}
"""Endpoints whose every answer is recorded, with the action's name."""

_FIELDS = ("CallSid", "call_sid", "To", "to", "target", "flow", "template", "base")
"""Fields of a request's form or JSON an entry keeps (identifiers, never free text)."""

SECRET_WORDS = re.compile(r"pass|token|secret|code|state|nonce|key|auth|cookie|session|cred",
                          re.IGNORECASE)
"""What an entry's keys may not hold: such values are dropped, whoever passes them."""
MAX_VALUE = 200
PAGE = 100
MAX_PAGE = 500


def clean(what: Mapping[str, Any]) -> dict[str, Any]:
    """`what` without the keys SECRET_WORDS names, its values as short plain JSON values."""
    kept: dict[str, Any] = {}
    for key, value in what.items():
        if SECRET_WORDS.search(key):
            continue
        if isinstance(value, bool | int | float) or value is None:
            kept[key] = value
        else:
            kept[key] = str(value)[:MAX_VALUE]
    return kept


def record(action: str, outcome: str = "ok", who: str | None = None, role: str | None = None,
           **what: Any) -> None:
    """Add an entry for this request: by `who` with `role` (default: the session's), from the
    client's address. A store that fails is logged, never raised: the action itself stands."""
    found = current_role()
    entry = AuditEntry(
        at=time.time(), who=str(session.get("user") or "") if who is None else who,
        role=(found.label if found is not None else "") if role is None else role,
        where=request.remote_addr or "", action=action, outcome=outcome, what=clean(what))
    try:
        services().store.record_audit(entry)
    except Exception:
        log.error("audit entry not stored: %s %s by %r", action, outcome, entry.who,
                  exc_info=True)
    g.phoney_audited = True


def record_refusal(reason: str) -> None:
    """Record this request as refused (`request.refused`), with why."""
    record("request.refused", "refused", method=request.method, path=request.path,
           reason=reason)


def _fields() -> dict[str, Any]:
    found: dict[str, Any] = {}
    body = request.get_json(silent=True) if request.is_json else None
    sources: list[Mapping[str, Any]] = [request.form]
    if isinstance(body, dict):
        sources.append(body)
    for source in sources:
        for name in _FIELDS:
            value = source.get(name)
            if isinstance(value, str | int) and value != "":
                found[name] = value
    return found


def _after(response: Response) -> Response:
    endpoint = request.endpoint
    if endpoint is None or g.get("phoney_audited"):
        return response
    action = AUDITED.get(endpoint)
    status = response.status_code
    if action is not None:
        outcome = "ok" if status < 400 else "refused" if status < 500 else "failed"
        record(action, outcome, **{**_fields(), **(request.view_args or {}), "status": status})
    elif status == 403 and route_kind(endpoint) not in ("public", "twilio") \
            and current_role() is not None:
        record_refusal(f"answered {status}")  # a missing CSRF token, say
    return response


def install_audit(app: Flask) -> None:
    """Record AUDITED endpoints' answers and other refused requests of `app`; give templates
    the `audit_time` filter (epoch seconds as UTC date and time)."""
    app.after_request(_after)
    app.jinja_env.filters["audit_time"] = audit_time


def audit_time(at: float) -> str:
    """Epoch seconds as `YYYY-MM-DD HH:MM:SS` in UTC."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _page() -> tuple[int, int | None]:
    try:
        limit = min(max(int(request.args.get("limit", PAGE)), 1), MAX_PAGE)
        given = request.args.get("before")
        before = int(given) if given else None
    except ValueError:
        raise BadRequest("limit and before must be whole numbers") from None
    return limit, before


def _entries() -> tuple[list[dict[str, Any]], int | None]:
    limit, before = _page()
    found = services().store.audit_entries(limit, before)
    older = found[-1].id if len(found) == limit else None
    return [entry.as_json() for entry in found], older


@audit.get("/api/audit")
def audit_api() -> Response:
    """GET /api/audit: entries newest first (`limit`, default 100; `before` an id), and
    `older`, the `before` of the next page (null on the last)."""
    entries, older = _entries()
    return jsonify(entries=entries, older=older)


@audit.get("/audit")
def audit_page() -> str:
    """The audit log as a page, newest first, a hundred at a time."""
    entries, older = _entries()
    return render_template("audit.html", entries=entries, older=older)


_SECRET_SETTING = re.compile(r"TOKEN|SECRET|PASSWORD|_KEY$|API_KEY")
_URL_SETTINGS = ("STORE_URL", "ALERT_WEBHOOK_URL", "CALL_WEBHOOK_URL")


def shown_setting(key: str, value: Any) -> Any:
    """A setting as admins see it: a secret as `set` or empty, a URL that may carry a
    credential as its scheme and host only."""
    text = value if isinstance(value, str) else None
    if _SECRET_SETTING.search(key) and key != "PUSHER_KEY":
        return "set" if value else ""
    if key in _URL_SETTINGS and text:
        parts = urlsplit(text)
        return f"{parts.scheme}://{parts.hostname or ''}{'/…' if parts.path else ''}"
    if isinstance(value, tuple):
        return list(value)
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


@audit.get("/api/settings")
def settings_api() -> Response:
    """GET /api/settings: every setting in force, secrets only as set or not; recorded."""
    settings = services().settings
    shown = {key: shown_setting(key, getattr(settings, key.lower(), None)) for key in ENV_KEYS}
    record("settings.view")
    return jsonify(settings=shown)
