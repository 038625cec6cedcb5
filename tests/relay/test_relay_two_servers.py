"""A relay call between two gunicorn servers on one Redis (the fixtures of
tests/e2e/test_two_servers.py): the session lives on the server that holds the socket, the call's
state in the store, and the `<Connect action>` webhook that ends the session lands on the other
server, which takes the graph on from there.

Server A answers the incoming call, so the `<ConversationRelay>` URL, and the socket, are A's;
the session's turn is stepped and stored by A. The caller presses 0 (the flow's route to the
front desk): A's session ends with the handoff, and Twilio's `<Connect action>` goes to B, which
never saw the session: it reads the call from the store, takes the route and answers the
`<Dial>`. The rest of the call alternates between the servers as in the two-server test, and
the dashboard's event stream on B shows what A's session stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from engine.simulator import SimulatedCall
from engine.store import StoredEvent
from engine.store.redis_store import RedisStore
from tests.e2e import conftest as e2e
from tests.e2e.conftest import StartServers, login, server_env
from tests.e2e.harness import EventStream, SpreadTransport, Window, store_url, windowed
from tests.relay.conftest import FRONT_DESK, RELAY_NUMBER
from tests.support import AUTH_TOKEN

pytestmark = pytest.mark.e2e

# The two-server test's fixtures (a Redis prefix of the test's own, its store, gunicorn servers).
redis_prefix = e2e.redis_prefix
store = e2e.store
start_servers = e2e.start_servers



def stored_between(events: list[StoredEvent], window: Window) -> list[StoredEvent]:
    return [event for event in events if window.first < event.id <= window.last]


def test_the_session_on_one_server_and_the_connect_action_on_the_other(
        redis_prefix: str, store: RedisStore, start_servers: StartServers,
        patient_project: Path) -> None:
    a, b = start_servers(2, server_env(store_url(redis_prefix),
                                       PROJECT_ROOT=str(patient_project)))
    stream = EventStream(login(b), b.url).start()
    try:
        spread = SpreadTransport(AUTH_TOKEN, [a.url, b.url])
        windows: list[Window] = []
        c = SimulatedCall(windowed(spread, store, windows), a.url, AUTH_TOKEN, to=RELAY_NUMBER)
        c.start()
        assert c.waiting.kind == "relay" and c.waiting.verb is not None, a.log_tail()
        socket_url = c.waiting.verb.get("url", "")
        assert urlsplit(socket_url).netloc == urlsplit(a.url).netloc  # A's socket
        assert c.heard[0].text == "Hello, this is Acme Dental. How can I help?"

        line = c.relay()
        reply = line.say("what are your hours")
        assert reply.last and reply.text, a.log_tail()
        line.press("0")  # the route: the session ends, and Twilio posts the <Connect action>
        handoff = json.loads(line.wait_end())
        assert handoff["event"]["digits"] == "0" and handoff["node"] == "assist"
        line.wait_closed()
        assert c.waiting.kind == "dial" and c.dialed == [FRONT_DESK], b.log_tail()
        c.dial_ends("no-answer")
        assert c.ended
        assert c.hang_up().status == 200

        # The session was A's alone; the <Connect action> was answered by B, then the call
        # alternated between them.
        tag = f"[{c.call_sid}] [/api/relay/socket]"  # the socket handler's log lines
        assert tag in a.log.read_text(errors="replace"), a.log_tail()
        assert tag not in b.log.read_text(errors="replace"), b.log_tail()
        assert [(s.server, s.path, s.status) for s in spread.sent] == [
            (0, "/api/incoming-call", 200), (1, "/api/voice/relay", 200),
            (0, "/api/voice/dial", 200), (1, "/api/call-status", 200)]
        connect = spread.sent[1]
        assert connect.params["HandoffData"] == line.ended
        assert "<Dial" in connect.body

        # The store has the call's whole course: the turn A's session stepped, stored after
        # the incoming call's webhook and before the <Connect action> (no webhook was being
        # answered), and the route B took from the handoff, once.
        events = store.events_after(0, c.call_sid)
        incoming, action_window = windows[0], windows[1]
        assert (incoming.server, action_window.server) == (0, 1)
        turn = [e for e in events if incoming.last < e.id <= action_window.first]
        said = [e.data.get("speech") for e in turn if e.name == "call.transcript"]
        assert said == ["what are your hours"], [(e.name, e.data) for e in turn]
        assert [e.data.get("text") for e in turn if e.name == "call.response"] == [reply.text]
        assert [e.data.get("transport") for e in turn if e.name == "call.timing"] == ["relay"]
        assert [e.data.get("status") for e in turn if e.name == "call.relay"] == \
            ["connected", "ended"]
        edges = [(e.data["edge"], e.data["node"]) for e in events if e.name == "call.node"]
        assert edges == [("route", "front_desk"), ("transfer_failed", "goodbye")]
        assert ("route", "front_desk") in [
            (e.data["edge"], e.data["node"]) for e in stored_between(events, action_window)
            if e.name == "call.node"]
        summary = store.get_call(c.call_sid)
        assert summary is not None and summary.status == "completed"

        # B's event stream shows what A's session stored, in order, once each.
        missing = stream.wait_for({event.id for event in events})
        assert not missing, f"stored but not streamed by server B: {sorted(missing)}"
        ours = {event.id for event in events}
        assert [(e.id, e.name) for e in stream.events if e.id in ours] == \
            [(e.id, e.name) for e in events]
    finally:
        stream.close()

