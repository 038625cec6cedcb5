"""Wiring of live events: the Pusher sink, the publisher thread, and the routes that serve them.

`install_live_events(app, settings, store)` is called by `create_app`. It keeps a `LiveEvents` on
`app.extensions["phoney.live"]` and registers the blueprints of engine/web/events_api.py
(`/api/events`, `/api/live`, `/pusher/auth`) and engine/web/calls_api.py (`/api/calls`).

App config (not environment) knobs, mostly for tests:
- `PUBLISHER` (default True): False starts no publisher thread (events still go to the store,
  and another process's publisher, or a later start, delivers them);
- `EVENT_SINKS`: more sinks (objects with `name`, `max_batch`, `deliver`) besides Pusher;
- `ALERT_OPTIONS`: keyword arguments for `AlertSink` (limit, window, clock, ...);
- `PUBLISHER_OPTIONS`: keyword arguments for `Publisher` (poll_interval, lease_seconds, ...);
- `SSE_LIFETIME` (300 s), `SSE_HEARTBEAT` (15 s), `SSE_POLL` (0.1 s): see events_api.py.

The caps on open streams are settings (SSE_STREAMS_PER_SESSION, SSE_STREAMS_PER_PROCESS; see
engine/web/stream_limits.py).

With ALERT_WEBHOOK_URL set, the alert sink (engine/events/alerts.py) is one more sink: the
`call.error` events of ALERT_KINDS are posted there. The webhook URL (and its path, which holds a
Slack webhook's token) is added to the log redaction's secrets, and alert details go through it.

The publisher thread starts only when there is a sink: without Pusher the dashboard reads the
server-sent events, which come straight from the store.
"""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from typing import Any
from urllib.parse import urlsplit

from flask import Flask

from engine.events import (
    AlertSink,
    ChannelNames,
    Publisher,
    PusherSink,
    Sink,
    make_client,
    parse_kinds,
)
from engine.events.alerts import check_url
from engine.settings import Settings
from engine.store import CallStore
from engine.web.calls_api import calls_api
from engine.web.events_api import EXTENSION, LiveEvents, events_api
from engine.web.security import log_filter
from engine.web.stream_limits import StreamSlots, default_process_streams

log = logging.getLogger(__name__)

_running: weakref.WeakSet[Publisher] = weakref.WeakSet()
MIN_SECRET_PATH = 16  # shorter webhook paths (`/alerts`) are no token and would mask words


def _stop_publishers() -> None:
    """Hand the leases back on a clean exit, so another process takes over at once."""
    for publisher in list(_running):
        publisher.stop(timeout=2.0)


def pusher_sink(settings: Settings) -> PusherSink | None:
    """The sink when PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET are all set."""
    if not (settings.pusher_app_id and settings.pusher_key and settings.pusher_secret):
        if settings.pusher_app_id or settings.pusher_key or settings.pusher_secret:
            log.warning("Pusher needs PUSHER_APP_ID, PUSHER_KEY and PUSHER_SECRET; with only some "
                        "of them set, live events go to server-sent events only")
        return None
    channels = ChannelNames.choose(settings.pusher_channels, settings.encryption_key)
    encryption_key = settings.encryption_key if channels.encrypted else ""
    client = make_client(settings.pusher_app_id, settings.pusher_key, settings.pusher_secret,
                         cluster=settings.pusher_cluster, host=settings.pusher_host,
                         encryption_key=encryption_key)
    if channels.mode == "public":
        log.warning("PUSHER_CHANNELS=public: anyone with the Pusher key can read call transcripts")
    return PusherSink(client, channels, encryption_key)


def alert_sink(settings: Settings, store: CallStore,
               options: dict[str, Any] | None = None) -> AlertSink | None:
    """The alert sink when ALERT_WEBHOOK_URL is set; ValueError for a URL that is not http(s).

    `options` are more keyword arguments for `AlertSink` (the app's `ALERT_OPTIONS`).
    """
    if not settings.alert_webhook_url.strip():
        return None
    url = check_url(settings.alert_webhook_url)
    redaction = log_filter()
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    # A token-bearing path (Slack's /services/T.../B.../...) is a secret on its own too.
    redaction.add_secrets([url, path] if len(path) >= MIN_SECRET_PATH else [url])
    return AlertSink(url, store, kinds=parse_kinds(settings.alert_kinds),
                     public_base_url=settings.public_base_url, clean=redaction.clean,
                     **(options or {}))


def install_live_events(app: Flask, settings: Settings, store: CallStore) -> LiveEvents:
    """Wire live events into `app` (see the module docstring) and return the `LiveEvents`
    kept on `app.extensions["phoney.live"]`.

    Registers the events and calls blueprints. With a sink (Pusher, alerts, `EVENT_SINKS`) it
    builds a publisher and, unless `PUBLISHER` is False, starts its thread now and stops it at
    exit. Raises ValueError for a bad `PUSHER_CHANNELS` (or encrypted channels without
    ENCRYPTION_KEY) and for an ALERT_WEBHOOK_URL that is not an http(s) URL.
    """
    sink = pusher_sink(settings)
    alerts = alert_sink(settings, store, app.config.get("ALERT_OPTIONS"))
    sinks: list[Sink] = ([sink] if sink else []) + ([alerts] if alerts else []) \
        + list(app.config.get("EVENT_SINKS") or [])
    options: dict[str, Any] = dict(app.config.get("PUBLISHER_OPTIONS") or {})
    publisher = Publisher(store, sinks, **options) if sinks else None
    live = LiveEvents(publisher, sink, settings.pusher_key, settings.pusher_cluster,
                      sse_lifetime=float(app.config.get("SSE_LIFETIME", 300.0)),
                      sse_heartbeat=float(app.config.get("SSE_HEARTBEAT", 15.0)),
                      sse_poll=float(app.config.get("SSE_POLL", 0.1)),
                      slots=StreamSlots(settings.sse_streams_per_session,
                                        settings.sse_streams_per_process
                                        or default_process_streams(os.environ)))
    app.extensions[EXTENSION] = live
    app.register_blueprint(events_api)
    app.register_blueprint(calls_api)
    if publisher is not None and app.config.get("PUBLISHER", True):
        publisher.start()
        if not _running:
            atexit.unregister(_stop_publishers)  # registered once, whatever the number of apps
            atexit.register(_stop_publishers)
        _running.add(publisher)
    return live
