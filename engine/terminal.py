"""`flask call`: a phone call in the terminal, through the same signed webhooks Twilio uses.

The call simulator (`engine.simulator.SimulatedCall`) plays Twilio: it signs each webhook,
follows the TwiML, and stops where Twilio would wait for the caller. This module plays the
caller: it shows what was heard and in which voice, reads what the caller does next from the
keyboard or a script, and at the end prints the path the call took through the flow's graph (its
`call.node` events) and how long each turn took.

A line the caller types (or a script holds):

    text          speech (SpeechResult)
    (empty)       silence: the <Gather> times out
    #12           keypad digits
    !hangup       the caller hangs up
    !no-answer    how a transfer ends: !answered, !busy, !no-answer, !failed, !canceled
    !record 10    a recording 10 seconds long
    !text         on a ConversationRelay call: the caller talks over the reply, having heard
                  `text` of it (how it began; `!` alone: nothing)
    # a comment   (scripts only: `#` and a space) skipped

On a relay ai node the call converses over the session's WebSocket (`engine.authoring.
relay_caller`; in process the app is served on a local port for it): a line is a `prompt`, keys
are `dtmf`, and the reply is printed as its tokens arrive.

End of input (Ctrl-D, or the end of the script) hangs up. Either way the call ends with the status
callback Twilio sends, whose CallDuration is the call's real length.

Lines piped in (`echo "Hello" | flask call receptionist`) are echoed after their prompt like a
script's, so the transcript reads as a conversation. `--at 2026-03-04T10:00` calls at that
moment of the flow's own timezone: the call's clock starts there and runs at the real pace.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TextIO
from urllib.parse import quote

from flask import Flask

from engine.authoring.relay_caller import RelayCaller
from engine.authoring.run_errors import template_failures
from engine.authoring.runner import epoch, interrupt_problem
from engine.authoring.transports import LocalServer, app_transport, http_transport
from engine.calls.test_calls import mark_test_call
from engine.flows.schema import did_you_mean
from engine.relay.simulator import HandshakeRefused, RelayError
from engine.simulator import CallError, Heard, SimulatedCall, Transport
from engine.store import CallStore, StoredEvent
from engine.web.services import Services

Echo = Callable[[str], None]

DIAL_OUTCOMES = {"answered": "completed", "completed": "completed", "busy": "busy",
                 "no-answer": "no-answer", "failed": "failed", "canceled": "canceled"}
KEYPAD = frozenset("0123456789*#")
RECORD_DEFAULT = 5
DIAL_PROMPT = "answered/busy/no-answer/failed? [answered] "
SILENCE_SECONDS = 5.0
"""The silence a relay session is given to notice (an ai node's default `timeout`)."""
RELAY_HINT = ("(a ConversationRelay session: replies stream as they are written; !TEXT talks "
              "over the reply, having heard TEXT of it)")


class ScriptError(ValueError):
    """A script line that does not fit what the call is waiting for."""


@dataclass(frozen=True)
class Turn:
    """What the caller does: say, silence, press, hangup, dial (status), record (seconds) or,
    on a relay call, interrupt (having heard `value` of the reply)."""

    kind: str
    value: str = ""
    seconds: int = 0

    def label(self) -> str:
        """The turn as the timings show it: `say 'hi'`, `#12`, `dial busy`, `record 10`,
        `silence`.
        """
        if self.kind in ("say", "interrupt"):
            return f"{self.kind} {self.value!r}"
        if self.kind == "press":
            return f"#{self.value}"
        if self.kind in ("dial", "record"):
            return f"{self.kind} {self.value or self.seconds}"
        return self.kind


def parse_line(line: str, waiting: str = "") -> Turn:
    """A caller's line, whatever the call waits for (`check_turn` says if it fits); while it
    waits on a relay session, `!` and text other than a command is an interruption."""
    text = line.strip()
    if not text:
        return Turn("silence")
    if text.startswith("#"):
        digits = text[1:].strip()
        if not digits or not set(digits) <= KEYPAD:
            raise ScriptError(f"{text!r}: keypad input is # and then digits, * or #, e.g. #1")
        return Turn("press", digits)
    if text.startswith("!"):
        command, _, argument = text[1:].strip().partition(" ")
        if waiting == "relay" and command not in ("hangup", "record", *DIAL_OUTCOMES):
            return Turn("interrupt", text[1:].strip())
        if command == "hangup":
            return Turn("hangup")
        if command in DIAL_OUTCOMES:
            return Turn("dial", command)
        if command == "record":
            seconds = argument.strip() or str(RECORD_DEFAULT)
            if not seconds.isdigit():
                raise ScriptError(f"{text!r}: write !record and the seconds, e.g. !record 10")
            return Turn("record", seconds=int(seconds))
        raise ScriptError(f"{text!r}: unknown command; use !hangup, !record SECONDS or a "
                          f"transfer outcome: {', '.join('!' + name for name in DIAL_OUTCOMES)}")
    return Turn("say", text)


def check_turn(turn: Turn, waiting: str, listens_for: str = "speech dtmf",
               shown: str | None = None) -> None:
    """Raise ScriptError when `turn` is not something the caller can do now.

    `listens_for` is the waiting <Gather>'s `input` attribute; `shown` the line as typed.
    """
    allowed = {"gather": ("say", "silence", "press"), "dial": ("dial",),
               "record": ("record",),
               "relay": ("say", "silence", "press", "interrupt")}.get(waiting, ())
    if turn.kind == "say" and waiting == "gather" and "speech" not in listens_for:
        raise ScriptError("this question takes keypad input only: type # and the keys, e.g. #1")
    if turn.kind == "press" and waiting == "gather" and "dtmf" not in listens_for:
        raise ScriptError("this question takes speech only: type what the caller says")
    if turn.kind == "hangup" or turn.kind in allowed:
        return
    hints = {"gather": "it is the caller's turn: type what they say, an empty line for silence, "
                       "or # and keys (#1)",
             "dial": "the call is dialing a transfer: how does it end? !answered, !busy, "
                     "!no-answer or !failed",
             "record": "the call is recording: type !record and the seconds, e.g. !record 10",
             "relay": "it is the caller's turn in a relay session: type what they say, # and "
                      "keys (#1), or ! and what they heard of the reply to talk over it"}
    raise ScriptError(f"'{shown or turn.label()}' does not fit here: "
                      f"{hints.get(waiting, 'the call has ended')}")


class CallerInput:
    """The caller's lines: from a script (echoed, so the transcript reads on) or the keyboard."""

    def __init__(self, echo: Echo, stdin: TextIO, script: Sequence[str] | None = None,
                 prompt: Echo | None = None) -> None:
        self.echo = echo
        self.prompt = prompt or echo  # writes without a newline, for the keyboard
        self.stdin = stdin
        self.script = list(script) if script is not None else None
        self.line_number = 0

    @property
    def scripted(self) -> bool:
        """True when the lines come from a script rather than the keyboard."""
        return self.script is not None

    def read(self, prompt: str) -> str | None:
        """The next line, or None at the end of the input."""
        if self.script is not None:
            while self.line_number < len(self.script):
                line = self.script[self.line_number].rstrip("\r\n")
                self.line_number += 1
                if line.startswith("# ") or line == "#":
                    continue
                self.echo(f"{prompt}{line}")
                return line
            return None
        interactive = is_terminal(self.stdin)
        if prompt and interactive:
            self.prompt(prompt)
        try:
            raw = self.stdin.readline()
        except KeyboardInterrupt:
            return None
        if raw == "":
            return None
        line = raw.rstrip("\r\n")
        if not interactive and (prompt or line):  # piped: show it as a script line is shown
            self.echo(f"{prompt}{line}")
        return line


def is_terminal(stream: TextIO) -> bool:
    """Whether `stream` is a keyboard (a TTY) rather than a pipe or a file."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


# -- showing the call ----------------------------------------------------------------------------

def heard_lines(heard: Sequence[Heard]) -> list[str]:
    """`  agent [Polly.Joanna-Neural]: Thanks for calling...` or `  agent [audio URL]`."""
    lines = []
    for item in heard:
        if item.audio_url:
            lines.append(f"  agent [audio {item.audio_url}]")
        elif item.text:
            lines.append(f"  agent [{item.voice or 'default voice'}]: {item.text}")
    return lines


def path_line(events: Sequence[StoredEvent]) -> str | None:
    """`greet -next-> assist -route-> front_desk ...` from a call's stored events."""
    start = next((event for event in events if event.name == "call.start"), None)
    moves = [event.data for event in events if event.name == "call.node"]
    if start is None and not moves:
        return None
    text = str(start.data.get("node", "?")) if start is not None else str(moves[0]["source"])
    for data in moves:
        strategy = f" ({data['strategy']})" if data.get("strategy") else ""
        text += f" -{data.get('edge')}{strategy}-> {data.get('node')}"
    return text


@dataclass
class TurnTiming:
    """The webhooks one caller turn caused: (last URL segment, round-trip seconds) each; on a
    relay session, when the reply's first and last text tokens came, seconds after the turn
    began (None: no reply)."""

    label: str
    webhooks: list[tuple[str, float]] = field(default_factory=list)
    first_text: float | None = None
    last_text: float | None = None

    @property
    def total(self) -> float:
        """Seconds of all the turn's webhooks together, and of its streamed reply."""
        return sum(seconds for _, seconds in self.webhooks) + (self.last_text or 0.0)

    def parts(self) -> list[str]:
        """`incoming-call 7 ms`, `first text 12 ms`, ...: what the turn's time went on."""
        parts = [f"{name} {_ms(seconds)}" for name, seconds in self.webhooks]
        if self.first_text is not None:
            parts.append(f"first text {_ms(self.first_text)}")
        if self.last_text is not None and self.last_text != self.first_text:
            parts.append(f"last text {_ms(self.last_text)}")
        return parts


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def timing_lines(turns: Sequence[TurnTiming], events: Sequence[StoredEvent]) -> list[str]:
    """The timings block of the summary: one line per turn, the median and max webhook,
    then one line per `call.timing` event (the model's seconds on a node).
    """
    lines = ["timings (webhook round trips per turn):"]
    for turn in turns:
        detail = ", ".join(turn.parts())
        label = turn.label if len(turn.label) <= 30 else turn.label[:29] + "…"
        lines.append(f"  {label:<30} {_ms(turn.total):>8}" + (f"  ({detail})" if detail else ""))
    every = [seconds for turn in turns for _, seconds in turn.webhooks]
    if every:
        lines.append(f"  {len(every)} webhooks: median {_ms(statistics.median(every))}, "
                     f"max {_ms(max(every))}")
    for event in events:
        if event.name != "call.timing":
            continue
        data = dict(event.data)
        node = data.pop("node", "?")
        offline = " (offline)" if data.pop("offline", False) else ""
        relay = ", relay" if data.pop("transport", "") == "relay" else ""
        interrupted = ", interrupted" if data.pop("interrupted", 0) else ""
        parts = ", ".join(f"{name} {value:.2f} s" for name, value in data.items()
                          if isinstance(value, (int, float)) and not isinstance(value, bool))
        lines.append(f"  model on {node}{offline}{relay}: {parts}{interrupted}")
    return lines


# -- the call ------------------------------------------------------------------------------------

class TerminalCall:
    """Drives a `SimulatedCall` from the caller's lines and shows what happens."""

    def __init__(self, call: SimulatedCall, caller: CallerInput, echo: Echo,
                 on_ring: Callable[[], None] | None = None,
                 store: CallStore | None = None, relay: RelayCaller | None = None,
                 write: Echo | None = None) -> None:
        self.call = call
        self.store = store  # where the call's events are, to show what failed as it happens
        self.seen_event = 0
        self.on_ring = on_ring  # once the call has rung (marks it a test call)
        self.caller = caller
        self.echo = echo
        # Writes without a newline, to print a relay reply token by token; without one, the
        # reply is printed whole once it is done.
        self.write = write
        self.line = ""  # the agent's line being streamed
        self.shown = 0
        self.turns: list[TurnTiming] = []
        self.status_sent = False
        self.relay = relay or RelayCaller(call)
        self.streaming = False  # a reply's tokens are being printed on the current line
        self.hinted = False
        self.turn_started = time.monotonic()
        self.first_text: float | None = None
        self.last_text: float | None = None
        call.on_relay_text = self._token

    def _token(self, token: str, last: bool) -> None:
        """Print a relay reply as it comes: the first token opens the agent's line."""
        now = time.monotonic() - self.turn_started
        self.first_text = now if self.first_text is None else self.first_text
        self.last_text = now
        if not self.streaming:
            verb = self.call.waiting.verb
            voice = verb.get("voice", "") if verb is not None else ""
            self.streaming, token = True, token.lstrip()
            self._put(f"  agent [{voice or 'relay voice'}, relay]: ")
        self._put(token)
        if last:
            self._end_line()

    def _put(self, text: str) -> None:
        self.line += text
        if self.write is not None and text:
            self.write(text)

    def _end_line(self) -> None:
        if self.streaming:
            self.echo("" if self.write is not None else self.line.rstrip())
            self.streaming, self.line = False, ""

    def _timed(self, label: str, action: Callable[[], object]) -> None:
        before = len(self.call.exchanges)
        self.turn_started, self.first_text, self.last_text = time.monotonic(), None, None
        try:
            action()
        finally:
            self._end_line()  # a reply cut short, or a session that ended mid-reply
            self.turns.append(TurnTiming(label, [
                (exchange.url.split("?")[0].rsplit("/", 1)[-1], exchange.answer.seconds)
                for exchange in self.call.exchanges[before:]], self.first_text, self.last_text))

    def show(self) -> None:
        """Print what the caller has heard since the last call, once each (a relay reply was
        printed as it streamed), and connect a relay session the call now waits for."""
        self._end_line()
        fresh = [item for item in self.call.heard[self.shown:] if not item.streamed]
        for line in heard_lines(fresh):
            self.echo(line)
        self.shown = len(self.call.heard)
        if self.store is not None and self.call.call_sid:
            events = self.store.events_after(self.seen_event, self.call.call_sid, limit=10_000)
            if events:
                self.seen_event = events[-1].id
            for line in template_failures(events):
                self.echo(f"  ! {line}")
        if self.relay.in_session:
            self.relay.connect()
            if not self.hinted and not self.caller.scripted:
                self.hinted = True
                self.echo(RELAY_HINT)

    def run(self, incoming_path: str) -> None:
        """Ring, then follow the caller's lines until the call ends; always end it properly."""
        try:
            self._timed("ring", lambda: self.call.start(incoming_path))
            if self.on_ring is not None:
                self.on_ring()
            while True:
                self.show()
                if self.call.ended:
                    self.echo("☎ the call ended")
                    break
                turn = self._next_turn()
                if turn is None or turn.kind == "hangup":
                    self.echo("☎ you hung up")
                    break
                if not self._still_fits(turn):
                    continue
                self._timed(turn.label(), partial(self._act, turn))
        finally:
            self.hang_up()

    def _still_fits(self, turn: Turn) -> bool:
        """Whether `turn`, read for a relay session, still fits once whatever the server sent
        meanwhile has been read (a handoff after the reply, over --url): the session may have
        ended and the call moved on while the caller typed."""
        if not self.relay.in_session:
            return True
        self.relay.drain()
        if self.relay.in_session:
            return True
        self.show()
        waiting = self.call.waiting
        try:
            check_turn(turn, waiting.kind,
                       waiting.verb.get("input", "") if waiting.verb is not None else "",
                       shown=turn.value if turn.kind == "say" else None)
        except ScriptError as error:
            if self.caller.scripted:
                raise ScriptError(f"script line {self.caller.line_number}: the relay session "
                                  f"ended before it: {error}") from None
            self.echo(f"  (the relay session ended before your line: {error})")
            return False
        return True

    def hang_up(self) -> None:
        """The status callback Twilio sends at the end of every call, once."""
        if not self.status_sent:
            self.status_sent = True
            try:
                self._timed("status callback", self.call.hang_up)
            except (CallError, ConnectionError) as error:
                self.echo(f"  (the status callback failed: {describe_error(error)})")
            finally:
                self.relay.close()

    def _next_turn(self) -> Turn | None:
        waiting = self.call.waiting
        listens_for = waiting.verb.get("input", "") if waiting.verb is not None else ""
        while True:
            line, seconds = self._read(waiting.kind)
            if line is None:
                return None
            try:
                turn = self._interpret(line, waiting.kind, seconds)
                check_turn(turn, waiting.kind, listens_for, shown=line.strip())
                return turn
            except ScriptError as error:
                if self.caller.scripted:
                    raise ScriptError(f"script line {self.caller.line_number}: {error}") from None
                self.echo(f"  ({error})")

    def _interpret(self, line: str, waiting: str, seconds: int) -> Turn:
        """A line as a turn; at the keyboard, a transfer or recording needs no `!`."""
        if self.caller.scripted or line.strip().startswith("!"):
            return parse_line(line, waiting)
        if waiting == "dial":
            outcome = line.strip() or "answered"
            if outcome not in DIAL_OUTCOMES:
                raise ScriptError(f"{line!r}: answered, busy, no-answer or failed?")
            return Turn("dial", outcome)
        if waiting == "record":
            return Turn("record", seconds=seconds)
        return parse_line(line, waiting)

    def _read(self, waiting: str) -> tuple[str | None, int]:
        """The caller's next line, and the seconds it took (a recording's length)."""
        if waiting == "dial":
            target = self.call.dialed[-1] if self.call.dialed else "?"
            self.echo(f"→ dialing {target}")
            prompt = "  > " if self.caller.scripted else DIAL_PROMPT
            return self.caller.read(prompt), 0
        if waiting == "record":
            self.echo("● recording…" + ("" if self.caller.scripted else " (Enter to stop)"))
            started = time.monotonic()
            line = self.caller.read("  > " if self.caller.scripted else "")
            return line, max(1, round(time.monotonic() - started))
        return self.caller.read("you> "), 0

    def _act(self, turn: Turn) -> None:
        if self.relay.in_session:
            self._talk(turn)
        elif turn.kind == "say":
            self.call.say(turn.value)
        elif turn.kind == "silence":
            self.call.silence()
        elif turn.kind == "press":
            self.call.press(turn.value)
        elif turn.kind == "dial":
            self.call.dial_ends(DIAL_OUTCOMES[turn.value])
        elif turn.kind == "record":
            self.call.record(turn.seconds)
            self.echo(f"  (recorded {turn.seconds} s)")

    def _talk(self, turn: Turn) -> None:
        """A turn on a relay session, over its socket."""
        if turn.kind == "say":
            self.relay.say(turn.value)
        elif turn.kind == "press":
            self.relay.press(turn.value)
        elif turn.kind == "interrupt":
            spoken = next((item.text for item in reversed(self.call.heard) if item.text), None)
            problem = interrupt_problem(turn.value, spoken)
            if problem:  # Twilio would not say so: only what was said can have been heard
                self.echo(f"  (note: {problem})")
            self.relay.interrupt(turn.value)
            self.echo(f"  (you talked over the reply after {turn.value!r})" if turn.value
                      else "  (you talked over the reply before hearing any of it)")
        elif turn.kind == "silence":
            self.relay.silence(SILENCE_SECONDS)

    def summary(self, store: CallStore | None, where: str) -> list[str]:
        """The path through the graph and the timings, from the store's events."""
        events = store.events_after(0, self.call.call_sid, limit=100_000) if store else []
        path = path_line(events)
        lines = [f"path: {path}" if path else
                 f"path: not in this store ({where} keeps the call's events in its own)"]
        seconds = self.call.elapsed()
        if seconds is not None:
            lines.append(f"duration: {seconds // 60}:{seconds % 60:02d}")
        return lines + timing_lines(self.turns, events)


def describe_error(error: Exception) -> str:
    """A one-line message for a failed call; a CallError says the answer is not what Twilio
    accepts, and a 403 adds a hint about the auth token.
    """
    if isinstance(error, CallError):
        hint = " (is TWILIO_AUTH_TOKEN the server's token?)" if "HTTP 403" in str(error) else ""
        return f"the server's answer is not what Twilio accepts: {error}{hint}"
    if isinstance(error, RelayError):
        refused = isinstance(error, HandshakeRefused) and error.status == 403
        hint = " (is TWILIO_AUTH_TOKEN the server's token?)" if refused else ""
        return f"the relay session did not go as Twilio expects: {error}{hint}"
    return str(error)


# -- `flask call` --------------------------------------------------------------------------------

DEFAULT_CALLER = "+15551230000"
DEFAULT_CALLED = "+15550001000"
HELP = ("Type what the caller says; an empty line is silence, #1 presses keys, "
        "!hangup or Ctrl-D hangs up.")


@dataclass
class CallOptions:
    """What `flask call` was asked for: the flow, who calls which number (None: the flow's
    first number), a script of caller lines (None: the keyboard), and a server URL (None: in
    process).
    """

    flow_id: str
    caller: str = DEFAULT_CALLER
    called: str | None = None
    script: Sequence[str] | None = None
    url: str | None = None
    at: datetime | None = None  # when the call rings; naive: in the flow's timezone


def call_clock(at: datetime, timezone: str,
               monotonic: Callable[[], float] = time.monotonic) -> Callable[[], float]:
    """A clock (epoch seconds) that reads `at` now and then runs at the real pace; a naive
    `at` is in `timezone` (the flow's), as a scenario's `at` is."""
    start, origin = epoch(at, timezone), monotonic()
    return lambda: start + (monotonic() - origin)


def responder_text(app: Flask) -> str:
    """Which responder answers calls of this app, for the first line of the call."""
    found = services_of(app)
    if getattr(found.call_service.responder, "offline", False):
        return "the offline responder (OPENAI_API_KEY is not set)"
    settings = found.settings
    return (f"model {settings.openai_model} at "
            f"{settings.openai_base_url or 'https://api.openai.com/v1'}")


def services_of(app: Flask) -> Services:
    """The app's `Services`, from `app.extensions['phoney']` (KeyError when the app was not
    made by `create_app`).
    """
    found: Services = app.extensions["phoney"]
    return found


def call_in_terminal(app: Flask, options: CallOptions, echo: Echo, stdin: TextIO,
                     prompt: Echo | None = None) -> int:
    """Make the call; print the transcript, the path and the timings. The exit status."""
    found = services_of(app)
    flows = found.library.live.flows if found.library.ok else {}
    flow = flows.get(options.flow_id)  # with --url, only for the default number called
    if options.url:
        token = os.environ.get("TWILIO_AUTH_TOKEN", "")
        if not token:
            echo("error: set TWILIO_AUTH_TOKEN to the server's auth token: a call to --url is "
                 "signed with it, as Twilio signs its webhooks")
            return 2
        transport: Transport = http_transport
        base = options.url
        echo(f"Calling flow {options.flow_id} at {options.url}; the server's own model "
             f"settings answer.")
    else:
        if not found.library.ok:
            echo("error: the flows do not validate; run `flask flows validate`")
            return 1
        if flow is None:
            echo(f"error: unknown flow '{options.flow_id}'"
                 f"{did_you_mean(options.flow_id, list(flows))}; known flows: "
                 f"{', '.join(sorted(flows))}")
            return 2
        transport, token = app_transport(app), found.settings.twilio_auth_token
        base = found.settings.public_base_url or "http://localhost"
        echo(f"Calling flow {flow.id} in process; replies come from {responder_text(app)}.")
    called = options.called or (flow.numbers[0] if flow and flow.numbers else DEFAULT_CALLED)
    echo(f"The caller {options.caller} calls {called}."
         + (f" {HELP}" if options.script is None else ""))
    call = SimulatedCall(transport, base, token, to=called, from_=options.caller,
                         clock=time.monotonic)  # the status callback's real CallDuration
    # In process the call is in this app's store: mark it a test call for the dashboard.
    on_ring = None if options.url else partial(
        mark_test_call, found.recorder, call.call_sid, "flask call", found.call_service.clock())
    # A relay session needs a real WebSocket: in process, the app is served on a local port
    # (from the first session on); a server at --url is reached at the URL its TwiML names.
    local = None if options.url else LocalServer(app)
    relay = RelayCaller(call, address=local.address if local else None,
                        store=None if options.url else found.store)
    terminal = TerminalCall(call, CallerInput(echo, stdin, options.script, prompt), echo,
                            on_ring, store=found.store, relay=relay, write=prompt)
    status = 0
    try:
        terminal.run(f"/api/incoming-call?flow={quote(options.flow_id)}")
    except ScriptError as error:
        echo(f"error: {error}")
        status = 1
    except (CallError, RelayError, ConnectionError) as error:
        echo(f"error: {describe_error(error)}")
        status = 1
    finally:
        if local is not None:
            local.close()
    echo("")
    for line in terminal.summary(found.store, options.url or "the app"):
        echo(line)
    return status
