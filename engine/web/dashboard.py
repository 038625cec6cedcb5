"""The dashboard pages: the calls list (`GET /`, with its filters) and one call
(`GET /calls/<CallSid>`); the overview (`GET /overview`) is in engine/web/calls_api.py.

The pages are plain Jinja2 templates with plain JavaScript and CSS from engine/web/static: no CDN
and no build step. Everything a page shows comes from the JSON routes (`/api/calls`,
`/api/calls/<CallSid>`, `/api/flows/<id>/graph`) and the live events: Pusher channels when Pusher
is configured (pusher-js is vendored in static/vendor/), server-sent events (`/api/events`)
otherwise. The page learns which, and its CSRF token, from a JSON data block
(`<script type="application/json">`, never executed), so no inline script is needed and a strict
Content-Security-Policy can come later.

`GET /api/calls/<CallSid>/transfer-targets` lists what the transfer button may dial: the call's
own flow's transfer targets and TRANSFER_ALLOW, as `/api/transfer-call` checks them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, jsonify, render_template

from engine.runtime.outcome import OUTCOMES
from engine.runtime.state import FINAL_STATUSES, CallState
from engine.store import MAX_SEARCH
from engine.web.auth import csrf_token, login_required
from engine.web.control import CALL_SID, allowed_targets
from engine.web.events_api import EXTENSION, LiveEvents
from engine.web.services import Services, services
from engine.web.twilio_rest import TwilioRest

dashboard = Blueprint("dashboard", __name__)

PUSHER_JS = "vendor/pusher-with-encryption.min.js"
"""pusher-js's browser build with end-to-end encryption (it also reads plain private channels)."""


def pusher_client_options(live: LiveEvents | None, pusher_host: str) -> dict[str, Any] | None:
    """What pusher-js needs: key, cluster, channel names; None when Pusher is not configured.

    PUSHER_HOST (a self-hosted, Pusher-compatible server, or a local double) serves websockets
    on the same host and port as its REST API, so the page connects there; Pusher's own REST
    hosts (`api-<cluster>.pusher.com`) are not websocket hosts, and the cluster decides.
    """
    if live is None or live.pusher is None:
        return None
    channels = live.pusher.channels
    options: dict[str, Any] = {
        "key": live.pusher_key, "cluster": live.pusher_cluster or "mt1", "mode": channels.mode,
        "all_calls_channel": channels.all_calls, "call_channel_prefix": f"{channels.prefix}call-",
        "auth_endpoint": "/pusher/auth" if channels.mode != "public" else None,
        "ws_host": None, "ws_port": None, "force_tls": True,
    }
    if pusher_host:
        parts = urlsplit(pusher_host if "://" in pusher_host else f"https://{pusher_host}")
        if parts.hostname and not parts.hostname.endswith(".pusher.com"):
            options.update(ws_host=parts.hostname, ws_port=parts.port,
                           force_tls=parts.scheme != "http")
    return options


def _live() -> LiveEvents | None:
    found = current_app.extensions.get(EXTENSION)
    return found if isinstance(found, LiveEvents) else None


def _control_configured(svc: Services) -> bool:
    twilio = svc.twilio or TwilioRest.from_settings(svc.settings)
    return bool(twilio.configured)


def page_config(call_sid: str | None = None) -> dict[str, Any]:
    """The page's settings, as the JSON data block of the template."""
    svc = services()
    pusher = pusher_client_options(_live(), svc.settings.pusher_host)
    return {
        "csrf_token": csrf_token(),
        "call_sid": call_sid,
        "server_time": svc.call_service.clock(),  # the calls' clock, for durations
        "transport": "pusher" if pusher else "sse",
        "sse_url": "/api/events",
        "pusher": pusher,
        "control": _control_configured(svc),
    }


@dashboard.get("/")
@login_required
def index() -> str:
    """GET /: the dashboard's list of live and recent calls (login required)."""
    config = page_config()
    return render_template("dashboard.html", config=config, pusher_js=_pusher_js(config),
                           refused=refused_edit(), outcomes=OUTCOMES, max_search=MAX_SEARCH)


@dashboard.get("/calls/<call_sid>")
@login_required
def call_page(call_sid: str) -> str:
    """GET /calls/<call_sid>: one call's page (transcript, graph, controls); 404 for a bad id."""
    if not CALL_SID.fullmatch(call_sid):
        abort(404)
    config = page_config(call_sid)
    return render_template("call.html", config=config, call_sid=call_sid,
                           pusher_js=_pusher_js(config), refused=refused_edit())


def refused_edit() -> dict[str, Any] | None:
    """A refused edit of the flows for the page's banner (its problems, the flows held back at
    their last good version), or None."""
    library = services().library
    if not library.refused:
        return None
    return {"problems": [problem.as_json() for problem in library.refused],
            "held_back": list(library.held_back)}


def _pusher_js(config: dict[str, Any]) -> str | None:
    return PUSHER_JS if config["transport"] == "pusher" else None


def _is_live(svc: Services, state: CallState) -> bool:
    summary = svc.store.get_call(state.call_sid)
    return not (state.ended or state.status in FINAL_STATUSES
                or (summary is not None and summary.ended_at is not None))


@dashboard.get("/api/calls/<call_sid>/transfer-targets")
@login_required
def transfer_targets(call_sid: str) -> Response | tuple[Response, int]:
    """The numbers `/api/transfer-call` accepts for this call, with the node declaring each."""
    if not CALL_SID.fullmatch(call_sid):
        return jsonify(error="CallSid must be 'CA' followed by 32 hexadecimal digits"), 400
    svc = services()
    state = svc.store.get_state(call_sid)
    if state is None:
        return jsonify(error=f"unknown call {call_sid}"), 404
    targets = []
    for to, node in allowed_targets(svc, state).items():
        label = (f"{node.id} ({to})" if node is not None else f"{to} (TRANSFER_ALLOW)")
        targets.append({"to": to, "node": node.id if node is not None else None,
                        "label": label})
    return jsonify(call_sid=call_sid, flow=state.flow_id, live=_is_live(svc, state),
                   control=_control_configured(svc), targets=targets)
