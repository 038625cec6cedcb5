"""One ConversationRelay session: Twilio's messages in, streamed replies and the handoff out.

The session is the relay transport of one ai node's conversation (DESIGN.md section 8.1). It
knows nothing of HTTP or Flask: the web shell hands it each message Twilio sends (`receive`)
and a `send` that writes one JSON message back, and closes it when the socket goes.

- `setup` names the call: it must be a stored call in progress on a relay ai node (and the
  CallSid the WebSocket URL named); otherwise the session ends at once.
- Each final `prompt`, and each `dtmf` digit, is a turn: stepped through the call service's
  relay turns (`engine.calls.relay`) like a `<Gather>` answer, so `routes` and limits come
  first. A turn that stays on the node asks the model, whose reply goes out as `text` tokens
  while it streams (`Chunker`), `last: true` at its end, and is stepped as the reply.
- `interrupt` stops the reply being sent and keeps in the conversation only what the caller
  heard (`utteranceUntilInterrupt`); a new prompt while a reply streams interrupts it too.
- Every way out of the node (a route, an exit the model took, a limit, an error edge) ends the
  session with `end` and a `handoffData` naming the event, for the `<Connect action>` webhook
  to step (`engine.calls.relay.handoff`). Retries and the fallback personality stay inside:
  a `network` or `rate_limit` retry backs off first (no sooner than a short Retry-After), and a
  `rate_limit` retry says the hold line first (`hold_line`), so the caller is not left in
  silence.
- Silence is measured from the end of what the caller was last told (the greeting, a reply, a
  reprompt), allowing for the time it takes to say it: once the node's `timeout` has passed
  with no prompt, digit or interruption, it is stepped as a `<Gather>` timeout is (the
  node's `no_input` reprompt, then its edge). The shell drives the clock: it calls `tick`
  at least every `due_in` seconds.
- A Twilio `error` about speech (its text-to-speech provider failed) ends the session with a
  speech failure, which the `<Connect action>` answers with `<Gather>` and the Twilio voice
  for the rest of the node (the node's `tts_failure` strategy). Other errors are recorded.
- Malformed messages, unknown types and messages before `setup` are logged and survived.
- The session's own events: `call.relay` when it connects (`status: connected`), ends
  (`ended`, with why) or loses its socket (`closed`), besides the turns' usual events.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from engine import logs
from engine.ai.model import RETRY_AFTER_CAP, ModelResponder, backoff
from engine.calls.relay import (
    MAX_UTTERANCE,
    RelayCall,
    RelayTurns,
    Turn,
    encode_event,
    handoff,
    hold_line,
)
from engine.relay.chunks import Chunker
from engine.runtime.state import (
    Action,
    AskModel,
    Converse,
    Emit,
    Event,
    Failed,
    Heard,
    Interrupted,
    Replied,
    Say,
    Silence,
    SpeechFailed,
)

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]
"""Writes one message to Twilio (the shell serialises it as JSON)."""

CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
MAX_ROUNDS = 6
"""Model requests one turn may make, retries and the fallback personality included."""
STOP_WAIT = 10.0
"""Seconds a new turn waits for an interrupted reply to finish stepping."""
SPOKEN_WORD = 0.35
"""Seconds a word takes to say, about: silence counts from when a text has been said, and
Twilio does not tell when that is."""
IDLE = 1.0
"""The longest the shell waits between `tick`s with nothing due."""
POLL = 0.1
"""How soon the shell ticks again while a reply is being written (its end starts the clock)."""
SPEECH_ERROR = re.compile(r"\b(tts|text[- ]to[- ]speech|synthes\w*|voice)\b", re.IGNORECASE)
RECOGNITION_ERROR = re.compile(r"\b(asr|stt|speech[- ]to[- ]text|transcri\w*|recogni\w*)\b",
                               re.IGNORECASE)
"""What tells an `error` about Twilio's speech (its text-to-speech provider) from one about
recognising the caller, which no voice of ours can help."""


def about_speech(description: str) -> bool:
    """Whether a ConversationRelay `error`'s description is about making speech."""
    return bool(SPEECH_ERROR.search(description)) and not RECOGNITION_ERROR.search(description)


@dataclass
class _Reply:
    """The reply being sent: its thread, what was sent, and how it was stopped."""

    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    sent: str = ""
    interrupted: bool = False
    complete: bool = False  # all of it was sent (`last` went out): too late to interrupt
    first_sent: float | None = None  # monotonic time of its first text token
    outcome: str | Failed | None = None  # the exit the model took, or how it failed


class RelaySession:
    """Twilio's side of one session, spoken to through `receive`; see the module."""

    def __init__(self, turns: RelayTurns, send: Send, *, expected_call: str = "",
                 rng: random.Random | None = None) -> None:
        self.turns = turns
        self._send = send
        self.expected_call = expected_call
        self.rng = rng or random.Random()
        self.key = secrets.token_hex(6)  # this session's request keys: relay:<key>:<n>
        self.call: RelayCall | None = None
        self.done = False  # `end` was sent (or the session was refused): the shell closes
        self.dropped = False  # the socket went away under a send
        self._turn_lock = threading.RLock()  # one step at a time
        self._send_lock = threading.Lock()
        self._reply: _Reply | None = None
        self._count = 0
        self._silence_at: float | None = None  # monotonic; None: not listening for silence

    # -- messages in -----------------------------------------------------------------------------

    def receive(self, raw: str | bytes) -> None:
        """Handle one message from Twilio; never raises for what Twilio (or anyone) sends."""
        if self.done:
            return
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._malformed("a message that is not JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self._malformed("a message without a type")
            return
        kind = message["type"]
        if kind == "setup":
            self._setup(message)
        elif self.call is None:
            log.warning("relay session: %r before setup; ignored", kind[:20])
        elif kind == "prompt":
            if message.get("last", True) is not False:
                self._prompt(message)
            else:  # a partial prompt waits for the last; the caller is talking meanwhile
                self._silence_at = None
        elif kind == "dtmf":
            self._dtmf(message)
        elif kind == "interrupt":
            self._interrupt(message)
        elif kind == "error":
            self._error(message)
        elif kind != "info":
            log.info("relay session: unknown message type %r; ignored", kind[:20])

    def close(self) -> None:
        """The socket has gone: stop any reply and let it record what was sent."""
        reply = self._reply
        if reply is not None and reply.thread is not None:
            reply.stop.set()
            reply.thread.join(timeout=STOP_WAIT)
        self._silence_at = None
        if not self.done and self.call is not None:
            self.turns.record(self.call, "call.relay", {"status": "closed",
                                                        "session": self.key})

    # -- the session's own clock -----------------------------------------------------------------

    def due_in(self) -> float:
        """Seconds until the session next has something to do on its own: the shell calls
        `tick` again within them (at most `IDLE`; `POLL` while a reply is being written)."""
        if self.done:
            return IDLE
        if self._replying():
            return POLL
        at = self._silence_at
        return IDLE if at is None else max(0.0, min(IDLE, at - time.monotonic()))

    def tick(self) -> None:
        """Do what is due: step the caller's silence once the node's `timeout` has passed
        since they were last told something, with no answer."""
        at = self._silence_at
        if at is None or self.done or time.monotonic() < at or self._replying():
            return
        with self._turn_lock:
            if self._silence_at != at or self.done or self.call is None:
                return  # the caller answered meanwhile
            self._silence_at = None
            event = Silence(self.turns.clock())
            try:
                self._apply(self.turns.step(self.call, event, self._request_key()), event)
            except Exception:  # the store, say: the caller's next turn tries again
                log.exception("call %s: could not step the caller's silence",
                              self.call.state.call_sid)

    def _replying(self) -> bool:
        reply = self._reply
        return reply is not None and reply.thread is not None and reply.thread.is_alive()

    def _listen(self, spoken: str, since: float | None = None) -> None:
        """The caller's turn has begun: silence counts once `spoken` (sent from `since`, else
        now) has been said."""
        if self.done or self.call is None:
            return
        now = time.monotonic()
        said = (now if since is None else since) + len(spoken.split()) * SPOKEN_WORD
        self._silence_at = max(now, said) + self.call.node.timeout

    # -- the turns -----------------------------------------------------------------------------

    def _setup(self, message: dict[str, Any]) -> None:
        if self.call is not None:
            log.warning("call %s: a second setup; ignored", self.call.state.call_sid)
            return
        given = message.get("callSid")
        call_sid = given if isinstance(given, str) and CALL_SID.fullmatch(given) else ""
        if not call_sid or (self.expected_call and call_sid != self.expected_call):
            self._refuse(call_sid, "the setup's CallSid is not the call this session is for")
            return
        found = self.turns.open(call_sid)
        if isinstance(found, str):
            self._refuse(call_sid, found)
            return
        self.call = found
        if not logs.call_sid.get():  # the URL named no call: tag the session's lines now
            logs.push(call_sid, logs.route.get())
        log.info("call %s: relay session on '%s'", call_sid, found.node.id)
        self.turns.record(found, "call.relay", {"status": "connected", "session": self.key})
        history = found.state.history
        # Twilio says the welcome greeting (the node's opening) as the session starts.
        greeting = history[-1].text if history and history[-1].role == "agent" else ""
        self._listen(greeting)

    def _prompt(self, message: dict[str, Any]) -> None:
        text = message.get("voicePrompt")
        speech = " ".join(text.split())[:MAX_UTTERANCE] if isinstance(text, str) else ""
        if speech:
            self._turn(Heard(self.turns.clock(), speech, 1.0, ""))

    def _dtmf(self, message: dict[str, Any]) -> None:
        digit = message.get("digit")
        if isinstance(digit, str) and len(digit) == 1 and digit in "0123456789*#":
            self._turn(Heard(self.turns.clock(), "", 1.0, digit))

    def _interrupt(self, message: dict[str, Any]) -> None:
        heard = message.get("utteranceUntilInterrupt")
        duration = message.get("durationUntilInterruptMs")
        self._silence_at = None
        self._stop_reply(interrupted=True)
        with self._turn_lock:
            if self.done or self.call is None:
                return
            event = Interrupted(self.turns.clock(),
                                heard[:MAX_UTTERANCE] if isinstance(heard, str) else "",
                                int(duration) if isinstance(duration, int | float) else 0)
            self._apply(self.turns.step(self.call, event, self._request_key()), event)

    def _turn(self, event: Heard) -> None:
        """A caller's turn: a reply still going is cut off first (they are talking)."""
        self._silence_at = None
        self._stop_reply(interrupted=True)
        with self._turn_lock:
            if self.done or self.call is None:
                return
            self._silence_at = None
            self._apply(self.turns.step(self.call, event, self._request_key()), event)

    def _error(self, message: dict[str, Any]) -> None:
        """Twilio's `error`: about speech, the node goes on by `<Gather>` in the Twilio voice
        (the session ends with a speech failure); else recorded, and the session goes on."""
        assert self.call is not None
        description = message.get("description")
        text = " ".join(description.split())[:300] if isinstance(description, str) else ""
        log.warning("call %s: ConversationRelay error: %s", self.call.state.call_sid, text)
        if not about_speech(text):
            self.turns.record(self.call, "call.error", {"kind": "relay", "detail": text})
            return
        self._silence_at = None
        self._stop_reply(interrupted=False)
        with self._turn_lock:
            if self.done or self.call is None:
                return
            self._end(SpeechFailed(self.turns.clock(), self.call.node.id, "relay", text))

    def _apply(self, turn: Turn, event: Event) -> None:
        """Carry out a stepped turn (the turn lock held): hand off, or speak and reply."""
        assert self.call is not None
        if turn.moved:
            if isinstance(event, Replied) and event.text:
                # Said to the caller before the call moved on (a hang-up, the dashboard): kept,
                # though no step of the node can take it any more.
                self.turns.record(self.call, "call.response", {
                    "text": event.text, "offline": event.offline,
                    "personality": event.personality, "final": True, "part": 0,
                    "timings": dict(event.timings)})
                if event.timings:
                    self.turns.record(self.call, "call.timing", {
                        "transport": "relay", **event.timings, "offline": event.offline})
            self._end(None, "the call moved on")
            return
        if turn.left:
            self._end(event)
            return
        self.call = turn.call
        ask: AskModel | None = None
        said: list[str] = []
        for action in turn.actions:
            if isinstance(action, Emit) and action.name == "call.language":
                # A route switched the call's language: Twilio speaks and hears it from now.
                language = action.data["language"]
                self.send({"type": "language", "ttsLanguage": language,
                           "transcriptionLanguage": language})
            elif isinstance(action, Say) and not isinstance(event, Replied):
                self._text(action.text, last=True)  # a reprompt: the reply's own was streamed
                said.append(action.text)
            elif isinstance(action, Converse) and action.greeting:
                self._text(action.greeting, last=True)  # the node entered again by a route
                said.append(action.greeting)
            elif isinstance(action, AskModel):
                ask = action
        if ask is not None:
            self._start_reply(ask)
        elif not isinstance(event, Replied):  # a reply's own end starts the clock (the thread)
            self._listen(" ".join(said))

    def _stop_reply(self, interrupted: bool) -> None:
        reply = self._reply
        if reply is None or reply.thread is None or not reply.thread.is_alive():
            return
        reply.interrupted = interrupted and not reply.complete
        reply.stop.set()
        reply.thread.join(timeout=STOP_WAIT)

    def _start_reply(self, ask: AskModel) -> None:
        self._silence_at = None
        reply = _Reply()
        context = contextvars.copy_context()  # its log lines carry the call
        reply.thread = threading.Thread(target=context.run, args=(self._run_reply, reply, ask),
                                        name=f"relay-{self.key}", daemon=True)
        self._reply = reply
        reply.thread.start()

    # -- a reply, in its own thread ------------------------------------------------------------

    def _run_reply(self, reply: _Reply, ask: AskModel) -> None:
        try:
            self._reply_rounds(reply, ask)
        except Exception:
            log.exception("relay session %s: the reply failed", self.key)

    def _reply_rounds(self, reply: _Reply, ask: AskModel) -> None:
        """Ask the model until it answers or the node's error strategy gives up."""
        budget = self.turns.budget()
        failed: Failed | None = None  # the failure the request is asked again for
        for _ in range(MAX_ROUNDS):
            with self._turn_lock:
                call = self.call
            if call is None or self.done:
                return
            if ask.attempt > 0 and failed is not None and failed.kind in ("network",
                                                                          "rate_limit"):
                # Backoff with jitter, and no sooner than a short Retry-After allows; a caller
                # who talks meanwhile stops the wait (their turn takes over).
                wait = max(backoff(ask.attempt, self.rng),
                           min(RETRY_AFTER_CAP, call.state.hold_until - self.turns.clock()))
                reply.stop.wait(wait)
            if reply.stop.is_set():
                return
            refused = budget.refuse(call.state, ask, self.turns.clock())
            outcome: Replied | Failed
            news: tuple[Action, ...] = ()
            if refused is not None:
                outcome, more = refused
                news = tuple(more)
            else:
                outcome = self._stream(reply, call, ask)
            with self._turn_lock:
                if self.done or self.call is None:
                    return
                nxt = self._after_reply(outcome, news)
                if nxt is None and not reply.stop.is_set():
                    self._listen(reply.sent, reply.first_sent)
            if nxt is None:
                return
            failed = outcome if isinstance(outcome, Failed) else None
            ask = nxt
        log.error("relay session %s: too many model rounds in one turn", self.key)
        with self._turn_lock:
            self._listen(reply.sent, reply.first_sent)

    def _after_reply(self, outcome: Replied | Failed,
                     news: tuple[Action, ...]) -> AskModel | None:
        """Step the model's outcome (the turn lock held); the next request when the node's
        strategy asks for one."""
        assert self.call is not None
        if isinstance(outcome, Failed):
            turn = self.turns.step(self.call, outcome, self._request_key(), news)
            if turn.moved or turn.left:
                self._apply(turn, outcome)
                return None
            self.call = turn.call
            again = next((a for a in turn.actions if isinstance(a, AskModel)), None)
            if again is not None and outcome.kind == "rate_limit":
                self._hold(turn.call)
            return again
        exit_ = outcome.exit
        if outcome.text:
            spoken = Replied(outcome.now, outcome.text, personality=outcome.personality,
                             offline=outcome.offline, timings=outcome.timings)
            turn = self.turns.step(self.call, spoken, self._request_key(), news)
            if turn.moved or turn.left:
                self._apply(turn, spoken)
                return None
            self.call = turn.call
        if exit_ is not None:
            self._end(Replied(outcome.now, "", exit=exit_, personality=outcome.personality,
                              offline=outcome.offline))
        return None

    def _stream(self, reply: _Reply, call: RelayCall, ask: AskModel) -> Replied | Failed:
        """One model request, its text sent as it streams; what the caller was sent."""
        responder = self.turns.service.responder
        pinned = call.pinned
        personality = pinned.registry.personalities.get(ask.personality)
        chunker = Chunker(personality.style.max_sentences if personality else 2)
        started = time.monotonic()
        first_token: float | None = None
        first_sent: float | None = None
        exit_: str | None = None
        failure: Failed | None = None
        offline = responder.offline
        for delta in self._deltas(responder, call, ask, reply):
            if first_token is None and delta.strip():
                first_token = time.monotonic()
            if reply.stop.is_set():
                break
            piece = chunker.add(delta)
            if piece:
                self._text(piece, last=False, reply=reply)
                if first_sent is None:
                    first_sent = reply.first_sent = time.monotonic()
            if chunker.full:
                break
        outcome = reply.outcome
        if isinstance(outcome, Failed):
            failure = outcome
        elif isinstance(outcome, str):
            exit_ = outcome
        if not reply.stop.is_set():
            rest = chunker.finish()
            if rest or reply.sent:
                self._text(rest, last=True, reply=reply)
                reply.complete = True
                if first_sent is None:
                    first_sent = reply.first_sent = time.monotonic()
        text = reply.sent.strip()
        if failure is not None and not text:
            return failure
        if failure is not None:
            self.turns.record(call, "call.error", {
                "kind": failure.kind, "detail": f"reply cut short: {failure.detail}"[:500]})
        if not text and exit_ is None and not reply.stop.is_set():
            return Failed(self.turns.clock(), "ai_failure",
                          "the model gave an empty or unusable reply")

        def since(moment: float | None) -> float | None:
            return round(moment - started, 3) if moment is not None else None

        timings: dict[str, float | None] = {
            "first_token": since(first_token), "first_sent": since(first_sent),
            "done": since(time.monotonic()), "interrupted": 1.0 if reply.interrupted else 0.0}
        return Replied(self.turns.clock(), text, exit=exit_, personality=ask.personality,
                       offline=offline, timings=timings)

    def _deltas(self, responder: Any, call: RelayCall, ask: AskModel,
                reply: _Reply) -> Iterator[str]:
        """The reply's text as it comes: token by token from a model, word by word from a
        responder that answers whole (offline, scripted). Sets `reply.outcome` to the exit
        taken (a str) or the Failed."""
        pinned = call.pinned
        if isinstance(responder, ModelResponder):
            stream = responder.tokens(pinned.flow, pinned.registry, call.state, ask)
            if isinstance(stream, Failed):
                reply.outcome = stream
                return
            try:
                for delta in stream.deltas():
                    yield delta
                    if reply.stop.is_set():
                        stream.stop()
            finally:
                stream.stop()
            if stream.failure is not None:
                reply.outcome = Failed(
                    self.turns.clock(), stream.failure.kind, stream.failure.detail,
                    stream.failure.retry_after)
            else:
                reply.outcome = stream.exit
            return
        answer = responder.answer(pinned.flow, pinned.registry, call.state, ask, time.time())
        if isinstance(answer, Failed):
            reply.outcome = answer
            return
        reply.outcome = answer.exit
        words = answer.text.split(" ")
        for index, word in enumerate(words):
            yield word + (" " if index < len(words) - 1 else "")

    # -- messages out --------------------------------------------------------------------------

    def _request_key(self) -> str:
        self._count += 1
        return f"relay:{self.key}:{self._count}"

    def send(self, message: dict[str, Any]) -> bool:
        """Write one message; False when the socket has gone (the session carries on to
        record what it can)."""
        if self.dropped:
            return False
        try:
            with self._send_lock:
                self._send(message)
            return True
        except Exception:
            log.info("relay session %s: the socket went away mid-send", self.key)
            self.dropped = True
            return False

    def _text(self, token: str, last: bool, reply: _Reply | None = None) -> None:
        if reply is not None:
            if reply.stop.is_set():
                return
            reply.sent += token
        self.send({"type": "text", "token": token, "last": last})

    def _hold(self, call: RelayCall) -> None:
        """Say the hold line before a rate-limited request is made again (turn lock held)."""
        line = hold_line(call, self.turns.clock())
        self._text(line, last=True)
        self.turns.record(call, "call.say", {"text": line, "personality": call.state.personality,
                                             "hold": True})

    def _end(self, event: Event | None, reason: str = "") -> None:
        """End the session, handing `event` (None: carry on) to the `<Connect action>`."""
        assert self.call is not None
        self.done = True
        self._silence_at = None
        why = encode_event(event)["type"] if event is not None else "resume"
        self.turns.record(self.call, "call.relay", {
            "status": "ended", "session": self.key, "handoff": why,
            **({"reason": reason} if reason else {})})
        self.send({"type": "end", "handoffData": handoff(self.call, event, reason)})

    def _refuse(self, call_sid: str, reason: str) -> None:
        log.warning("relay session for %r refused: %s", call_sid[:40], reason)
        self.done = True
        self.send({"type": "end", "handoffData": json.dumps({
            "v": 1, "call": call_sid, "event": {"type": "resume"}, "reason": reason})})

    def _malformed(self, what: str) -> None:
        log.warning("relay session %s: %s; ignored", self.key, what)
        if self.call is not None:
            self.turns.record(self.call, "call.error", {"kind": "relay",
                                                        "detail": f"Twilio sent {what}"})
