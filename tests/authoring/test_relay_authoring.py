"""The authoring loop on ConversationRelay calls: `flask call` and scenario steps talk to the
session over a real WebSocket (the app served on a local port in process, or a running server
at --url), with the project's own simulator playing Twilio and no mocks."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from werkzeug.serving import make_server

from engine.authoring.relay_caller import REPLY_THREAD, replies_running
from engine.authoring.runner import make_harness, run_scenario
from engine.flows.loader import load_project
from engine.flows.model import AiNode
from engine.flows.scenarios import load_scenarios
from engine.terminal import CallOptions, call_in_terminal
from engine.web.app import create_app
from tests.authoring.conftest import AUTH_TOKEN, PERSONALITY, ROOT, Project, dedent, line_of
from tests.doubles.openai_server import OpenAIDouble, Text

RELAY_MINI = """\
flow: relay_mini
description: A relay conversation for the authoring tests.
# The session measures silence in real time: a long timeout keeps a slow machine's pauses
# between steps from counting as the caller's silence (one test sets it short on purpose).
personality: p
numbers: ["+15550008000"]
vars: {business: Acme, desk: "+15550009999"}
limits: {max_turns: 8, then: bye}
defaults:
  conversation: relay
  no_input: {retries: 1, reprompt: ["Still there?"], then: bye}
  on_error:
    network: {retry: 1, then: sorry}
    rate_limit: {then: sorry}
    ai_failure: {then: sorry}
    tts_failure: {voice: twilio}
start: chat
nodes:
  chat:
    type: ai
    opening: How can I help?
    input: [speech, dtmf]
    timeout: 60
    routes:
      - when: said_any('desk') or digits == '0'
        to: desk
    exits:
      bye: The caller is done.
  sorry:
    type: say
    text: Sorry about that.
    next: bye
  desk:
    type: transfer
    to: "{{ vars.desk }}"
    announce: Putting you through.
    on_fail: bye
  bye:
    type: hangup
    text: Goodbye.
"""

CONVERSATION = """\
flow: relay_mini
scenarios:
  - name: a streamed answer, an interruption, then goodbye by the model's exit
    steps:
      - expect: {heard: "How can I help?", node: chat}
      - say: When do you open?
        model: {reply: "We open at nine. On Saturdays we open at ten instead."}
        expect: {heard: We open at nine, node: chat, hangup: false, events: [call.response]}
      - interrupt: We open at nine
        expect: {events: [call.interrupt], hangup: false}
      - say: Thanks, bye.
        model: {reply: "Bye now!", exit: bye}
        expect: {node: bye, hangup: true, heard: ["Bye now", "Goodbye"]}
  - name: asking for the desk routes before the model
    steps:
      - say: The desk please
        expect: {node: desk, transfer: "+15550009999", heard: Putting you through}
      - dial: busy
        expect: {node: bye, hangup: true}
  - name: pressing 0 routes too
    steps:
      - press: "0"
        expect: {transfer: "+15550009999"}
  - name: a network failure is retried inside the session, twice is too many
    steps:
      - say: Hello?
        model: [{error: network}, {error: network}]
        expect: {node: sorry, heard: Sorry about that, hangup: true}
  - name: the caller hangs up mid-session
    steps:
      - say: Hello?
        model: {reply: "Hi there."}
      - hangup: true
        expect: {hangup: true, events: [call.end]}
"""


OPENING_HOURS = "We open at nine, and at ten on Saturdays."


@pytest.fixture
def relay_project(project: Project) -> Project:
    """The authoring project with the relay flow, and an example the offline responder answers
    `flask call`'s question with."""
    project.write("flows/relay_mini.yaml", RELAY_MINI)
    project.write("personalities/p.yaml", PERSONALITY + "  - input: When do you open?\n"
                  f"    response: {OPENING_HOURS}\n")
    return project


def flows_test(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["flows", "test", *args])


def call(app: Flask, *args: str, stdin: str | None = None) -> Result:
    return app.test_cli_runner().invoke(args=["call", *args], input=stdin)


def events(app: Flask, name: str) -> list[dict[str, Any]]:
    store = app.extensions["phoney"].store
    (summary,) = store.list_calls()
    return [dict(event.data) for event in store.events_after(0, summary.call_sid)
            if event.name == name]


# -- scenarios ----------------------------------------------------------------------------------

def test_scenario_steps_drive_a_relay_call_and_count_its_edges(
        relay_project: Project, make_app: Callable[..., Flask]) -> None:
    relay_project.scenarios(CONVERSATION, "relay_mini")
    result = flows_test(make_app(relay_project.root), "relay_mini")
    assert result.exit_code == 0, result.output
    assert "5 passed, 0 failed" in result.output
    coverage = result.output[result.output.index("edge coverage:"):]
    for edge in ("chat -exit-> bye", "chat -route-> desk", "chat -error:network-> chat (retry 1)",
                 "chat -error:network-> sorry", "desk -transfer_failed-> bye"):
        assert any(line.strip().startswith("✓") and edge in line
                   for line in coverage.splitlines()), (edge, coverage)


def test_an_interruption_keeps_only_what_the_caller_heard(relay_project: Project,
                                                          tmp_path: Path) -> None:
    path = relay_project.scenarios(CONVERSATION, "relay_mini")
    harness = make_harness(relay_project.root, tmp_path, create_app)
    try:
        flow = harness.flow("relay_mini")
        assert flow is not None
        [scenarios] = load_scenarios([path], {"relay_mini": flow}).files
        first = scenarios.scenarios[0]
        shortened = dataclasses.replace(first, steps=first.steps[:3])  # no goodbye
        result = run_scenario(harness, flow, "relay_mini.test.yaml", shortened)
        assert result.passed, result.failure
        store = harness.services.store
        (summary,) = store.list_calls()
        state = store.get_state(summary.call_sid)
        assert state is not None
        replies = [line.text for line in state.history if line.role == "agent"]
        assert replies[-1] == "We open at nine"  # the rest of the reply was never heard
        interrupts = [event.data for event in store.events_after(0, summary.call_sid)
                      if event.name == "call.interrupt"]
        assert [data["heard"] for data in interrupts] == ["We open at nine"]
    finally:
        harness.close()


def test_a_failing_expectation_on_a_relay_reply_names_the_step(
        relay_project: Project, make_app: Callable[..., Flask]) -> None:
    text = dedent("""
        flow: relay_mini
        scenarios:
          - name: the wrong hours
            steps:
              - say: When do you open?
                model: {reply: "We open at nine."}
                expect: {heard: We open at eight}
    """)
    relay_project.scenarios(text, "relay_mini")
    result = flows_test(make_app(relay_project.root), "relay_mini")
    assert result.exit_code == 1
    line = line_of(text, "say: When do you open?")
    assert (f"flows/relay_mini.test.yaml:{line}: step 1 (say 'When do you open?'): expected "
            f"to hear 'We open at eight'; heard 'We open at nine.'") in result.output


def test_an_interruption_must_be_how_the_reply_began(relay_project: Project,
                                                      make_app: Callable[..., Flask]) -> None:
    text = dedent("""
        flow: relay_mini
        scenarios:
          - name: heard what was never said
            steps:
              - say: When do you open?
                model: {reply: "We open at nine."}
              - interrupt: We close at five
    """)
    relay_project.scenarios(text, "relay_mini")
    result = flows_test(make_app(relay_project.root), "relay_mini")
    assert result.exit_code == 1
    line = line_of(text, "interrupt:")
    assert (f"flows/relay_mini.test.yaml:{line}: step 2 (interrupt 'We close at five'): the "
            f"caller cannot have heard 'We close at five': it is not how the last reply began "
            f"('We open at nine.')") in result.output


def test_an_unscripted_model_request_on_a_relay_call_is_reported(
        relay_project: Project, make_app: Callable[..., Flask]) -> None:
    relay_project.scenarios("""
        flow: relay_mini
        scenarios:
          - name: nothing scripted
            steps:
              - say: Are you open?
    """, "relay_mini")
    result = flows_test(make_app(relay_project.root), "relay_mini")
    assert result.exit_code == 1
    assert ("step 1 (say 'Are you open?'): the flow asked the model on node 'chat' (the caller "
            "said 'Are you open?') but no model answer was scripted for this step") \
        in result.output


def test_interrupt_is_for_relay_calls_only(project: Project,
                                           make_app: Callable[..., Flask]) -> None:
    project.scenarios("""
        flow: mini
        scenarios:
          - name: no relay here
            steps:
              - interrupt: How can
    """)
    result = flows_test(make_app(project.root), "mini")
    assert result.exit_code == 1
    assert ("step 1 (interrupt 'How can'): the caller cannot interrupt 'How can' now: the call "
            "is waiting for the caller to speak or press keys (only a ConversationRelay "
            "session can be talked over") in result.output


# -- flask call ---------------------------------------------------------------------------------

def test_flask_call_converses_over_the_relay_socket(relay_project: Project,
                                                     make_app: Callable[..., Flask]) -> None:
    app = make_app(relay_project.root)
    result = call(app, "relay_mini", stdin="When do you open?\n!We open at nine\n#0\nbusy\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    expected = [
        "  agent [Matthew-Neural]: How can I help?",  # the welcome greeting, Twilio's to say
        "you> When do you open?",
        f"  agent [Matthew-Neural, relay]: {OPENING_HOURS}",  # streamed token by token
        "you> !We open at nine",
        "  (you talked over the reply after 'We open at nine')",
        "you> #0",
        "  agent [Polly.Matthew-Neural]: Putting you through.",
        "→ dialing +15550009999",
        "☎ the call ended",
        "path: chat -route-> desk -transfer_failed-> bye",
    ]
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions), result.output
    assert any(line.startswith("  say 'When do you open?' ") and "first text" in line
               for line in lines)
    [interrupt] = events(app, "call.interrupt")
    assert interrupt["heard"] == "We open at nine"
    [response] = events(app, "call.response")
    assert response["text"] == OPENING_HOURS


def test_flask_call_says_when_what_was_heard_was_never_said(
        relay_project: Project, make_app: Callable[..., Flask]) -> None:
    result = call(make_app(relay_project.root), "relay_mini",
                  stdin="When do you open?\n!Goodbye then\n")
    assert result.exit_code == 0, result.output
    assert ("  (note: the caller cannot have heard 'Goodbye then': it is not how the last reply "
            f"began ({OPENING_HOURS!r}))") in result.output


def test_a_command_that_does_not_fit_a_relay_call_is_explained(
        relay_project: Project, make_app: Callable[..., Flask], tmp_path: Path) -> None:
    script = tmp_path / "call.txt"
    script.write_text("!record 10\n", encoding="utf-8")
    result = call(make_app(relay_project.root), "relay_mini", "--script", str(script))
    assert result.exit_code == 1
    assert ("error: script line 1: '!record 10' does not fit here: it is the caller's turn in a "
            "relay session") in result.output


@pytest.fixture
def served(relay_project: Project, make_app: Callable[..., Flask]
           ) -> Iterator[tuple[Flask, str]]:
    app = make_app(relay_project.root)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_flask_call_reaches_a_running_servers_relay_socket(
        served: tuple[Flask, str], monkeypatch: pytest.MonkeyPatch) -> None:
    app, url = served
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    result = call(app, "relay_mini", "--url", url, stdin="When do you open?\n#0\n")
    assert result.exit_code == 0, result.output
    assert f"  agent [Matthew-Neural, relay]: {OPENING_HOURS}" in result.output
    assert "→ dialing +15550009999" in result.output  # the route, from the server's session
    [response] = events(app, "call.response")
    assert response["text"] == OPENING_HOURS


def test_a_bundled_flow_converses_over_relay() -> None:
    registry = load_project(ROOT).registry
    assert registry is not None
    concierge = registry.flows["concierge"].nodes["concierge"]
    assert isinstance(concierge, AiNode) and concierge.conversation == "relay"


class Typing:
    """A caller at a keyboard (not a TTY): each line comes once its condition holds, as if
    typed while the session went on."""

    def __init__(self, lines: list[str], before: dict[int, Callable[[], bool]]) -> None:
        self.lines = lines
        self.before = before
        self.count = 0

    def readline(self) -> str:
        index, self.count = self.count, self.count + 1
        condition = self.before.get(index)
        if condition is not None:
            deadline = time.monotonic() + 20
            while not condition():
                assert time.monotonic() < deadline, "the condition did not hold in time"
                time.sleep(0.05)
        return self.lines[index] if index < len(self.lines) else ""

    def isatty(self) -> bool:
        return False


def test_a_line_typed_after_the_session_ended_goes_where_the_call_is(
        relay_project: Project, make_app: Callable[..., Flask]) -> None:
    relay_project.write("flows/relay_mini.yaml", RELAY_MINI.replace("timeout: 60",
                                                                     "timeout: 1"))
    app = make_app(relay_project.root)

    def ended_in_silence() -> bool:
        return any(data["status"] == "ended" and data.get("handoff") == "silence"
                   for data in events(app, "call.relay"))

    output: list[str] = []
    status = call_in_terminal(app, CallOptions("relay_mini"), output.append,
                              Typing(["thanks\n"], {0: ended_in_silence}))  # type: ignore[arg-type]
    assert status == 0, output
    assert output.index("you> thanks") < output.index("  agent [Matthew-Neural, relay]: "
                                                      "Still there?")  # the reprompt, read late
    assert "  agent [Polly.Matthew-Neural]: Goodbye." in output
    assert ("  (the relay session ended before your line: 'thanks' does not fit here: the call "
            "has ended)") in output
    assert "☎ the call ended" in output
    assert [data["edge"] for data in events(app, "call.node")] == ["no_input"]


def test_flask_call_prints_a_model_reply_as_it_streams(relay_project: Project,
                                                       make_app: Callable[..., Flask]) -> None:
    with OpenAIDouble(api_key="test-key") as double:
        double.chat(Text(OPENING_HOURS, tokens_per_second=20))
        app = make_app(relay_project.root, OPENAI_API_KEY="test-key",
                       OPENAI_BASE_URL=double.base_url, SPEECH_WARMUP=False)
        written: list[tuple[float, str]] = []
        output: list[str] = []
        status = call_in_terminal(app, CallOptions("relay_mini"), output.append,
                                  Typing(["When do you open?\n"], {}),  # type: ignore[arg-type]
                                  prompt=lambda text: written.append((time.monotonic(), text)))
    assert status == 0, output
    assert "".join(text for _, text in written).rstrip() == \
        f"  agent [Matthew-Neural, relay]: {OPENING_HOURS}"
    tokens = written[1:]  # after the agent's label
    assert len(tokens) >= 8  # word by word
    assert tokens[-1][0] - tokens[0][0] > 0.2  # each printed as it came, not at the end
    assert output.index("you> When do you open?") < output.index("☎ you hung up")


def test_only_a_sessions_reply_threads_count_as_replying() -> None:
    assert REPLY_THREAD.fullmatch("relay-0123456789ab")  # engine/relay/session.py's replies
    for other in ("ws-relay-0123456789ab", "relay-socket-0123456789ab", "relay-"):
        assert not REPLY_THREAD.fullmatch(other), other  # a socket's thread lives on
    release = threading.Event()
    reply = threading.Thread(target=release.wait, name="relay-0123456789ab", daemon=True)
    reply.start()
    try:
        assert replies_running()
    finally:
        release.set()
        reply.join(5)
