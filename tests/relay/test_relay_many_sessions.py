"""200 relay sessions at once under gunicorn with the project's configuration (gunicorn.conf.py,
two workers), while signed webhooks and a dashboard event stream still answer.

A live session holds a worker thread for its whole conversation, and connections are not spread
evenly over the workers: gunicorn.conf.py gives every worker GUNICORN_RELAY_THREADS for sessions
on top of its webhook threads (README "Deploying", "Many relay calls"). With the webhook threads
alone the workers fill up after about a hundred sessions: a handshake then waits for a thread that
never comes free (RelayLine.connect fails here), and so does a webhook that reaches a full worker.
No model is configured, so the offline responder answers each turn (word by word); the store is
SQLite.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.relay.simulator import RelayLine
from engine.simulator import SimulatedCall
from tests.e2e.conftest import PASSWORD, login
from tests.e2e.harness import EventStream, Gunicorn
from tests.relay.conftest import RELAY_NUMBER
from tests.support import AUTH_TOKEN, requests_transport

pytestmark = pytest.mark.e2e

SESSIONS = 200
PROBES = 6
"""New calls rung while the sessions are open, each on a connection of its own."""


def caller(number: int) -> str:
    """A caller's number of its own for each call (new calls are limited per caller)."""
    return f"+1555{7000000 + number}"


@pytest.fixture
def relay_server(tmp_path: Path, patient_project: Path) -> Iterator[Gunicorn]:
    """gunicorn as gunicorn.conf.py has it, with two workers, on the patient relay flow."""
    env = {"STORE_URL": f"sqlite:///{tmp_path / 'phoney.db'}", "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
           "DASHBOARD_PASSWORD": PASSWORD, "PROJECT_ROOT": str(patient_project),
           "SECRET_KEY": "e2e-secret", "MAX_LIVE_CALLS": str(SESSIONS + 2 * PROBES)}
    with Gunicorn(env, tmp_path / "gunicorn.log", workers=2) as started:
        started.wait_ready()
        started.wait_workers(2)
        yield started


def ring(server: Gunicorn, number: int) -> SimulatedCall:
    """A new call to the relay flow, waiting for its session (its webhook on a new
    connection: requests_transport keeps none)."""
    c = SimulatedCall(requests_transport, server.url, AUTH_TOKEN, to=RELAY_NUMBER,
                      from_=caller(number)).start()
    assert c.waiting.kind == "relay", (c.exchanges[-1].answer, server.log_tail())
    return c


def call_starts(stream: EventStream) -> set[str]:
    """The calls whose `call.start` the stream has shown."""
    return {json.loads(event.data)["call_sid"] for event in list(stream.events)
            if event.name == "call.start"}


def streamed(stream: EventStream, sids: set[str], timeout: float = 30.0) -> set[str]:
    """Until the stream has shown every call of `sids` start (or `timeout`); those missing."""
    deadline = time.monotonic() + timeout
    while not sids <= call_starts(stream) and time.monotonic() < deadline:
        stream.wait_for({max((e.id for e in stream.events), default=0) + 1}, timeout=0.5)
    return sids - call_starts(stream)


def test_two_hundred_sessions_leave_webhooks_and_event_streams_answering(
        relay_server: Gunicorn) -> None:
    server = relay_server
    stream = EventStream(login(server), server.url).start()
    lines: list[RelayLine] = []
    try:
        calls = [ring(server, number) for number in range(SESSIONS)]
        for c in calls:
            lines.append(c.relay(timeout=30))
        for line in lines:
            line.say("what are your hours", wait=False)
        for line in lines:
            reply = line.reply(timeout=60)
            assert reply.last and reply.text, server.log_tail()
        assert not streamed(stream, {c.call_sid for c in calls})

        # Every session is open and has taken its turn. Webhooks of new calls still answer,
        # each on a connection of its own (either worker may take it) ...
        probes = [ring(server, SESSIONS + number) for number in range(PROBES)]
        # ... the event stream opened before the sessions shows them ...
        assert not streamed(stream, {c.call_sid for c in probes}), server.log_tail()
        # ... and a stream opened now is served, and shows what happens next.
        late = EventStream(login(server), server.url).start()
        try:
            last = ring(server, SESSIONS + PROBES)
            assert not streamed(late, {last.call_sid}), server.log_tail()
        finally:
            late.close()
        for c in [*probes, last]:
            assert c.hang_up().status == 200

        # The sessions were open throughout: each takes another turn now.
        assert not [line for line in lines if line.closed or line.ended is not None]
        for line in lines:
            line.say("and on saturdays", wait=False)
        for line in lines:
            assert line.reply(timeout=60).last, server.log_tail()
    finally:
        for line in lines:
            line.close()
        stream.close()
