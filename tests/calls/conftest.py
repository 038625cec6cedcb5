"""A call service over a small project, built by the composition root with fake ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.bootstrap import bootstrap
from engine.calls import CallService, EventRecorder, Voicing
from engine.flows.model import Registry
from engine.settings import Settings
from engine.store import CallStore, NewEvent, StoredEvent
from tests.calls.fakes import FakeClock, FakeResponder, voicing_failing

FLOW = """\
flow: desk
personality: plain
numbers: ["+15550001000"]
limits: {max_turns: 20, then: bye}
defaults:
  no_input: {retries: 1, reprompt: ["Still there?"], then: bye}
  on_error:
    network: {retry: 1, then: sorry}
    rate_limit: {then: sorry}
    ai_failure: {then: sorry}
    tts_failure: {voice: twilio}
start: hello
nodes:
  hello: {type: say, text: "Welcome to the desk.", next: talk}
  talk:
    type: ai
    instructions: Help the caller.
    routes:
      - {when: "digits == '0'", to: bye}
    exits: {bye: The caller is done.}
  sorry: {type: say, text: "Sorry about that.", next: bye}
  bye: {type: hangup, text: "Goodbye."}
"""

PERSONALITY = """\
personality: plain
name: Plain
system_prompt: You answer the phone.
voice: {twilio: Polly.Joanna-Neural}
examples:
  - {input: "Hello?", response: "Hello! How can I help?"}
"""

CALLER = "+15557654321"


def call_sid(number: int) -> str:
    return f"CA{number:032x}"


def ringing(sid: str, caller: str = CALLER) -> dict[str, str]:
    return {"CallSid": sid, "From": caller, "To": "+15550001000", "CallStatus": "ringing"}


@dataclass
class Desk:
    """The service under test and its fakes."""

    service: CallService
    store: CallStore
    clock: FakeClock
    responder: FakeResponder
    failing: set[str]
    observed: list[NewEvent] = field(default_factory=list)
    on_voicing: list[Callable[[], None]] = field(default_factory=list)  # run as one is made
    requests: int = 0

    def key(self) -> str:
        self.requests += 1
        return f"request-{self.requests}"

    def events(self, sid: str, name: str | None = None) -> list[StoredEvent]:
        return [event for event in self.store.events_after(0, sid)
                if name is None or event.name == name]


@pytest.fixture
def make_desk(tmp_path: Path) -> Iterator[Callable[..., Desk]]:
    made: list[Desk] = []

    def make(**settings: Any) -> Desk:
        root = tmp_path / f"project{len(made)}"
        (root / "flows").mkdir(parents=True)
        (root / "personalities").mkdir()
        (root / "flows" / "desk.yaml").write_text(FLOW, encoding="utf-8")
        (root / "personalities" / "plain.yaml").write_text(PERSONALITY, encoding="utf-8")
        clock = FakeClock()
        responder = FakeResponder(clock)
        failing: set[str] = set()
        values: dict[str, Any] = {"project_root": root, "store_url": f"sqlite:///{root}/s.db",
                                  "default_flow": "desk", "caller_call_limit": "off",
                                  "max_live_calls": "off", "model_calls_per_hour": "off"}
        values.update(settings)
        observed: list[NewEvent] = []
        hooks: list[Callable[[], None]] = []
        fake_voicing = voicing_failing(failing)

        def voicing(registry: Registry) -> Voicing:
            for hook in hooks:
                hook()
            return fake_voicing(registry)

        runtime = bootstrap(Settings(**values), responder=responder, voicing=voicing,
                            clock=clock, observers=(observed.extend,))
        assert isinstance(runtime.recorder, EventRecorder)
        desk = Desk(runtime.call_service, runtime.store, clock, responder, failing, observed,
                    hooks)
        made.append(desk)
        return desk

    yield make
    for desk in made:
        desk.store.close()


@pytest.fixture
def desk(make_desk: Callable[..., Desk]) -> Desk:
    return make_desk()
