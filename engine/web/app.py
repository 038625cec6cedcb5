"""`create_app`: all wiring happens here, nothing at import time."""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from engine import logs
from engine.ai.model import ModelResponder, shared_client
from engine.ai.responder import OfflineResponder, Responder
from engine.cli import call_command, flows_cli, speech_cli
from engine.flows.model import Registry
from engine.speech import AudioCache, SpeechVoicing, Synthesizer, TwilioVoicing
from engine.speech.warmup import Warmup
from engine.store import CallStore, open_store
from engine.web.auth import auth, configure_auth
from engine.web.call_limits import call_limits
from engine.web.call_service import CallService, VoicingFactory
from engine.web.control import control
from engine.web.dashboard import dashboard
from engine.web.flows_api import flows_api
from engine.web.health import health
from engine.web.library import FlowLibrary
from engine.web.live import install_live_events
from engine.web.media import media
from engine.web.metrics import TimedSynthesizer, install_metrics
from engine.web.proxy import install_proxy_fix
from engine.web.security import install_log_redaction, install_security
from engine.web.services import Services
from engine.web.settings import Settings
from engine.web.twilio_rest import TwilioRest
from engine.web.voice import voice
from engine.web.watcher import install_watcher, serving_requests

log = logging.getLogger(__name__)


def create_app(config: dict[str, Any] | None = None, *,
               clock: Callable[[], float] | None = None) -> Flask:
    """Build the app. `config` overrides environment settings (same upper-case names).

    `clock` (epoch seconds, default `time.time`) is the calls' `now`: what flows see in
    `open_between` and `limits.max_seconds`, and the time stamped on stored steps and events.
    Tests pass a controllable one to call "at" a given moment.
    """
    settings = Settings.load(config)
    serving = serving_requests()  # a server or a test, not a short `flask` command
    logs.configure(settings.log_level, settings.log_format)  # once a process; later: updated
    install_log_redaction(settings)  # numbers, speech and secrets masked in every log line
    app = Flask(__name__)
    app.config["PROJECT_ROOT"] = str(settings.project_root)
    app.config.update({key: value for key, value in (config or {}).items()
                       if key not in ("PROJECT_ROOT",)})
    app.cli.add_command(flows_cli)
    twilio = TwilioRest.from_settings(settings)  # before a missing token is replaced below

    if not settings.twilio_auth_token:
        # Refuse every webhook rather than accept unsigned ones.
        settings = _replace(settings, twilio_auth_token=secrets.token_hex(16))
        if serving:
            log.warning("TWILIO_AUTH_TOKEN is not set: Twilio webhooks will be refused (403)")

    store = open_store(settings.store_url, encryption_key=settings.encryption_key)
    library = FlowLibrary(settings.project_root, store)
    library.reload()
    now = clock or time.time
    responder, voicing, warmup = _speech_and_model(settings, store, library, now, serving)
    call_service = CallService(library, store, responder, default_flow=settings.default_flow,
                               voicing=voicing, clock=now,
                               limits=call_limits(settings.caller_call_limit,
                                                  settings.max_call_turns,
                                                  settings.max_call_seconds))
    password = configure_auth(app, store, settings.dashboard_password, settings.secret_key,
                              secure_cookies=settings.public_base_url.startswith("https://"),
                              announce=serving)
    app.extensions["phoney"] = Services(settings, store, library, call_service, password,
                                         twilio, warmup)
    if warmup is not None and library.ok and app.config.get("SPEECH_WARMUP", True) \
            and serving:
        warmup.start()
    app.register_blueprint(voice)
    app.register_blueprint(auth)
    app.register_blueprint(control)
    app.register_blueprint(dashboard)
    app.register_blueprint(media)
    app.register_blueprint(flows_api)
    install_watcher(app, library)  # hot reload of flows/ and personalities/
    install_live_events(app, settings, store)  # publisher thread, /api/events, /api/calls
    app.register_blueprint(health)  # /healthz, /readyz
    install_metrics(app)  # /metrics, webhook timings; after the publisher it reports on
    install_security(app, settings)  # headers; login and call control rate limits
    install_proxy_fix(app, settings.trusted_proxies)  # client addresses behind proxies
    app.cli.add_command(speech_cli)
    app.cli.add_command(call_command)
    return app


def _speech_and_model(settings: Settings, store: CallStore, library: FlowLibrary,
                      clock: Callable[[], float], serving: bool,
                      ) -> tuple[Responder, VoicingFactory, Warmup | None]:
    """The model, voices and speech warm-up when an OpenAI-compatible key is set; the offline
    pair otherwise."""
    if not settings.openai_api_key:
        (log.warning if serving else log.debug)(
            "OPENAI_API_KEY is not set: the offline responder answers calls (from the "
            "personalities' examples and the nodes' exits) and Twilio voices speak")
        return OfflineResponder(clock), TwilioVoicing, None
    client = shared_client(settings.openai_api_key, settings.openai_base_url)
    synthesizer, cache = Synthesizer(client), AudioCache(store)
    prefix = settings.public_base_url.rstrip("/")
    timed = TimedSynthesizer(client)  # the webhooks' speech, measured; the warm-up's is not

    def voicing(registry: Registry) -> TwilioVoicing:
        return SpeechVoicing(registry, synthesizer=timed, cache=cache,
                             audio_url=lambda key: f"{prefix}/audio/{key}.mp3")

    warmup = Warmup(lambda: library.live, synthesizer, cache)
    return ModelResponder(client, store, settings.openai_model, clock=clock), voicing, warmup


def _replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
