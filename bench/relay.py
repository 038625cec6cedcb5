"""7. ConversationRelay: the first token on the socket, first audio against `<Gather>`, and 200
sessions at once.

One server (`gunicorn -c gunicorn.conf.py`, as shipped) serves two copies of one flow on the same
OpenAI double: `relay_desk` converses over ConversationRelay, `gather_desk` through `<Gather>`.
The double streams the same three-sentence reply as bench/first_audio.py (first token after
`TTFT`, then `RATE` tokens a second). Each sample is a new call; samples alternate between the
flows:
- relay: the incoming-call webhook, the WebSocket opened with Twilio's signature
  (engine/relay/simulator.py) and its `setup` (not timed), then a `prompt`, timed from sending it
  to the first `text` token received: the first thing Twilio can speak;
- gather: the incoming-call webhook (not timed), then the caller's speech webhook, timed from
  sending it to the whole TwiML answer with the first sentence (as bench/first_audio.py times it).

The lag of the first token is the first `text` token's arrival at the client minus the moment the
double sent the model's first token (`TTFT` after the request reached it): the model SDK, the
session, the WebSocket and loopback. The session's own view of it (`first_sent - first_token`
of its `call.timing` event) is in the note.

Then `SESSIONS` relay calls are opened one after another and held open together, and each takes
a turn (all prompts sent at once); while all of them are open and quiet, signed webhooks (a new
call's incoming-call on the gather flow, each on a new connection: a real step) are timed, and an
event stream (`/api/events`, signed in) is timed from a webhook to its `call.start`. The baseline
is the same webhooks and stream events with no session open, before and after. What the sessions
cost: the server's CPU per session (its call, handshake, setup and turn), its resident memory and
threads per open session, and its CPU per second while they sit idle, against the same window
with none open. The flows wait 60 s of silence, so no session reprompts while it is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from bench.common import (
    OPENAI_KEY,
    PASSWORD,
    TOKEN,
    Row,
    Server,
    Signed,
    call_params,
    call_sid,
    main_for,
    median,
    ms,
    note,
    pct,
    post,
    wait_until,
    workdir,
)
from bench.concurrency import server_cpu
from engine.relay.simulator import RelayLine
from tests.doubles.openai_server import OpenAIDouble, Text, tokens
from tests.e2e.harness import EventStream

TTFT = 0.3
RATE = 50.0
FIRST = "We are open Monday to Thursday from eight until five. "
REPLY = (FIRST + "On Friday we close at one in the afternoon. "
         "Is there anything else I can help you with today?")
ASKED = "What are your hours?"
SAMPLES = 15
SESSIONS = 200
PROBES = 40
"""Webhooks (and stream events) timed in each phase of the sessions' part."""
IDLE_WINDOW = 3.0
"""Seconds of server CPU counted with the sessions open and idle, and with none."""
LAG_BAR = 0.050
RATIO_BAR = 0.5
WEBHOOK_BAR = 1.5
"""Webhook time beside the sessions, at the median and at p95, against none open."""

RELAY_NUMBER = "+15550002000"
GATHER_NUMBER = "+15550003000"
FLOW = """\
flow: {name}
description: The benchmark's front desk, conversing through {conversation}.
personality: friendly
numbers: ["{number}"]
vars: {{business: Acme Dental}}
defaults:
  no_input: {{retries: 1, then: goodbye}}
  on_error:
    network: {{retry: 1, then: goodbye}}
    rate_limit: {{retry: 1, then: goodbye}}
    ai_failure: {{personality: professional, then: goodbye}}
    tts_failure: {{voice: twilio}}
start: assist
nodes:
  assist:
    type: ai
    conversation: {conversation}
    timeout: 60  # the longest silence a node may wait: the sessions stay open while idle
    opening: Hello, this is Acme Dental. How can I help?
    instructions: Help callers of {{{{ vars.business }}}}.
    input: [speech, dtmf]
    exits:
      goodbye: The caller has what they need.
  goodbye:
    type: hangup
    text: Thanks for calling. Goodbye!
"""


def make_relay_project(into: Path) -> Path:
    """The bundled personalities with Twilio voices only, and the two flows."""
    from bench.common import make_project

    make_project(into, openai_voices=False)
    for old in (into / "flows").glob("*.yaml"):
        old.unlink()
    for name, conversation, number in (("relay_desk", "relay", RELAY_NUMBER),
                                       ("gather_desk", "gather", GATHER_NUMBER)):
        (into / "flows" / f"{name}.yaml").write_text(
            FLOW.format(name=name, conversation=conversation, number=number))
    return into


def new_call(session: requests.Session, server: Server, sid: str,
             number: str) -> ElementTree.Element:
    """Ring `number` as call `sid`; the answer's TwiML."""
    signed = Signed.make(server.url, "/api/incoming-call",
                         call_params(sid, CallStatus="ringing", To=number))
    _, answer = post(session, server.url, signed)
    if answer.status_code != 200:
        raise RuntimeError(f"incoming call answered {answer.status_code}: {answer.text[:300]}")
    return ElementTree.fromstring(answer.text)


def open_relay(session: requests.Session, server: Server, sid: str,
               timeout: float = 30.0) -> RelayLine:
    """A new relay call, its session opened and set up as Twilio would."""
    twiml = new_call(session, server, sid, RELAY_NUMBER)
    verb = twiml.find("Connect/ConversationRelay")
    if verb is None:
        raise RuntimeError(f"not a relay answer: {ElementTree.tostring(twiml)[:300]!r}")
    line = RelayLine.connect(verb.get("url", ""), TOKEN, timeout=timeout)
    line.setup(sid, to=RELAY_NUMBER, from_=call_params(sid)["From"])
    return line


def gather_turn(session: requests.Session, server: Server, sid: str) -> tuple[float, str]:
    """A new `<Gather>` call and the caller's turn: (seconds to the whole answer, its body)."""
    twiml = new_call(session, server, sid, GATHER_NUMBER)
    gather = twiml.find("Gather")
    if gather is None:
        raise RuntimeError(f"not a gather answer: {ElementTree.tostring(twiml)[:300]!r}")
    action = urlsplit(gather.get("action", ""))  # absolute: PUBLIC_BASE_URL is set
    path = action.path + (f"?{action.query}" if action.query else "")
    signed = Signed.make(server.url, path, call_params(sid, To=GATHER_NUMBER,
                                                       SpeechResult=ASKED, Confidence="0.92"))
    seconds, answer = post(session, server.url, signed)
    return seconds, answer.text


def hang_up(session: requests.Session, server: Server, sid: str, number: str) -> None:
    signed = Signed.make(server.url, "/api/call-status",
                         call_params(sid, To=number, CallStatus="completed", CallDuration="5"))
    post(session, server.url, signed)


def relay_timings(server: Server, sids: Sequence[str]) -> list[float]:
    """`first_sent - first_token` of the relay turns' `call.timing` events, in seconds."""
    wanted = set(sids)
    found = []
    for sid, data in server.query("SELECT call_sid, data FROM events WHERE name = 'call.timing'"):
        timing = json.loads(data)
        if sid in wanted and timing.get("transport") == "relay" \
                and isinstance(timing.get("first_sent"), (int, float)) \
                and isinstance(timing.get("first_token"), (int, float)):
            found.append(timing["first_sent"] - timing["first_token"])
    return found


@dataclass
class FirstAudio:
    relay: list[float] = field(default_factory=list)  # prompt sent -> first text token
    gather: list[float] = field(default_factory=list)  # speech webhook sent -> whole answer
    lag: list[float] = field(default_factory=list)  # model's first token -> client has it
    relay_sids: list[str] = field(default_factory=list)


def first_audio(server: Server, double: OpenAIDouble, samples: int) -> FirstAudio:
    found = FirstAudio()
    session = requests.Session()
    whole = TTFT + len(tokens(REPLY)) / RATE
    for number in range(samples + 1):  # the first round warms up, not counted
        sid = call_sid(number, "relay-first")
        line = open_relay(session, server, sid)
        try:
            seen = len(double.chat_requests)
            sent = time.monotonic()
            line.say(ASKED, wait=False)
            reply = line.tokens(1, timeout=10)
            chats = double.wait_for_requests(seen + 1)[seen:]
            rest = line.reply(timeout=10)
            if not reply.tokens or not rest.last or FIRST.split()[0] not in reply.text:
                raise RuntimeError(f"relay: unexpected reply {reply.tokens} {rest.tokens}")
            if number > 0:
                found.relay.append(reply.arrived[0] - sent)
                found.lag.append(reply.arrived[0] - (chats[0].received_at + TTFT))
                found.relay_sids.append(sid)
        finally:
            line.close()
        hang_up(session, server, sid, RELAY_NUMBER)
        time.sleep(0.1)
        sid = call_sid(number, "gather-first")
        seconds, body = gather_turn(session, server, sid)
        if FIRST.strip() not in body or "<Redirect" not in body:
            raise RuntimeError(f"gather: unexpected answer {body[:400]}")
        if number > 0:
            found.gather.append(seconds)
        time.sleep(whole - TTFT)  # the rest of its stream ends: no overlap with the next
        hang_up(session, server, sid, GATHER_NUMBER)
    return found


# -- many sessions ------------------------------------------------------------------------------

def _processes(master: int) -> list[int]:
    from bench.concurrency import _children
    return [master, *_children(master)]


def worker_threads(master: int) -> list[int]:
    """Threads of each gunicorn worker."""
    found = []
    for pid in _processes(master)[1:]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("Threads:"):
                    found.append(int(line.split()[1]))
    return found


def server_memory(master: int) -> tuple[int, int]:
    """(resident kB, threads) of the gunicorn master and its workers."""
    rss = threads = 0
    for pid in _processes(master):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
    return rss, threads


@dataclass
class Probe:
    webhooks: list[float] = field(default_factory=list)  # seconds, signed incoming-call
    streamed: list[float] = field(default_factory=list)  # webhook sent -> call.start on SSE
    failed: int = 0


class Arrivals:
    """When each call's `call.start` reached the event stream, noted by a thread of its own."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.at: dict[str, float] = {}
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="arrivals", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            events = self.stream.events
            now = time.monotonic()
            while self._seen < len(events):
                event = events[self._seen]
                self._seen += 1
                if event.name == "call.start":
                    with contextlib.suppress(ValueError, AttributeError):
                        self.at.setdefault(json.loads(event.data).get("call_sid", ""), now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def probe(server: Server, arrivals: Arrivals, label: str, count: int,
          timeout: float = 20.0) -> Probe:
    """`count` new calls' incoming-call webhooks, one at a time: their times, and when each one's
    `call.start` reached the event stream."""
    found = Probe()
    for number in range(count):
        session = requests.Session()  # a new connection each time: either worker may take it
        sid = call_sid(number, f"probe-{label}")
        signed = Signed.make(server.url, "/api/incoming-call",
                             call_params(sid, CallStatus="ringing", To=GATHER_NUMBER))
        sent = time.monotonic()
        try:
            seconds, answer = post(session, server.url, signed, timeout=timeout)
        except requests.RequestException:
            found.failed += 1
            continue
        if answer.status_code != 200 or "<Gather" not in answer.text:
            found.failed += 1
            continue
        found.webhooks.append(seconds)
        if wait_until(lambda sid=sid: sid in arrivals.at, timeout, 0.005):
            found.streamed.append(arrivals.at[sid] - sent)
        else:
            found.failed += 1
        hang_up(session, server, sid, GATHER_NUMBER)
        session.close()
    return found


@dataclass
class Many:
    before: Probe
    beside: Probe
    after: Probe
    opened: int
    open_seconds: float
    replied: int
    memory_kb: float  # per session
    threads: float  # per session
    cpu_idle: float  # server CPU seconds per second, sessions open and idle
    cpu_none: float  # the same with none open
    spread: list[int]  # threads more in each worker, sessions open
    cpu_session: float  # server CPU seconds per session: its call, handshake, setup, a turn
    alive: int  # sessions still open once the webhooks beside them were timed


def login(server: Server) -> requests.Session:
    session = requests.Session()
    answer = session.post(server.url + "/login", data={"password": PASSWORD},
                          allow_redirects=False, timeout=10)
    if answer.status_code not in (302, 303):
        raise RuntimeError(f"login answered {answer.status_code}")
    return session


def cpu_rate(master: int, seconds: float) -> float:
    began, at = server_cpu(master), time.monotonic()
    time.sleep(seconds)
    return (server_cpu(master) - began) / (time.monotonic() - at)


def many_sessions(server: Server, sessions: int, probes: int) -> Many:
    assert server.process is not None
    master = server.process.pid
    stream = EventStream(login(server), server.url).start()
    arrivals = Arrivals(stream)
    lines: list[RelayLine] = []
    session = requests.Session()
    try:
        before = probe(server, arrivals, "before", probes)
        cpu_none = cpu_rate(master, IDLE_WINDOW)
        rss_none, threads_none = server_memory(master)
        by_worker = worker_threads(master)
        cpu_began = server_cpu(master)
        began = time.monotonic()
        for number in range(sessions):
            try:
                lines.append(open_relay(session, server, call_sid(number, "many"), timeout=20))
            except Exception as error:  # counted: a session that could not open
                note(f"relay sessions: #{number} did not open: {error!r}")
                break
        open_seconds = time.monotonic() - began
        for line in lines:
            line.say(ASKED, wait=False)
        replied = 0
        for line in lines:
            with contextlib.suppress(Exception):
                replied += line.reply(timeout=30).last
        cpu_opening = server_cpu(master) - cpu_began
        cpu_idle = cpu_rate(master, IDLE_WINDOW)
        rss_open, threads_open = server_memory(master)
        spread = [now - then for now, then in zip(worker_threads(master), by_worker,
                                                  strict=False)]
        beside = probe(server, arrivals, "beside", probes)
        # Open, and quiet since their reply (no reprompt for silence, no end): idle throughout.
        alive = sum(1 for line in lines
                    if line.next_message(0.001) is None and not line.closed)
        note(f"relay sessions: {len(lines)} opened in {open_seconds:.1f} s, {replied} replied, "
             f"{alive} still open after the probes; server {rss_open - rss_none} kB and "
             f"{threads_open - threads_none} threads more, by worker {spread}")
    finally:
        for line in lines:
            line.close()
        for number in range(len(lines)):
            with contextlib.suppress(Exception):
                hang_up(session, server, call_sid(number, "many"), RELAY_NUMBER)
    try:
        wait_until(lambda: server_memory(master)[1] <= threads_none + 4, 20, 0.2)
        after = probe(server, arrivals, "after", probes)
    finally:
        arrivals.close()
        stream.close()
    count = max(1, len(lines))
    return Many(before, beside, after, len(lines), open_seconds, replied,
                (rss_open - rss_none) / count, (threads_open - threads_none) / count,
                cpu_idle, cpu_none, spread, cpu_opening / count, alive)


# -- the table ----------------------------------------------------------------------------------

def measure(args: argparse.Namespace) -> list[Row]:
    samples = 4 if args.quick else SAMPLES
    sessions = args.sessions
    probes = 10 if args.quick else PROBES
    with workdir("relay") as scratch, OpenAIDouble(api_key=OPENAI_KEY) as double:
        double.default_chat(Text(REPLY, ttft=TTFT, tokens_per_second=RATE))
        project = make_relay_project(scratch / "project")
        env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": double.base_url,
               **dict(item.split("=", 1) for item in args.env)}
        server = Server("phoney", scratch, project=project, env=env)
        with server:
            rows: list[Row] = []
            if not args.sessions_only:
                audio = first_audio(server, double, samples)
                inside = relay_timings(server, audio.relay_sids)
                rows += audio_rows(audio, inside)
            many = many_sessions(server, sessions, probes)
            errors = server.errors_logged()
    note(f"relay: webhooks before {[round(t * 1000, 1) for t in many.before.webhooks]}")
    note(f"relay: webhooks beside {[round(t * 1000, 1) for t in many.beside.webhooks]}")
    rows += many_rows(many, sessions)
    rows.append(Row("7. relay, errors", str(errors + many.before.failed + many.beside.failed
                                             + many.after.failed), "0", None, "0",
                    not (errors or many.before.failed or many.beside.failed
                         or many.after.failed),
                    note=f"{errors} server tracebacks; failed or unanswered probes "
                         f"{many.before.failed} before, {many.beside.failed} beside the "
                         f"sessions, {many.after.failed} after"))
    return rows


def audio_rows(audio: FirstAudio, inside: list[float]) -> list[Row]:
    relay, gather = median(audio.relay), median(audio.gather)
    lag = median(audio.lag)
    # <Gather> sees the first sentence complete when the token after it starts: the ratio of
    # the model's first word to that is the least any transport gets to on this double.
    floor = TTFT / (TTFT + len(tokens(FIRST)) / RATE)
    note(f"relay first audio {[round(t, 3) for t in audio.relay]}")
    note(f"gather first audio {[round(t, 3) for t in audio.gather]}")
    note(f"relay first-token lag {[round(t * 1000, 1) for t in audio.lag]} ms")
    return [
        Row("7. relay, first token on the socket after the model's first token", ms(lag),
            f"model's first token at {ms(TTFT)}", None, f"<= {ms(LAG_BAR)} (median)",
            lag <= LAG_BAR,
            note=f"median of {len(audio.lag)} turns, p95 {ms(pct(audio.lag, 95))}; inside the "
                 f"session (call.timing first_sent - first_token) median "
                 f"{ms(median(inside))} of {len(inside)}"),
        Row("7. relay, time to first audio against the same turn through <Gather>", ms(relay),
            f"{ms(gather)} <Gather>", relay / gather, f"<= {RATIO_BAR:.2f} of <Gather>",
            relay / gather <= RATIO_BAR,
            note=f"medians of {len(audio.relay)} turns each, alternating; double: ttft "
                 f"{ms(TTFT)}, {RATE:.0f} tok/s (bench/first_audio.py's): both wait for the "
                 f"model's first token, and <Gather> adds only its first sentence "
                 f"({len(tokens(FIRST))} tokens), so no transport gets below {floor:.2f} of it "
                 f"here; Twilio's own end-of-speech wait and speech synthesis, on neither "
                 f"side, are not measured"),
    ]


def many_rows(many: Many, sessions: int) -> list[Row]:
    without = many.before.webhooks + many.after.webhooks
    beside = many.beside.webhooks
    streamed_without = many.before.streamed + many.after.streamed
    p50, p95 = median(beside) / median(without), pct(beside, 95) / pct(without, 95)
    return [
        Row(f"7. {sessions} relay sessions open: webhook time beside them (median)",
            ms(median(beside)), f"{ms(median(without))} none open", p50,
            f"<= {WEBHOOK_BAR:.2f} of none open",
            p50 <= WEBHOOK_BAR and many.alive == sessions,
            note=f"{many.opened} sessions opened in {many.open_seconds:.1f} s, {many.replied} "
                 f"replied to a turn, {many.alive} open and quiet until the webhooks beside "
                 f"them were done; {len(beside)} signed incoming-call webhooks beside them, "
                 f"{len(without)} with none open (before and after)"),
        Row(f"7. {sessions} relay sessions open: webhook time beside them (p95)",
            ms(pct(beside, 95)), f"{ms(pct(without, 95))} none open", p95,
            f"<= {WEBHOOK_BAR:.2f} of none open", p95 <= WEBHOOK_BAR),
        Row(f"7. {sessions} relay sessions open: webhook -> SSE client (median)",
            ms(median(many.beside.streamed)), f"{ms(median(streamed_without))} none open",
            median(many.beside.streamed) / median(streamed_without), "info", None,
            note="the stream polls the store every 0.1 s"),
        Row(f"7. {sessions} relay sessions open: server memory and threads per session",
            f"{many.memory_kb:.0f} kB, {many.threads:.1f} threads", "-", None, "info", None,
            note=f"resident memory and threads of the gunicorn master and workers, with every "
                 f"session open and idle, less the same with none; threads more by worker "
                 f"{many.spread} (two a session: gthread's and simple-websocket's reader)"),
        Row(f"7. {sessions} relay sessions: server CPU per session", ms(many.cpu_session),
            "-", None, "info", None,
            note="user+system CPU of the gunicorn master and workers from the first incoming "
                 "call to the last reply, divided by the sessions: each one's incoming-call "
                 "webhook, handshake, setup and one model turn streamed"),
        Row(f"7. {sessions} relay sessions open: server CPU while idle",
            f"{many.cpu_idle * 100:.1f}% of a core", f"{many.cpu_none * 100:.1f}% none open",
            None, "info", None,
            note=f"over {IDLE_WINDOW:.0f} s each; a session's loop wakes once a second"),
    ]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=SESSIONS,
                        help=f"relay sessions open at once (default {SESSIONS})")
    parser.add_argument("--sessions-only", action="store_true",
                        help="only the many-sessions part")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="the server's environment (GUNICORN_THREADS=64, say)")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main_for("7. ConversationRelay", measure, configure)
