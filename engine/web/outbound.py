"""Wiring of the webhooks to the business (engine/events/webhooks.py) into an app.

`install_webhooks(app, runtime)` keeps a `Webhooks` on `app.extensions["phoney.webhooks"]` and,
when the app serves requests and its config does not say `WEBHOOKS=False` (nor
`PUBLISHER=False`, as the scenario runner does; a testing app wants `WEBHOOKS=True`), starts
it: one delivery thread per URL, off the request path. `WEBHOOK_OPTIONS` (app config) holds
keyword arguments for `Webhooks`, such as `publisher_options={"backoff": 0.01}` and
`sink_options={"give_up_after": 60}` in tests. CALL_WEBHOOK_URL (which may hold a token) is
masked in the logs; the deliveries' own messages name hosts only.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Any

from flask import Flask

from engine.bootstrap import Runtime
from engine.calls import FlowLibrary
from engine.events.webhooks import Webhooks
from engine.flows.model import Flow
from engine.store import CallStore
from engine.web.security import log_filter
from engine.web.watcher import serving_requests

EXTENSION = "phoney.webhooks"
_running: weakref.WeakSet[Webhooks] = weakref.WeakSet()


def _stop_all() -> None:
    for webhooks in list(_running):
        webhooks.stop()


def call_flow(store: CallStore, library: FlowLibrary) -> Any:
    """CallSid -> the flow the call ran on, at its own version (None when unknown)."""
    def flow_of(call_sid: str) -> Flow | None:
        summary = store.get_call(call_sid)
        if summary is None:
            return None
        pinned = library.pinned(summary.flow_id, summary.flow_version)
        return pinned.flow if pinned is not None else None

    return flow_of


def install_webhooks(app: Flask, runtime: Runtime) -> Webhooks:
    """Build (and, as the module docstring says, start) the app's webhooks."""
    settings, library = runtime.settings, runtime.library

    def live_flows() -> list[Flow]:
        return list(library.live.flows.values()) if library.ok else []

    if settings.call_webhook_url.strip():
        log_filter().add_secrets([settings.call_webhook_url.strip()])
    webhooks = Webhooks(runtime.store, live_flows, call_flow(runtime.store, library),
                        global_url=settings.call_webhook_url, secret=settings.webhook_secret,
                        **dict(app.config.get("WEBHOOK_OPTIONS") or {}))
    app.extensions[EXTENSION] = webhooks
    wanted = app.config.get("WEBHOOKS", not app.testing and app.config.get("PUBLISHER", True))
    if wanted and serving_requests():
        webhooks.start()
        if not _running:
            atexit.unregister(_stop_all)
            atexit.register(_stop_all)
        _running.add(webhooks)
    return webhooks
