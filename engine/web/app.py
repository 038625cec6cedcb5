"""`create_app`: all wiring happens here, nothing at import time."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from typing import Any

from flask import Flask

from engine.ai.responder import OfflineResponder
from engine.cli import flows_cli
from engine.store import open_store
from engine.web.auth import auth, configure_auth
from engine.web.call_service import CallService
from engine.web.control import control
from engine.web.library import FlowLibrary
from engine.web.services import Services
from engine.web.settings import Settings
from engine.web.twilio_rest import TwilioRest
from engine.web.voice import voice

log = logging.getLogger(__name__)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. `config` overrides environment settings (same upper-case names)."""
    settings = Settings.load(config)
    app = Flask(__name__)
    app.config["PROJECT_ROOT"] = str(settings.project_root)
    app.config.update({key: value for key, value in (config or {}).items()
                       if key not in ("PROJECT_ROOT",)})
    app.cli.add_command(flows_cli)
    twilio = TwilioRest.from_settings(settings)  # before a missing token is replaced below

    if not settings.twilio_auth_token:
        # Refuse every webhook rather than accept unsigned ones.
        settings = _replace(settings, twilio_auth_token=secrets.token_hex(16))
        log.warning("TWILIO_AUTH_TOKEN is not set: Twilio webhooks will be refused (403)")

    store = open_store(settings.store_url)
    library = FlowLibrary(settings.project_root, store)
    library.reload()
    call_service = CallService(library, store, OfflineResponder(),
                               default_flow=settings.default_flow)
    password = configure_auth(app, store, settings.dashboard_password, settings.secret_key,
                              secure_cookies=settings.public_base_url.startswith("https://"))
    app.extensions["phoney"] = Services(settings, store, library, call_service, password,
                                         twilio)
    app.register_blueprint(voice)
    app.register_blueprint(auth)
    app.register_blueprint(control)
    return app


def _replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
