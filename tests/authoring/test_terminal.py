"""`flask call`: a call in the terminal through the signed webhooks, in process or over HTTP."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from werkzeug.serving import make_server

from engine.calls.test_calls import source_of_test_call
from engine.simulator import DEFAULT_DURATION, Heard, HttpAnswer, SimulatedCall
from engine.terminal import ScriptError, Turn, check_turn, heard_lines, parse_line
from tests.authoring.conftest import AUTH_TOKEN, ROOT, logged_in
from tests.support import Clock

TRANSFER_AND_VOICEMAIL = """\
# a comment line: skipped
Can I talk to a person?
!no-answer
!record 10
"""


def call(app: Flask, *args: str, stdin: str | None = None) -> Result:
    return app.test_cli_runner().invoke(args=["call", *args], input=stdin)


def node_events(app: Flask) -> tuple[str, list[dict[str, Any]]]:
    store = app.extensions["phoney"].store
    (summary,) = store.list_calls()
    events = store.events_after(0, summary.call_sid)
    return summary.status, [dict(event.data) for event in events if event.name == "call.node"]


def test_a_script_drives_the_receptionist_to_a_transfer_and_voicemail(
        tmp_path: Path, make_app: Callable[..., Flask]) -> None:
    script = tmp_path / "call.txt"
    script.write_text(TRANSFER_AND_VOICEMAIL, encoding="utf-8")
    app = make_app(ROOT)
    result = call(app, "receptionist", "--script", str(script), "--from", "+15557770000")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("Calling flow receptionist in process; replies come from the offline "
                        "responder (OPENAI_API_KEY is not set).")
    assert lines[1] == "The caller +15557770000 calls +15550001000."
    expected = [
        "  agent [Polly.Joanna-Neural]: Thanks for calling Acme Dental.",
        "  agent [Polly.Joanna-Neural]: This is the virtual receptionist. How can I help you "
        "today?",
        "you> Can I talk to a person?",
        "  agent [Polly.Joanna-Neural]: Connecting you to the front desk now.",
        "→ dialing +15550001111",
        "  > !no-answer",
        "  agent [Polly.Joanna-Neural]: Sorry, nobody at the front desk can pick up right now.",
        "● recording…",
        "  > !record 10",
        "  (recorded 10 s)",
        "  agent [Polly.Joanna-Neural]: Thanks for calling Acme Dental. Goodbye!",
        "☎ the call ended",
        "path: greet -next-> assist -route-> front_desk -transfer_failed-> missed -next-> "
        "voicemail -next-> goodbye",
        "timings (webhook round trips per turn):",
    ]
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions), result.output
    for label in ("ring", "say 'Can I talk to a person?'", "dial no-answer", "record 10",
                  "status callback"):
        assert any(line.startswith(f"  {label} ") for line in lines), label
    assert "5 webhooks: median" in result.output
    status, moves = node_events(app)
    assert status == "completed"  # the status callback was sent
    assert [move["node"] for move in moves] == ["assist", "front_desk", "missed", "voicemail",
                                                "goodbye"]


def test_at_the_keyboard_each_prompt_takes_its_answer(make_app: Callable[..., Flask]) -> None:
    app = make_app(ROOT)
    typed = "What are your hours?\n\n#0\nbusy\n\n"
    result = call(app, "receptionist", stdin=typed)
    assert result.exit_code == 0, result.output
    output = result.output
    assert "Type what the caller says; an empty line is silence" in output
    assert "Are you still there?" in output  # the empty line was silence
    assert "answered/busy/no-answer/failed? [answered]" in output
    assert "● recording… (Enter to stop)" in output
    assert "path: greet -next-> assist -route-> front_desk -transfer_failed-> missed" in output
    assert "model on assist (offline): first_token 0.00 s" in output


def test_end_of_input_hangs_up_with_the_status_callback(make_app: Callable[..., Flask]) -> None:
    app = make_app(ROOT, clock=Clock())  # a weekday morning: the office is open
    result = call(app, "after_hours", "--to", "+15550002000", stdin="")
    assert result.exit_code == 0, result.output
    assert "☎ you hung up" in result.output
    assert "path: welcome -next-> check_hours -route-> office" in result.output
    assert "→ dialing +15550002111" in result.output
    status, _ = node_events(app)
    assert status == "completed"


def test_a_line_that_does_not_fit_ends_a_scripted_call(
        tmp_path: Path, make_app: Callable[..., Flask]) -> None:
    script = tmp_path / "call.txt"
    script.write_text("!busy\n", encoding="utf-8")
    app = make_app(ROOT)
    result = call(app, "receptionist", "--script", str(script))
    assert result.exit_code == 1
    assert "error: script line 1: '!busy' does not fit here: it is the caller's turn" in \
        result.output
    assert node_events(app)[0] == "completed"  # hung up properly all the same


def test_at_the_keyboard_a_line_that_does_not_fit_is_explained(
        make_app: Callable[..., Flask]) -> None:
    result = call(make_app(ROOT), "receptionist", stdin="!record 3\n#x\n!hangup\n")
    assert result.exit_code == 0, result.output
    assert "('!record 3' does not fit here: it is the caller's turn" in result.output
    assert "keypad input is # and then digits" in result.output
    assert "☎ you hung up" in result.output


def test_an_unknown_flow_is_refused(make_app: Callable[..., Flask]) -> None:
    result = call(make_app(ROOT), "receptonist")
    assert result.exit_code == 2
    assert "unknown flow 'receptonist' (did you mean 'receptionist'?)" in result.output


@pytest.fixture
def served(make_app: Callable[..., Flask]) -> Iterator[tuple[Flask, str]]:
    app = make_app(ROOT)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_running_server_is_called_over_http(served: tuple[Flask, str],
                                              make_app: Callable[..., Flask],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    app, url = served
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    result = call(app, "receptionist", "--url", url, stdin="#0\nanswered\n")
    assert result.exit_code == 0, result.output
    assert f"Calling flow receptionist at {url}; the server's own model settings answer." in \
        result.output
    assert "→ dialing +15550001111" in result.output
    assert "path: greet -next-> assist -route-> front_desk" in result.output  # same store
    # A command whose app keeps another store cannot show the path, and says why.
    other = make_app(ROOT)
    result = call(other, "receptionist", "--url", url, stdin="")
    assert result.exit_code == 0, result.output
    assert f"path: not in this store ({url} keeps the call's events in its own)" in result.output


def test_calling_a_server_needs_its_token(served: tuple[Flask, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    app, url = served
    result = call(app, "receptionist", "--url", url)
    assert result.exit_code == 2
    assert "set TWILIO_AUTH_TOKEN" in result.output
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "not-the-token")
    result = call(app, "receptionist", "--url", url)
    assert result.exit_code == 1
    assert "answered HTTP 403" in result.output  # the signature check refused it


def test_an_unreachable_server_is_reported(make_app: Callable[..., Flask],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    result = call(make_app(ROOT), "receptionist", "--url", "http://127.0.0.1:9")
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9/api/incoming-call?flow=receptionist" in result.output


@pytest.mark.parametrize(("line", "turn"), [
    ("Hello there", Turn("say", "Hello there")),
    ("", Turn("silence")),
    ("   ", Turn("silence")),
    ("#1", Turn("press", "1")),
    ("#12*#", Turn("press", "12*#")),
    ("!hangup", Turn("hangup")),
    ("!no-answer", Turn("dial", "no-answer")),
    ("!answered", Turn("dial", "answered")),
    ("!record 10", Turn("record", seconds=10)),
    ("!record", Turn("record", seconds=5)),
])
def test_lines_are_turns(line: str, turn: Turn) -> None:
    assert parse_line(line) == turn


@pytest.mark.parametrize("line", ["#", "#one", "!record ten", "!dance"])
def test_malformed_lines_are_explained(line: str) -> None:
    with pytest.raises(ScriptError):
        parse_line(line)


def test_turns_must_fit_what_the_call_waits_for() -> None:
    check_turn(Turn("say", "hi"), "gather", "speech dtmf")
    check_turn(Turn("hangup"), "record")
    with pytest.raises(ScriptError, match="keypad input only"):
        check_turn(Turn("say", "hi"), "gather", "dtmf")
    with pytest.raises(ScriptError, match="speech only"):
        check_turn(Turn("press", "1"), "gather", "speech")
    with pytest.raises(ScriptError, match="dialing a transfer"):
        check_turn(Turn("say", "hi"), "dial")


def test_heard_shows_the_voice_or_the_audio() -> None:
    assert heard_lines([Heard("Hi.", "Polly.Amy"), Heard("", audio_url="https://x/a.mp3"),
                        Heard("")]) == ["  agent [Polly.Amy]: Hi.", "  agent [audio https://x/a.mp3]"]


def test_at_calls_at_that_moment_of_the_flows_own_time(make_app: Callable[..., Flask]) -> None:
    app = make_app(ROOT)
    closed = call(app, "after_hours", "--to", "+15550002000", "--at", "2026-03-07T23:00",
                  stdin="")  # a Saturday night in the flow's timezone
    assert closed.exit_code == 0, closed.output
    assert "The call rings at 2026-03-07 23:00 America/Chicago (--at)." in closed.output
    assert "check_hours -next-> closed" in closed.output
    opened = call(app, "after_hours", "--to", "+15550002000", "--at", "2026-03-04T10:00",
                  stdin="")  # a Wednesday morning
    assert "check_hours -route-> office" in opened.output, opened.output
    bad = call(app, "after_hours", "--at", "tomorrow")
    assert bad.exit_code == 2 and "write the moment as 2026-03-04T10:00" in bad.output
    remote = call(app, "after_hours", "--at", "2026-03-04T10:00", "--url", "http://x")
    assert remote.exit_code == 2 and "a server at --url keeps its own" in remote.output


def test_piped_lines_are_echoed_like_a_conversation(make_app: Callable[..., Flask]) -> None:
    result = call(make_app(ROOT), "receptionist", stdin="What are your hours?\n!hangup\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    said = lines.index("you> What are your hours?")
    assert lines[said - 1].startswith("  agent [")  # the question, then the answer typed
    assert lines[said + 1].startswith("  agent [")
    assert "you> !hangup" in lines


def test_the_call_reports_its_real_duration(make_app: Callable[..., Flask]) -> None:
    app = make_app(ROOT)
    result = call(app, "receptionist", stdin="!hangup\n")
    assert result.exit_code == 0, result.output
    assert "duration: 0:0" in result.output  # seconds, not the simulator's old minute
    (summary,) = app.extensions["phoney"].store.list_calls()
    assert summary.duration is not None and summary.duration < 60


def test_a_simulated_call_reports_the_time_on_its_clock() -> None:
    posted: list[dict[str, str]] = []

    def transport(url: str, params: Any, headers: Any) -> HttpAnswer:
        posted.append(dict(params))
        return HttpAnswer(200, "<Response><Hangup/></Response>", "text/xml")

    now = [1000.0]
    timed = SimulatedCall(transport, "http://localhost", "token", clock=lambda: now[0]).start()
    now[0] += 75.4
    timed.hang_up()
    assert posted[-1]["CallDuration"] == "75"
    SimulatedCall(transport, "http://localhost", "token").start().hang_up()
    assert posted[-1]["CallDuration"] == str(DEFAULT_DURATION)


def test_a_call_in_the_terminal_is_marked_a_test_call(make_app: Callable[..., Flask]) -> None:
    app = make_app(ROOT)
    assert call(app, "receptionist", stdin="!hangup\n").exit_code == 0
    store = app.extensions["phoney"].store
    (summary,) = store.list_calls()
    assert source_of_test_call(store, summary.call_sid) == "flask call"
    events = [event.name for event in store.events_after(0, summary.call_sid)]
    assert "call.test" in events and events.index("call.test") > events.index("call.start")
    client = logged_in(app)
    assert client.get("/api/calls?test=0").get_json()["calls"] == []  # left out when asked
    (listed,) = client.get("/api/calls").get_json()["calls"]
    assert listed["test"] == "flask call"
    assert client.get(f"/api/calls/{summary.call_sid}").get_json()["test"] == "flask call"
