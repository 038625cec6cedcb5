"""`create_app`: the HTTP shell around the call service; all wiring happens here, nothing at
import time. The call service and its ports come from the composition root, engine/bootstrap.py.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from typing import Any

from flask import Flask

from engine import logs
from engine.ai.responder import Responder
from engine.bootstrap import bootstrap
from engine.calls import CallbackUrls, Clock, EventRecorder, VoicingFactory
from engine.calls.requests import HttpPort
from engine.cli import call_command, calls_cli, flows_cli, personalities_cli, speech_cli
from engine.doctor import doctor_command
from engine.retention import RETENTION, retention_days, start_retention
from engine.store import CallStore, Pruned
from engine.web.after_call import install_analysis
from engine.web.audit import audit, install_audit, record_refusal
from engine.web.auth import auth, configure_auth
from engine.web.control import control
from engine.web.dashboard import dashboard
from engine.web.editor import editor
from engine.web.editor_api import editor_api
from engine.web.editor_try import editor_try
from engine.web.flows_api import flows_api
from engine.web.health import health
from engine.web.live import install_live_events
from engine.web.media import media
from engine.web.metrics import events_written, install_metrics, speech_timed, webhook_observer
from engine.web.outbound import install_webhooks
from engine.web.outbound_api import outbound_api
from engine.web.outbound_cli import COMMANDS as OUTBOUND_COMMANDS
from engine.web.proxy import install_proxy_fix
from engine.web.relay import relay
from engine.web.request_keys import RequestKeys
from engine.web.roles import install_roles
from engine.web.security import (
    BODY_LIMITS,
    install_log_redaction,
    install_security,
    security_headers,
)
from engine.web.services import Services
from engine.web.settings_check import checked_settings
from engine.web.sso import install_sso
from engine.web.twilio_rest import TwilioRest
from engine.web.voice import install_voice_webhooks
from engine.web.watcher import install_watcher, serving_requests

log = logging.getLogger(__name__)


def create_app(config: dict[str, Any] | None = None, *, clock: Clock | None = None,
               store: CallStore | None = None, responder: Responder | None = None,
               voicing: VoicingFactory | None = None, recorder: EventRecorder | None = None,
               urls: CallbackUrls | None = None, http: HttpPort | None = None) -> Flask:
    """Build the app. `config` overrides environment settings (same upper-case names).

    `clock` (epoch seconds, default `time.time`) is the calls' `now`: what flows see in
    `open_between` and `limits.max_seconds`, and the time stamped on stored steps and events.
    Tests pass a controllable one to call "at" a given moment. The other keywords are the call
    service's ports (engine/bootstrap.py): given, they replace what the settings would build.
    """
    settings = checked_settings(config)  # SettingsError: every problem, one line each
    serving = serving_requests()  # a server or a test, not a short `flask` command
    logs.configure(settings.log_level, settings.log_format)  # once a process; later: updated
    install_log_redaction(settings)  # numbers, speech and secrets masked in every log line
    app = Flask(__name__)
    app.config["PROJECT_ROOT"] = str(settings.project_root)
    app.config.update(BODY_LIMITS)  # request sizes (engine/web/security.py)
    app.config.update({key: value for key, value in (config or {}).items()
                       if key not in ("PROJECT_ROOT",)})
    twilio = TwilioRest.from_settings(settings)  # before a missing token is replaced below

    if not settings.twilio_auth_token:
        # Refuse every webhook rather than accept unsigned ones.
        settings = dataclasses.replace(settings, twilio_auth_token=secrets.token_hex(16))
        if serving:
            log.warning("TWILIO_AUTH_TOKEN is not set: Twilio webhooks will be refused (403)")
    if serving and not settings.metrics_token:
        # Open is the default, so that Prometheus scrapes with no setup: say so where it shows.
        log.warning("METRICS_TOKEN is not set: GET /metrics is open to anyone who can reach "
                    "this server (call counts, error kinds, latencies); set METRICS_TOKEN to "
                    "require 'Authorization: Bearer <token>'")

    runtime = bootstrap(settings, store=store, responder=responder, voicing=voicing,
                        clock=clock, recorder=recorder, urls=urls,
                        observers=(events_written,), speech_timer=speech_timed,
                        announce=serving, http=http)
    password = configure_auth(app, runtime.store, settings.dashboard_password,
                              settings.secret_key,
                              secure_cookies=settings.public_base_url.startswith("https://"),
                              announce=serving)
    app.extensions["phoney"] = Services(runtime, password, create_app, twilio,
                                        RequestKeys(settings.encryption_key))
    if runtime.warmup is not None and runtime.library.ok \
            and app.config.get("SPEECH_WARMUP", True) and serving:
        runtime.warmup.start()
    for blueprint in (relay, auth, control, dashboard, media, flows_api, editor, editor_api,
                      editor_try, audit, outbound_api):
        app.register_blueprint(blueprint)
    install_sso(app, settings)  # /login/sso, OpenID Connect when OIDC_ISSUER is set
    install_audit(app)  # control actions, flow changes and refusals in the audit log
    install_watcher(app, runtime.library)  # hot reload of flows/ and personalities/
    install_live_events(app, settings, runtime.store)  # publisher, /api/events, /api/calls
    install_webhooks(app, runtime)  # signed posts to the business, a thread per URL
    install_analysis(app, runtime)  # each ended call's analysis, in a thread of its own
    app.register_blueprint(health)  # /healthz, /readyz
    install_metrics(app)  # /metrics, webhook timings; after the publisher it reports on
    install_security(app, settings)  # headers; login and call control rate limits
    install_roles(app, record_refusal)  # the role of every route, after the rate limits
    # Twilio's voice webhooks, answered ahead of Flask with the same headers (engine/web/voice.py)
    install_voice_webhooks(app, security_headers(settings).items(), webhook_observer())
    install_proxy_fix(app, settings.trusted_proxies)  # client addresses behind proxies
    retention_days(settings.retention_days)  # a bad RETENTION_DAYS fails every start
    if serving and app.config.get("RETENTION", not app.testing):
        # Old calls pruned by a background thread, one process at a time (engine/retention.py);
        # tests ask for it with RETENTION=True (and RETENTION_OPTIONS for its timings).
        warmup = runtime.warmup

        def rewarm(pruned: Pruned) -> None:
            # Cached speech is pruned by age, the flows' own texts with it: synthesise those
            # again now, not on the next caller's greeting.
            if pruned.blobs and warmup is not None:
                warmup.start()

        app.extensions[RETENTION] = start_retention(
            runtime.store, settings.retention_days, clock or time.time,
            app.config.get("RETENTION_OPTIONS"), after=rewarm)
    for extra in OUTBOUND_COMMANDS:  # flask calls dial, campaign, campaign-stop, campaigns
        calls_cli.add_command(extra)
    for command in (flows_cli, speech_cli, calls_cli, call_command, doctor_command,
                    personalities_cli):
        app.cli.add_command(command)
    return app
