"""Outbound calls and campaigns on the dashboard: `POST /api/calls` places a call,
`GET /api/campaigns` and `GET /campaigns` show campaigns' progress, and
`POST /api/campaigns/<id>/stop` stops one.

Placing a call and stopping a campaign are control actions: signed in as an operator (roles.py),
with the session's CSRF token, and in the audit log. `dialer` builds the `Dialer` the API and
the `flask calls` commands share, from the app's settings and services.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request, session

from engine.outbound.campaign import campaigns, load, request_stop
from engine.outbound.dial import Dialer, DialError
from engine.outbound.numbers import DoNotCall
from engine.web.auth import csrf_protected, login_required
from engine.web.services import Services, services
from engine.web.twilio_rest import TwilioRest

outbound_api = Blueprint("outbound_api", __name__)

CAMPAIGN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")

JsonAnswer = tuple[Response, int]


def rest(svc: Services) -> TwilioRest:
    """The app's Twilio REST client, made on first use."""
    if svc.twilio is None:
        svc.twilio = TwilioRest.from_settings(svc.settings)
    return svc.twilio


def do_not_call(svc: Services) -> DoNotCall:
    """The do-not-call list of DO_NOT_CALL_FILE (empty when it is not set)."""
    name = svc.settings.do_not_call_file
    return DoNotCall(svc.settings.project_root / name if name else None)


def dialer(svc: Services) -> Dialer:
    """A Dialer on the app's live flows, store, Twilio client and OUTBOUND_FROM."""
    return Dialer(rest(svc).client, svc.store, lambda: svc.library.live.flows,
                  base_url=svc.settings.public_base_url,
                  from_number=svc.settings.outbound_from, do_not_call=do_not_call(svc))


@outbound_api.post("/api/calls")
@login_required
@csrf_protected
def place_call() -> JsonAnswer:
    """POST /api/calls: JSON `{flow, to, vars}`; 201 with the CallSid, or the reason not."""
    body = request.get_json(silent=True) if request.is_json else None
    fields: Mapping[str, Any] = body if isinstance(body, dict) else {}
    if not fields:
        return jsonify(error='send JSON: {"flow": "...", "to": "+1...", "vars": {...}}'), 400
    svc = services()
    if not rest(svc).configured:
        return jsonify(error="placing calls needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"), 503
    try:
        placed = dialer(svc).dial(fields.get("flow", ""), fields.get("to", ""),
                                  fields.get("vars"), by=str(session.get("user") or ""),
                                  base_url=f"{request.scheme}://{request.host}")
    except DialError as error:
        extra = {"twilio_code": error.twilio_code} if error.twilio_code else {}
        return jsonify(error=error.message, **extra), error.status
    call = placed.call
    return jsonify(ok=True, call_sid=call.call_sid, flow=call.flow, to=call.to,
                   from_=call.from_, status=placed.status,
                   machine_detection=call.machine_detection), 201


@outbound_api.get("/api/campaigns")
@login_required
def list_campaigns() -> Response:
    """GET /api/campaigns: every campaign's progress, newest first."""
    return jsonify(campaigns=[c.summary() for c in campaigns(services().store)])


@outbound_api.post("/api/campaigns/<campaign>/stop")
@login_required
@csrf_protected
def stop_campaign(campaign: str) -> JsonAnswer:
    """POST /api/campaigns/<id>/stop: its runner places no more calls."""
    store = services().store
    if not CAMPAIGN_ID.fullmatch(campaign) or not request_stop(store, campaign):
        return jsonify(error=f"unknown campaign {campaign[:120]!r}"), 404
    found = load(store, campaign)
    return jsonify(ok=True, campaign=found.summary() if found else None), 200


@outbound_api.get("/campaigns")
@login_required
def campaigns_page() -> str:
    """The campaigns page: each campaign's progress, rows skipped and failed."""
    return render_template("campaigns.html",
                           campaigns=[c.summary() for c in campaigns(services().store)])
