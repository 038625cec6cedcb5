"""Fixtures for relay calls: a project with a relay flow, the app on it over real HTTP and
WebSockets (the werkzeug server of tests/conftest.py), and the OpenAI double as its model.

`relay_call()` rings the relay flow's number through the project's simulator
(engine/simulator.py); `c.relay()` then opens the session as Twilio would.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engine.relay.simulator import RelayLine
from engine.simulator import SimulatedCall
from tests.conftest import ROOT, LiveServer
from tests.doubles.openai_server import OpenAIDouble
from tests.support import AUTH_TOKEN, requests_transport

RELAY_NUMBER = "+15550002000"
FRONT_DESK = "+15550001111"

RELAY_FLOW = """\
flow: relay_desk
description: A relay conversation for the tests.
personality: friendly
numbers: ["+15550002000"]
vars: {business: Acme Dental, front_desk: "+15550001111"}
limits: {max_turns: 6, then: goodbye}
defaults:
  conversation: relay
  no_input: {retries: 1, then: goodbye}
  on_error:
    network: {retry: 1, then: goodbye}
    rate_limit: {retry: 1, then: goodbye}
    ai_failure: {personality: professional, then: goodbye}
    tts_failure: {voice: twilio}
start: assist
nodes:
  assist:
    type: ai
    opening: Hello, this is Acme Dental. How can I help?
    instructions: Help callers of {{ vars.business }}.
    input: [speech, dtmf]
    hints: [cleaning, appointment]
    routes:
      - when: said_any('human', 'person') or digits == '0'
        to: front_desk
    exits:
      goodbye: The caller has what they need.
      front_desk: The caller wants to book.
  front_desk:
    type: transfer
    to: "{{ vars.front_desk }}"
    announce: Connecting you to the front desk.
    timeout: 20
    on_fail: goodbye
  goodbye:
    type: hangup
    text: Thanks for calling. Goodbye!
"""


@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    with OpenAIDouble(api_key="test-key") as server:
        yield server
    assert server.errors == [], "the OpenAI double failed internally"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The bundled personalities and one relay flow."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "personalities", root / "personalities")
    (root / "flows").mkdir()
    (root / "flows" / "relay_desk.yaml").write_text(RELAY_FLOW, encoding="utf-8")
    return root


PATIENT_FLOW = RELAY_FLOW.replace("    opening: Hello", "    timeout: 60\n    opening: Hello", 1)
"""The relay flow with the longest silence a node may wait (60 s, then a reprompt and 60 s more):
for sessions that must stay open while a test does other things."""
assert "timeout: 60" in PATIENT_FLOW


@pytest.fixture
def patient_project(tmp_path: Path) -> Path:
    """The bundled personalities and the patient relay flow (`PATIENT_FLOW`)."""
    root = tmp_path / "patient-project"
    shutil.copytree(ROOT / "personalities", root / "personalities")
    (root / "flows").mkdir()
    (root / "flows" / "relay_desk.yaml").write_text(PATIENT_FLOW, encoding="utf-8")
    return root


@pytest.fixture
def app_config(app_config: dict[str, Any], double: OpenAIDouble,
               project: Path) -> dict[str, Any]:
    return {**app_config, "PROJECT_ROOT": str(project), "OPENAI_API_KEY": "test-key",
            "OPENAI_BASE_URL": double.base_url, "SPEECH_WARMUP": False}


@pytest.fixture(autouse=True)
def sessions_end_before_the_store_closes(make_app: Callable[..., Flask], double: OpenAIDouble,
                                         monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Replies run in threads of their own, and a session's socket is served by a thread that
    keeps the session's clock (its silences): the test's sessions are hung up at its end, and
    those threads end before the app's store closes."""
    opened: list[RelayLine] = []
    connect = RelayLine.__init__

    def tracked(line: RelayLine, *args: Any, **kwargs: Any) -> None:
        connect(line, *args, **kwargs)
        opened.append(line)

    monkeypatch.setattr(RelayLine, "__init__", tracked)
    yield
    for line in opened:
        line.close()
    double.close()
    for thread in threading.enumerate():
        if thread.name.startswith(("relay-", "model-", "ws-relay-")):
            thread.join(timeout=10)


@pytest.fixture
def server(app: Flask) -> Iterator[LiveServer]:
    live = LiveServer(app)
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def relay_call(server: LiveServer) -> Callable[..., SimulatedCall]:
    """`relay_call(**options)`: a SimulatedCall to the relay flow's number over real HTTP."""

    def make(**options: Any) -> SimulatedCall:
        options.setdefault("to", RELAY_NUMBER)
        return SimulatedCall(requests_transport, server.url, AUTH_TOKEN, **options)

    return make
