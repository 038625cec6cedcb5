#!/usr/bin/env python3
"""Load test: many simulated calls at once against gunicorn on Redis, with the model failing.

    .venv/bin/python bench/load.py              # 100 calls, 25 at a time (about 1-2 minutes)
    .venv/bin/python bench/load.py --short      # 10 calls: what `make test` runs (via pytest)

What it does, all on 127.0.0.1:
- starts the OpenAI double (tests/doubles/openai_server.py) in this process, injecting a fault
  into a share (`--faults`) of the model's and the speech endpoint's requests: a hang longer than
  the call path's deadline, 429 with a short or a long Retry-After, 500, a body that is not JSON,
  an empty reply; for speech 500, a hang, and a body that is not audio;
- starts gunicorn (`gunicorn app:app -c gunicorn.conf.py`, 2 worker processes) on a Redis store
  under a key prefix of its own (deleted at the end);
- runs `--calls` calls, `--concurrency` at a time, each through the receptionist flow: greeting,
  three model turns (streamed replies, the rest of each fetched by a continuation webhook), a
  transfer that fails (busy), voicemail, hangup, then the final status callback; webhooks are
  signed and carry an idempotency token, as Twilio's do;
- SIGKILLs one gunicorn worker once a third of the calls are done (the master starts a new one);
  a webhook in flight on it fails to connect or loses its connection, and is sent again as
  Twilio would (same token), counted apart from the answers;
- then checks what the calls saw against what the store recorded, and prints the figures.

Exit status 1 when an invariant fails: a call not completed, an answer other than HTTP 200, a
webhook unanswered within Twilio's 15 s, a turn or an event the simulator saw missing from the
store (or the other way round), an answer not stored for its webhook, audio the caller was told to
play that the server cannot serve, or an injected fault with no `call.error` recorded for it (one
may be lost only with a webhook the killed worker was answering). 2 when it cannot run (no Redis).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import canonicalize

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from engine.flows.loader import load_project  # noqa: E402
from engine.flows.model import OpenAIVoice  # noqa: E402
from engine.simulator import CallError, SimulatedCall  # noqa: E402
from engine.speech.cache import audio_key  # noqa: E402
from engine.store import StoredEvent  # noqa: E402
from engine.store.redis_store import RedisStore  # noqa: E402
from tests.doubles import openai_server  # noqa: E402
from tests.doubles.openai_server import (  # noqa: E402
    Empty,
    Hang,
    Malformed,
    OpenAIDouble,
    Status,
    Text,
)
from tests.e2e.harness import (  # noqa: E402
    Gunicorn,
    Sent,
    SpreadTransport,
    delete_prefix,
    new_prefix,
    redis_unreachable,
    store_url,
)

AUTH_TOKEN = "load-token"
API_KEY = "load-key"
RECEPTIONIST = "+15550001000"
FRONT_DESK = "+15550001111"
MODEL_TURNS = 3
MAX_ACTIONS = 24
"""Caller actions per call at most (a call that loops is cut there and counted incomplete)."""
CHAT_HANG = 8.0
"""Longer than the model's read timeout (6 s) and the wait for a first sentence (7 s)."""
SPEECH_HANG = 7.0
"""Longer than a synthesis may take (6 s)."""
QUESTIONS = (
    "what are your hours on Friday",
    "do you offer teeth whitening",
    "where can I park when I come in",
    "do you see children as well",
    "how long does a cleaning take",
)
TAG = re.compile(r"[Cc]aller (\d+)")
SLOW = 5.0
KILL_SHADOW = 15.0


# -- faults ---------------------------------------------------------------------------------------

CHAT_FAULTS: dict[str, Callable[[str], Any]] = {
    "chat: hang 8 s": lambda label: Hang(CHAT_HANG),
    "chat: 429, Retry-After 1": lambda label: Status(429, message=label,
                                                     headers={"retry-after": "1"}),
    "chat: 429, Retry-After 5": lambda label: Status(429, message=label,
                                                     headers={"retry-after": "5"}),
    "chat: 500": lambda label: Status(500, message=label),
    "chat: malformed": lambda label: Malformed(),
    "chat: empty": lambda label: Empty(),
}
TIMEOUTS = ("chat: hang 8 s", "speech: hang 7 s")
"""Faults recognised by a timeout, which an overloaded machine can also cause."""
SPEECH_FAULTS: dict[str, Callable[[str], Any]] = {
    "speech: 500": lambda label: Status(500, message=label),
    "speech: hang 7 s": lambda label: Hang(SPEECH_HANG),
    "speech: not audio": lambda label: Malformed(b"<html>bad gateway</html>"),
}


def fault_of_error(data: dict[str, Any]) -> str:
    """Which injected fault a `call.error` event reports, from its kind and detail."""
    detail = str(data.get("detail", ""))
    for label in (*CHAT_FAULTS, *SPEECH_FAULTS):
        if label in detail:  # the Status faults carry their label as the error message
            return label
    if data.get("kind") == "tts_failure":
        if "no time left" in detail:
            return "(speech skipped: no time left)"
        if "Timeout" in detail or "timed out" in detail:
            return "speech: hang 7 s"
        if "not MP3" in detail:
            return "speech: not audio"
        return f"(speech: {detail[:60]})"
    if "APITimeoutError" in detail or "no sentence from the model within" in detail:
        return "chat: hang 8 s"
    if "unusable answer from the model" in detail:
        return "chat: malformed"
    if "empty or unusable reply" in detail:
        return "chat: empty"
    if "no time left" in detail or "time for the model is used up" in detail:
        return "(retry skipped: no time left)"
    return f"({data.get('kind')}: {detail[:60]})"


@dataclass(frozen=True)
class Injection:
    call: int
    endpoint: str  # chat or speech
    fault: str  # a key of CHAT_FAULTS / SPEECH_FAULTS, or "" for none


class FaultyDouble(OpenAIDouble):
    """The OpenAI double deciding each request's answer itself: a fault with probability
    `rate`, else a streamed reply. Requests are tied to calls by the caller number in the text
    (the caller's words for chat, the reply being spoken for speech); requests of no call
    (the speech warm-up) always succeed."""

    def __init__(self, rate: float, seed: int, speech_faults: bool = True) -> None:
        super().__init__(api_key=API_KEY)
        self.rate = rate
        self.speech_faults = speech_faults
        self.rng = random.Random(seed)
        self.injections: list[Injection] = []
        self._local = threading.local()

    def start(self) -> FaultyDouble:
        # socketserver's listen backlog is 5: a hundred calls' model and speech requests at
        # once would be refused by the double, not by anything under test.
        openai_server._Server.request_queue_size = 512
        super().start()
        return self

    def _receive(self, method: str, path: str, headers: Any, raw: bytes,
                 received_at: float) -> Any:
        self._local.raw = raw
        return super()._receive(method, path, headers, raw, received_at)

    def _take(self, route: str, method: str, authorised: bool) -> Any:
        if not authorised or method != "POST" or route not in ("/chat/completions",
                                                               "/audio/speech"):
            return super()._take(route, method, authorised)
        try:
            body = json.loads(getattr(self._local, "raw", b"") or b"{}")
        except ValueError:
            body = {}
        if route == "/chat/completions":
            messages = body.get("messages") or [{}]
            text = str(messages[-1].get("content") or "")
            found = TAG.search(text)
            if found is None:
                return super()._take(route, method, authorised)
            call = int(found.group(1))
            fault = self._draw(CHAT_FAULTS)
            self.injections.append(Injection(call, "chat", fault))
            if fault:
                return CHAT_FAULTS[fault](f"injected {fault}")
            question = text.rpartition(":")[2].strip() or "that"
            reply = (f"Thanks for asking, caller {call}. About {question}, caller {call}, "
                     f"the front desk can tell you more.")
            return Text(reply, ttft=self.rng.uniform(0.05, 0.3), tokens_per_second=40)
        found = TAG.search(str(body.get("input") or ""))
        if found is None:
            return super()._take(route, method, authorised)
        fault = self._draw(SPEECH_FAULTS) if self.speech_faults else ""
        self.injections.append(Injection(int(found.group(1)), "speech", fault))
        return SPEECH_FAULTS[fault](f"injected {fault}") if fault else super()._take(
            route, method, authorised)

    def _draw(self, faults: dict[str, Any]) -> str:
        return self.rng.choice(list(faults)) if self.rng.random() < self.rate else ""


# -- one call -------------------------------------------------------------------------------------

@dataclass
class CallResult:
    number: int
    call_sid: str = ""
    said: list[str] = field(default_factory=list)
    heard: list[tuple[str, str]] = field(default_factory=list)  # (text, audio URL)
    sent: list[Sent] = field(default_factory=list)
    dialed: int = 0
    recordings: int = 0
    ended: bool = False
    hung_up: int = 0  # the status callback's HTTP status
    error: str = ""
    seconds: float = 0.0

    @property
    def completed(self) -> bool:
        return (not self.error and self.ended and self.hung_up == 200 and self.dialed > 0
                and self.recordings > 0)


def run_call(number: int, base: str) -> CallResult:
    """One caller: greeting, three questions, asks for a person, the transfer is busy, leaves
    a message, hangs up. Faults may move the call along other edges (an apology straight to
    the front desk, a hold): the caller answers whatever the call waits for."""
    result = CallResult(number)
    transport = SpreadTransport(AUTH_TOKEN, [base])
    call = SimulatedCall(transport, base, AUTH_TOKEN, to=RECEPTIONIST,
                         from_=f"+1555{number:07d}")
    result.call_sid = call.call_sid
    began = time.monotonic()
    try:
        call.start()
        questions = 0
        asked_for_person = False
        for _ in range(MAX_ACTIONS):
            kind = call.waiting.kind
            if kind == "ended":
                break
            if kind == "gather":
                if questions < MODEL_TURNS:
                    questions += 1
                    text = (f"Caller {number}, question {questions}: "
                            f"{QUESTIONS[(number + questions) % len(QUESTIONS)]}")
                elif not asked_for_person:
                    asked_for_person = True
                    text = "Can I talk to a person please?"
                else:
                    text = "Can I talk to a person please?"
                result.said.append(text)
                call.say(text)
            elif kind == "dial":
                call.dial_ends("busy")
            elif kind == "record":
                call.record(8)
            else:
                raise CallError(f"the call waits for {kind}")
        result.ended = call.ended
        result.hung_up = call.hang_up().status
    except CallError as error:
        result.error = f"{type(error).__name__}: {error}"
    except Exception as error:  # the bench must report, not die
        result.error = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"
    result.seconds = time.monotonic() - began
    result.heard = [(item.text, item.audio_url) for item in call.heard]
    result.sent = list(transport.sent)
    result.dialed = len(call.dialed)
    result.recordings = call.recordings
    return result


# -- the run --------------------------------------------------------------------------------------

@dataclass
class Kill:
    victim: int = 0
    at: float = 0.0
    replacement: int = 0
    replaced_after: float = 0.0
    error: str = ""


@dataclass
class Run:
    began: float  # time.monotonic() at the start of the calls
    results: list[CallResult]
    not_started: int
    unfinished: int
    seconds: float
    kill: Kill | None
    workers: list[int]


def run_calls(server: Gunicorn, calls: int, concurrency: int, duration: float,
              kill_after: int | None) -> Run:
    results: list[CallResult] = []
    lock = threading.Lock()
    numbers = iter(range(1, calls + 1))
    started = [0]
    began = time.monotonic()
    deadline = began + duration
    kill = Kill() if kill_after is not None else None
    done = threading.Condition(lock)

    def worker() -> None:
        while True:
            with lock:
                if time.monotonic() > deadline:
                    return
                number = next(numbers, None)
                if number is None:
                    return
                started[0] += 1
            result = run_call(number, server.url)
            with done:
                results.append(result)
                done.notify_all()

    def killer() -> None:
        assert kill is not None and kill_after is not None
        with done:
            done.wait_for(lambda: len(results) >= kill_after or time.monotonic() > deadline,
                          timeout=duration)
        try:
            victims = server.worker_pids()
            kill.victim = victims[0]
            kill.at = time.monotonic() - began
            os.kill(kill.victim, signal.SIGKILL)
            kill.replacement = server.wait_workers(len(victims), without=[kill.victim])[-1]
            kill.replaced_after = time.monotonic() - began - kill.at
        except Exception as error:
            kill.error = f"{type(error).__name__}: {error}"

    workers = [threading.Thread(target=worker, daemon=True, name=f"caller-{i}")
               for i in range(concurrency)]
    if kill is not None:
        workers.append(threading.Thread(target=killer, daemon=True, name="killer"))
    for thread in workers:
        thread.start()
    # Calls already started may run on past `duration`, but not forever: each is bounded by
    # MAX_ACTIONS webhooks of at most 15 s; past this grace they are counted unfinished.
    hard_stop = deadline + 120.0
    for thread in workers:
        thread.join(max(0.0, hard_stop - time.monotonic()))
    with lock:
        finished = list(results)
        begun = started[0]
    return Run(began, finished, calls - begun, begun - len(finished), time.monotonic() - began,
               kill, server.worker_pids())


# -- checks against the store ---------------------------------------------------------------------

@dataclass
class Checks:
    failures: list[str] = field(default_factory=list)
    turns_missing: int = 0
    events_missing: int = 0
    answers_not_stored: int = 0
    audio_missing: int = 0
    faults_unrecorded: int = 0
    faults_lost_to_kill: int = 0
    deadline_misses: int = 0
    edges: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    recorded: Counter[str] = field(default_factory=Counter)
    model_replies: int = 0
    calls_completed_in_store: int = 0

    def fail(self, message: str) -> None:
        self.failures.append(message)


def spoken(events: Sequence[StoredEvent]) -> list[tuple[str, str]]:
    """(text, personality) of what the store says the caller was told."""
    return [(str(e.data["text"]), str(e.data.get("personality") or ""))
            for e in events if e.name in ("call.say", "call.response") and e.data.get("text")]


def edge_after(events: Sequence[StoredEvent], index: int) -> str:
    """The edge a call took after the `call.error` at `index`."""
    for event in events[index + 1:]:
        if event.name == "call.node":
            data = event.data
            if data.get("strategy"):
                return f"{data['edge']} ({data['strategy']})"
            return f"{data['edge']} -> {data['node']}"
        if event.name in ("call.error", "call.transcript", "call.response", "call.end"):
            break
    return "none (spoken anyway: a reply cut short, or a stream that had begun)"


def canonical(text: str | None) -> str | None:
    try:
        return canonicalize(text) if text is not None else None
    except Exception:
        return text


def check(results: Sequence[CallResult], store: RedisStore, double: FaultyDouble,
          voices: dict[str, OpenAIVoice | None], base: str) -> Checks:
    checks = Checks()
    injected: dict[int, Counter[str]] = defaultdict(Counter)
    for injection in double.injections:
        if injection.fault:
            injected[injection.call][injection.fault] += 1
    audio_urls: set[str] = set()
    for result in results:
        events = store.events_after(0, result.call_sid, limit=100_000)
        label = f"call {result.number} ({result.call_sid})"
        summary = store.get_call(result.call_sid)
        if summary is not None and summary.status == "completed" and summary.ended_at:
            checks.calls_completed_in_store += 1
        elif result.completed:
            checks.fail(f"{label}: completed for the caller, {summary and summary.status!r} "
                        f"in the store")
        # Turns: every utterance, once, in order.
        transcripts = [str(e.data.get("speech", "")) for e in events
                       if e.name == "call.transcript"]
        if transcripts != result.said:
            checks.turns_missing += abs(len(result.said) - len(transcripts)) or 1
            checks.fail(f"{label}: said {result.said}, the store has {transcripts}")
        checks.model_replies += sum(1 for e in events
                                    if e.name == "call.response" and e.data.get("final"))
        # What the caller heard is what the store says it was told.
        by_key = {}
        for text, personality in spoken(events):
            voice = voices.get(personality)
            if voice is not None:
                by_key[audio_key(text, voice)] = text
        heard = []
        for text, url in result.heard:
            if url:
                audio_urls.add(url)
                key = urlsplit(url).path.rpartition("/")[2].removesuffix(".mp3")
                heard.append(by_key.get(key, f"<audio {key} of no stored text>"))
            else:
                heard.append(text)
        told = [text for text, _ in spoken(events)]
        if heard != told:
            checks.events_missing += max(1, abs(len(heard) - len(told)))
            checks.fail(f"{label}: heard {heard}\n    the store says {told}")
        # Every answer is stored for its webhook (what a retry of it gets).
        for sent in result.sent:
            if sent.status != 200:
                continue
            stored = store.stored_response(result.call_sid, f"token:{sent.token}")
            if canonical(stored) != canonical(sent.body):
                checks.answers_not_stored += 1
                checks.fail(f"{label}: the answer to {sent.path} is not the stored one")
        # Faults: each injected one has its call.error, and the edge it took.
        recorded: Counter[str] = Counter()
        for index, event in enumerate(events):
            if event.name != "call.error":
                continue
            fault = fault_of_error(dict(event.data))
            recorded[fault] += 1
            checks.recorded[fault] += 1
            checks.edges[fault][edge_after(events, index)] += 1
        interrupted = any(sent.retries for sent in result.sent)
        for fault, count in injected.get(result.number, Counter()).items():
            missing = count - recorded.get(fault, 0)
            if missing > 0 and interrupted:
                checks.faults_lost_to_kill += missing
            elif missing > 0:
                checks.faults_unrecorded += missing
                checks.fail(f"{label}: {count} × {fault} injected, {recorded.get(fault, 0)} "
                            f"recorded")
        for fault, count in recorded.items():
            if fault in CHAT_FAULTS or fault in SPEECH_FAULTS:
                extra = count - injected.get(result.number, Counter()).get(fault, 0)
                if extra > 0 and fault in TIMEOUTS:
                    # A deadline missed with no hang injected: the machine could not keep up
                    # (the engine took the error's edge, as it must). Counted, not a failure.
                    checks.deadline_misses += extra
                elif extra > 0:
                    checks.fail(f"{label}: {count} × {fault} recorded, only "
                                f"{count - extra} injected")
            elif not fault.startswith("(retry skipped") and \
                    not fault.startswith("(speech skipped"):
                checks.fail(f"{label}: an error no fault explains: {fault}")
    # The audio every caller was told to play can be served (from the store, by any worker).
    for url in sorted(audio_urls):
        try:
            answer = requests.get(base + urlsplit(url).path, timeout=10)
            ok = answer.status_code == 200 and answer.content[:3] in (b"ID3", b"\xff\xfb\x90")
        except requests.RequestException:
            ok = False
        if not ok:
            checks.audio_missing += 1
            checks.fail(f"audio {url} cannot be served")
    return checks


# -- report ---------------------------------------------------------------------------------------

def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def latency_line(name: str, values: Sequence[float]) -> str:
    return (f"  {name:<24} {len(values):>6}  p50 {ms(percentile(values, 0.50)):>9}  "
            f"p95 {ms(percentile(values, 0.95)):>9}  p99 {ms(percentile(values, 0.99)):>9}  "
            f"max {ms(max(values) if values else float('nan')):>9}")


def report(args: argparse.Namespace, run: Run, checks: Checks, double: FaultyDouble,
           server: Gunicorn, out: Callable[[str], None]) -> bool:
    results = run.results
    sent = [s for r in results for s in r.sent]
    answered = [s for s in sent if s.status == 200]
    other = [s for s in sent if s.status not in (200, 0)]
    timed_out = [s for s in sent if s.timed_out]
    unanswered = [s for s in sent if s.status == 0 and not s.timed_out]
    retried = [s for s in sent if s.retries]
    completed = [r for r in results if r.completed]
    injections = Counter(i.fault for i in double.injections if i.fault)
    requests_by_endpoint = Counter(i.endpoint for i in double.injections)

    out(f"phoney load: {args.calls} calls, {args.concurrency} at a time, faults at "
        f"{args.faults:.2f} of model and speech requests, gunicorn with {args.workers} "
        f"workers (gthread) on Redis, duration bound {args.duration:.0f} s")
    out(f"  finished in {run.seconds:.1f} s; server {server.url}, workers now {run.workers}")
    if run.kill is not None:
        if run.kill.error:
            out(f"  kill: FAILED ({run.kill.error})")
        else:
            out(f"  kill: worker {run.kill.victim} SIGKILLed at {run.kill.at:.1f} s; the master "
                f"started {run.kill.replacement} {run.kill.replaced_after:.1f} s later")
    out("")
    out(f"calls     started {len(results) + run.unfinished}, completed {len(completed)} "
        f"(store: {checks.calls_completed_in_store} completed), incomplete "
        f"{len(results) - len(completed)}, unfinished {run.unfinished}"
        + (f", not started (duration bound) {run.not_started}" if run.not_started else ""))
    said = sum(len(r.said) for r in results)
    out(f"turns     {said} caller utterances, {checks.model_replies} model replies finished, "
        f"{requests_by_endpoint['chat']} model requests, "
        f"{requests_by_endpoint['speech']} speech requests (of calls)")
    out(f"webhooks  {len(sent)} sent, {len(answered)} answered 200, other statuses "
        f"{len(other)}, unanswered in 15 s {len(timed_out)}, never connected "
        f"{len(unanswered)}; sent again after a connection failure: {len(retried)} webhooks "
        f"({sum(s.retries for s in retried)} retries)")
    out("")
    out("webhook time (the answered attempt, as the caller's side measured it):")
    out(latency_line("all", [s.seconds for s in answered]))
    by_path: dict[str, list[float]] = defaultdict(list)
    for s in answered:
        by_path[s.path].append(s.seconds)
    for path in sorted(by_path, key=lambda p: -len(by_path[p])):
        out(latency_line(path, by_path[path]))
    calls_seconds = [r.seconds for r in results]
    out(latency_line("whole call", calls_seconds))
    faulty = {i.call for i in double.injections if i.fault}
    clean = [r for r in results if r.number not in faulty]
    hit = [r for r in results if r.number in faulty]
    if clean and hit:
        out("side by side: calls with no fault injected vs calls with at least one")
        for name, group in (("no fault", clean), ("faults", hit)):
            out(latency_line(f"{name}: webhooks", [s.seconds for r in group for s in r.sent
                                                   if s.status == 200]))
        for name, group in (("no fault", clean), ("faults", hit)):
            out(latency_line(f"{name}: whole call", [r.seconds for r in group]))
        ratio = (percentile([r.seconds for r in hit], 0.5)
                 / percentile([r.seconds for r in clean], 0.5))
        out(f"  a call with faults takes {ratio:.2f}× as long (median); its caller still "
            f"hears an answer or an error edge's words at every turn")
    slow = [s for r in clean for s in r.sent if s.status == 200 and s.seconds > SLOW]
    if slow:
        near = sum(1 for s in slow if run.kill is not None and run.kill.victim and
                   -KILL_SHADOW <= s.began - (run.began + run.kill.at) <= KILL_SHADOW)
        out(f"  {len(slow)} webhooks of fault-free calls took over {SLOW:.0f} s "
            f"({Counter(s.path for s in slow).most_common()}); {near} of them began within "
            f"{KILL_SHADOW:.0f} s of the kill (e.g. a continuation waiting, until its deadline, "
            f"for a reply streamed by the worker that died)")
    out("")
    out("faults injected, the error recorded for them, and the edge each took:")
    out(f"  {'fault':<28} {'injected':>8} {'recorded':>8}  edges taken")
    others = sorted(f for f in checks.recorded if f not in CHAT_FAULTS and f not in SPEECH_FAULTS)
    labels = [*CHAT_FAULTS, *SPEECH_FAULTS, *others]
    for label in labels:
        edges = checks.edges.get(label, Counter())
        text = "; ".join(f"{edge} ×{count}" for edge, count in edges.most_common())
        out(f"  {label:<28} {injections.get(label, 0):>8} {checks.recorded.get(label, 0):>8}"
            f"  {text}")
    out("")
    out(f"store     turns missing {checks.turns_missing}, events missing or different "
        f"{checks.events_missing}, answers not stored {checks.answers_not_stored}, audio "
        f"missing {checks.audio_missing}, faults with no call.error {checks.faults_unrecorded}"
        f" (+{checks.faults_lost_to_kill} lost with a killed worker's webhook)")
    out(f"          deadlines missed with no fault injected (the machine could not keep up; "
        f"the error edge was taken): {checks.deadline_misses}")
    problems = list(checks.failures)
    problems += [f"call {r.number}: {r.error or 'did not run its course'}"
                 for r in results if not r.completed]
    if other:
        problems.append(f"{len(other)} answers other than 200: "
                        f"{Counter((s.path, s.status) for s in other).most_common(5)}")
    if timed_out:
        problems.append(f"{len(timed_out)} webhooks unanswered within 15 s")
    if unanswered:
        problems.append(f"{len(unanswered)} webhooks never connected")
    if run.unfinished:
        problems.append(f"{run.unfinished} calls still running at the hard stop")
    if run.kill is not None and run.kill.error:
        problems.append(f"killing a worker failed: {run.kill.error}")
    if double.errors:
        problems.append(f"the OpenAI double failed: {double.errors[:3]}")
    if not results:
        problems.append("no call ran")
    out("")
    if problems:
        out(f"FAILED: {len(problems)} problems")
        for problem in problems[:30]:
            out(f"  - {problem}")
        return False
    out("OK: every invariant holds")
    return True


# -- main -----------------------------------------------------------------------------------------

def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=None, help="calls to make (100)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="calls in progress at once (25)")
    parser.add_argument("--faults", type=float, default=None,
                        help="share of model and speech requests that fail (0.15)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds after which no new call starts (180)")
    parser.add_argument("--short", action="store_true",
                        help="10 calls, 5 at a time, faults 0.3: the run `make test` does")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--no-kill", action="store_true", help="kill no worker")
    parser.add_argument("--no-speech", action="store_true",
                        help="no speech faults (speech still goes through the double)")
    parser.add_argument("--seed", type=int, default=None, help="fault dice (random)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the Redis keys and the server log (printed at the end)")
    args = parser.parse_args(argv)
    defaults = ({"calls": 10, "concurrency": 5, "faults": 0.3, "duration": 120.0}
                if args.short else
                {"calls": 100, "concurrency": 25, "faults": 0.15, "duration": 180.0})
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if args.calls < 1 or args.concurrency < 1 or not 0 <= args.faults <= 1 or \
            args.duration <= 0 or args.workers < 1:
        parser.error("--calls, --concurrency, --duration and --workers must be positive, "
                     "--faults between 0 and 1")
    if args.workers < 2 and not args.no_kill:
        parser.error("killing a worker needs --workers 2 or more (or --no-kill)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    reason = redis_unreachable()
    if reason:
        print(f"bench/load.py: {reason}; start redis-server or set TEST_REDIS_URL",
              file=sys.stderr)
        return 2
    prefix = new_prefix("load")
    registry = load_project(ROOT).registry
    assert registry is not None, "the bundled flows do not load"
    voices = {pid: p.voice.openai for pid, p in registry.personalities.items()}
    log_dir = Path(tempfile.mkdtemp(prefix="phoney-load-"))
    double = FaultyDouble(args.faults, args.seed, speech_faults=not args.no_speech).start()
    server = Gunicorn({"STORE_URL": store_url(prefix), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                       "DASHBOARD_PASSWORD": "load", "PROJECT_ROOT": str(ROOT),
                       "OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": double.base_url},
                      log_dir / "gunicorn.log", workers=args.workers)
    store = RedisStore(store_url(prefix))
    ok = False
    try:
        began = time.monotonic()
        server.start()
        server.wait_ready()
        server.wait_workers(args.workers)
        print(f"seed {args.seed}; gunicorn master {server.pid}, workers "
              f"{server.worker_pids()}, ready in {time.monotonic() - began:.1f} s; "
              f"Redis prefix {prefix}", flush=True)
        kill_after = None if args.no_kill else max(1, args.calls // 3)
        run = run_calls(server, args.calls, args.concurrency, args.duration, kill_after)
        began = time.monotonic()
        checks = check(run.results, store, double, voices, server.url)
        print(f"checked against the store in {time.monotonic() - began:.1f} s", flush=True)
        ok = report(args, run, checks, double, server, lambda line: print(line, flush=True))
    finally:
        if not ok:
            lines = [line for line in server.log_tail(100_000).splitlines()
                     if not line.startswith("127.0.0.1 - -")]  # access log lines
            print("--- gunicorn log (last lines, without the access log) ---\n"
                  + "\n".join(lines[-60:]))
        store.close()
        server.stop()
        double.close()
        if args.keep:
            print(f"kept: Redis prefix {prefix}, log {server.log}")
        else:
            with contextlib.suppress(Exception):
                delete_prefix(prefix)
            with contextlib.suppress(OSError):
                for path in log_dir.iterdir():
                    path.unlink()
                log_dir.rmdir()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
