"""The wired parts of a running app, kept on `app.extensions` by `create_app`."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from engine.speech.warmup import Warmup
from engine.store import CallStore
from engine.web.call_service import CallService
from engine.web.library import FlowLibrary
from engine.web.settings import Settings
from engine.web.twilio_rest import TwilioRest


@dataclass
class Services:
    settings: Settings
    store: CallStore
    library: FlowLibrary
    call_service: CallService
    dashboard_password: str
    twilio: TwilioRest | None = None  # REST client for call control; see create_app
    warmup: Warmup | None = None  # speech warm-up; None without OPENAI_API_KEY


def services() -> Services:
    found: Services = current_app.extensions["phoney"]
    return found
