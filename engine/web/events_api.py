"""Live events for the dashboard: server-sent events, Pusher channel auth, and where to listen.

- `GET /api/events` (all calls) and `GET /api/events?call=<CallSid>`: `text/event-stream`, one
  message per stored event: `id: <store id>`, `event: <name>`, `data: <JSON of the event>`.
  Where to start: the `Last-Event-ID` header (sent by the browser's EventSource when it
  reconnects), else `?after=<id>`, else for one call its whole history, for all calls from now.
  The stream polls the store (`events_after`) every `SSE_POLL` seconds, so it sees events written
  by any server process; it sends a comment every `SSE_HEARTBEAT` seconds when quiet (which also
  finds out, by failing to write, that a client has gone), and ends after `SSE_LIFETIME` seconds:
  EventSource reconnects on its own with Last-Event-ID, and a server thread is never held for
  good. Each stream holds a server thread while open: serve with threads (the Flask server does;
  gunicorn needs `--threads` or gevent). Streams are capped per session and per process
  (SSE_STREAMS_PER_SESSION, SSE_STREAMS_PER_PROCESS; engine/web/stream_limits.py): over a cap
  the answer is 429 or 503 with Retry-After.
- `GET /api/live`: how this server publishes (Pusher key, cluster, channel names and auth
  endpoint, or the SSE URL), the current last event id, and the publisher's counters.
- `POST /pusher/auth` (form `socket_id`, `channel_name`, as pusher-js sends them): the channel
  signature `{"auth": "<key>:<hex HMAC-SHA256>"}` (+ `shared_secret` on encrypted channels),
  only for a logged-in dashboard user and only for this app's own private channels. No CSRF
  token is asked: the session cookie is SameSite=Lax, so a cross-site POST carries none, and the
  answer cannot be read across origins anyway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, session

from engine.events import Publisher, PusherSink
from engine.events.payload import event_json
from engine.store import CallStore, StoredEvent
from engine.web.auth import login_required
from engine.web.services import services
from engine.web.stream_limits import Refusal, StreamSlots

events_api = Blueprint("events_api", __name__)

EXTENSION = "phoney.live"
RETRY_MS = 2000  # EventSource's wait before reconnecting
BATCH = 200


@dataclass
class LiveEvents:
    """What `install_live_events` wired: the publisher, the Pusher sink, the SSE timings."""

    publisher: Publisher | None = None
    pusher: PusherSink | None = None
    pusher_key: str = ""
    pusher_cluster: str = ""
    sse_lifetime: float = 300.0
    sse_heartbeat: float = 15.0
    sse_poll: float = 0.1
    slots: StreamSlots = field(default_factory=StreamSlots)  # caps on open streams

    @property
    def open_streams(self) -> int:
        """Event streams open now in this process."""
        return self.slots.open


def live_events() -> LiveEvents:
    """The current app's `LiveEvents` (KeyError when `install_live_events` did not run)."""
    found: LiveEvents = current_app.extensions[EXTENSION]
    return found


def format_event(event: StoredEvent) -> str:
    """One server-sent-events message for `event`: its `id`, `event` name and one-line JSON
    `data`, ended by a blank line.
    """
    data = json.dumps(event_json(event), ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.id}\nevent: {event.name}\ndata: {data}\n\n"  # JSON has no raw newline


def event_stream(store: CallStore, after: int, call_sid: str | None,
                 live: LiveEvents) -> Iterator[str]:
    """The stream's text; closing the generator (the client went away) ends it."""
    yield f"retry: {RETRY_MS}\n: events after {after}\n\n"
    started = last_write = time.monotonic()
    while time.monotonic() - started < live.sse_lifetime:
        events = store.events_after(after, call_sid, limit=BATCH)
        if events:
            after = events[-1].id
            yield "".join(format_event(event) for event in events)
            last_write = time.monotonic()
            continue
        if time.monotonic() - last_write >= live.sse_heartbeat:
            yield ": heartbeat\n\n"
            last_write = time.monotonic()
        time.sleep(live.sse_poll)


def _start_after(store: CallStore, call_sid: str | None) -> int | None:
    """Where the stream starts; None when the client sent something that is not an id."""
    given = request.headers.get("Last-Event-ID") or request.args.get("after")
    if given is None or given.strip() == "":
        return 0 if call_sid else store.last_event_id()
    try:
        after = int(given)
    except ValueError:
        return None
    if after < 0:
        return None
    # An id from another database (reset, restored) must not skip the events to come.
    return min(after, store.last_event_id())


@events_api.get("/api/events")
@login_required
def stream_events() -> Response | tuple[Response, int]:
    """GET /api/events: a text/event-stream of stored events (`?call=` for one call's).

    Each stream takes one of the process's slots (engine/web/stream_limits.py) until its
    response is closed; over the session's cap the answer is 429, over the process's 503, both
    with Retry-After."""
    store = services().store
    call_sid = request.args.get("call") or None
    if call_sid is not None and not (call_sid.isalnum() and len(call_sid) <= 64):
        return jsonify(error="call must be a CallSid"), 400
    after = _start_after(store, call_sid)
    if after is None:
        return jsonify(error="Last-Event-ID and after must be event ids (integers, 0 or more)"), 400
    live = live_events()
    slot = live.slots.take(str(session.get("sid") or ""))
    if isinstance(slot, Refusal):
        refused = jsonify(error=slot.error)
        refused.headers["Retry-After"] = str(slot.retry_after)
        return refused, slot.status
    response = Response(event_stream(store, after, call_sid, live),
                        mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    # On close, not in the generator: a stream closed before its first chunk never runs the
    # generator's `finally`, but every WSGI server closes the response.
    response.call_on_close(slot)
    return response


@events_api.get("/api/live")
@login_required
def live_info() -> Response:
    """GET /api/live: how events are published here, the last event id, publisher counters."""
    live = live_events()
    info: dict[str, Any] = {
        "transport": "pusher" if live.pusher else "sse",
        "sse": {"url": "/api/events", "open_streams": live.open_streams},
        "last_event_id": services().store.last_event_id(),
        "pusher": None,
        "publisher": None,
    }
    if live.pusher is not None:
        channels = live.pusher.channels
        info["pusher"] = {
            "key": live.pusher_key, "cluster": live.pusher_cluster, "mode": channels.mode,
            "all_calls_channel": channels.all_calls,
            "call_channel_prefix": f"{channels.prefix}call-",
            "auth_endpoint": "/pusher/auth" if channels.mode != "public" else None,
        }
    if live.publisher is not None:
        info["publisher"] = {
            "running": live.publisher.running, "owner": live.publisher.owner,
            "sinks": {name: stats.as_json() for name, stats in live.publisher.stats().items()},
        }
    return jsonify(info)


@events_api.post("/pusher/auth")
@login_required
def pusher_auth() -> Response | tuple[Response, int]:
    """POST /pusher/auth: sign pusher-js's subscription to one of our private channels."""
    sink = live_events().pusher
    if sink is None:
        return jsonify(error="Pusher is not configured"), 404
    socket_id = request.form.get("socket_id", "")
    channel = request.form.get("channel_name", "")
    if not socket_id or not channel:
        return jsonify(error="socket_id and channel_name are required"), 400
    try:
        return jsonify(sink.authorize(channel, socket_id))
    except PermissionError as error:
        return jsonify(error=str(error)), 403
    except ValueError as error:
        return jsonify(error=str(error)), 400
