"""A relay call against gunicorn with its threaded workers (gunicorn.conf.py), as deployed: the
WebSocket is served by the same app as the webhooks. No model is configured, so the offline
responder answers (its reply sent word by word), and the store is SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.relay.simulator import HandshakeRefused, RelayLine
from engine.simulator import SimulatedCall
from tests.e2e.harness import Gunicorn
from tests.relay.conftest import FRONT_DESK, RELAY_NUMBER
from tests.support import AUTH_TOKEN, requests_transport

pytestmark = pytest.mark.e2e


def test_a_relay_call_under_gunicorn(tmp_path: Path, project: Path) -> None:
    env = {"STORE_URL": f"sqlite:///{tmp_path / 'phoney.db'}", "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "DASHBOARD_PASSWORD": "e2e-password", "PROJECT_ROOT": str(project),
           "SECRET_KEY": "e2e-secret"}
    with Gunicorn(env, tmp_path / "gunicorn.log") as server:
        server.wait_ready()
        c = SimulatedCall(requests_transport, server.url, AUTH_TOKEN, to=RELAY_NUMBER).start()
        assert c.waiting.kind == "relay", server.log_tail()
        assert c.waiting.verb is not None
        with pytest.raises(HandshakeRefused) as refused:
            RelayLine.connect(c.waiting.verb.get("url", ""), AUTH_TOKEN, signed=False)
        assert refused.value.status == 403

        line = c.relay()
        reply = line.say("what are your hours")
        assert reply.last and reply.text, server.log_tail()
        assert len(reply.tokens) > 1  # word by word
        line.press("0")
        assert json.loads(line.wait_end())["event"]["digits"] == "0"
        assert c.dialed == [FRONT_DESK], server.log_tail()
        line.wait_closed()
