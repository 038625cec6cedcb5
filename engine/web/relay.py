"""The ConversationRelay WebSocket, on the app's own routes (flask-sock over simple-websocket).

Twilio opens it with an `X-Twilio-Signature` over the WebSocket URL it connects to, signed like
a webhook with no parameters: the handshake is refused (403, before any upgrade) without a valid
one. Once open, every message goes to a `RelaySession` (engine/relay/session.py), whose replies
are written back as JSON; between messages the loop wakes when the session has something due
(`due_in`, `tick`: a caller's silence), and the socket is closed once the session has sent its
`end`. It works
under the dev server and under gunicorn's threaded workers: a session holds one worker thread
for as long as the caller talks (see README "Deploying").
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from flask import Blueprint, Response, g, request
from flask.blueprints import BlueprintSetupState
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from engine import logs
from engine.calls import urls
from engine.calls.relay import RelayTurns
from engine.relay.session import CALL_SID, RelaySession
from engine.web.services import services
from engine.web.signature import is_signed

log = logging.getLogger(__name__)

relay = Blueprint("relay", __name__)
sock = Sock()

MAX_MESSAGE_BYTES = 256 * 1024
"""The largest message a session reads (a prompt is at most a few kB; 100 kB is survived)."""
PING_SECONDS = 25
"""Pings keep proxies from closing a quiet session."""


@relay.record_once
def _configure(state: BlueprintSetupState) -> None:
    state.app.config.setdefault("SOCK_SERVER_OPTIONS", {"max_message_size": MAX_MESSAGE_BYTES,
                                                   "ping_interval": PING_SECONDS})


def socket_url_base() -> str:
    """The scheme and host Twilio connected to: PUBLIC_BASE_URL's, else the request's, with
    `https`→`wss` and `http`→`ws`."""
    base = services().settings.public_base_url or f"{request.scheme}://{request.host}"
    return urls.socket_base(base.rstrip("/"))


@relay.before_request
def check_handshake() -> Response | None:
    """403 with no body unless the handshake's `X-Twilio-Signature` is TWILIO_AUTH_TOKEN's over
    the WebSocket URL (no parameters); then log lines are tagged with the URL's CallSid."""
    settings = services().settings
    if not is_signed(request, settings.twilio_auth_token, socket_url_base(), []):
        log.warning("refused the relay handshake: missing or invalid X-Twilio-Signature")
        return Response(status=403)
    sid = request.args.get("call", "")
    g.phoney_log_context = logs.push(sid if CALL_SID.fullmatch(sid) else "", urls.RELAY_SOCKET)
    return None


@relay.teardown_request
def untag_logs(error: BaseException | None) -> None:
    """Drop the log context `check_handshake` pushed, if any."""
    bound = g.pop("phoney_log_context", None)
    if bound is not None:
        logs.pop(bound)


@sock.route(urls.RELAY_SOCKET, bp=relay)  # type: ignore[untyped-decorator]
def relay_socket(ws: Any) -> None:
    """GET /api/relay/socket (WebSocket): one ConversationRelay session."""

    def send(message: dict[str, Any]) -> None:
        ws.send(json.dumps(message, ensure_ascii=False))

    session = RelaySession(RelayTurns(services().call_service), send,
                           expected_call=request.args.get("call", ""))
    thread = threading.current_thread()
    name, thread.name = thread.name, f"ws-relay-{session.key}"  # for whoever waits on it
    try:
        while not session.done:
            raw = ws.receive(timeout=session.due_in())
            if raw is not None:
                session.receive(raw)
            session.tick()
    except ConnectionClosed:
        log.info("relay session %s: Twilio closed the socket", session.key)
    finally:
        session.close()
        thread.name = name  # a pooled thread (gunicorn's) serves other requests next
