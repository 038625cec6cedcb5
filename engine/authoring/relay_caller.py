"""The caller's side of a ConversationRelay call in `flask call` and scenario runs.

A relay ai node holds its conversation on a WebSocket, not in webhooks: what the caller says is
a `prompt`, a key a `dtmf`, talking over a reply an `interrupt` (FACTS.md, "Twilio
ConversationRelay"). `RelayCaller` sends them over the session `SimulatedCall.relay()` opens
and waits until the session has done with each, so the next line of a script (or the next
scenario step, with its expectations) sees the call as the caller would:

- a prompt or a key is answered when a reply's `last` token came (or the session ended); in
  process the session is then waited for until no reply is being worked on (an exit the model
  took ends the session just after its reply), and a ping to the server collects whatever it
  sent before (`RelayLine.barrier`). Over `--url` the ping alone is the wait.
- an interruption is taken when the call's store records its `call.interrupt` (in process).
- a `<Connect action>` that follows the session's `end` is posted from inside those waits, by
  the simulator, so the call has moved on when they return.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from engine.relay.simulator import RelayError, RelayLine
from engine.simulator import SimulatedCall
from engine.store import CallStore

REPLY_TIMEOUT = 20.0
"""Seconds a turn may take before the session counts as not answering (retries with backoff,
and a fallback personality, fit in it)."""
POLL = 0.02
"""How long one read waits while a condition is awaited: the socket is read meanwhile."""
SILENCE_GRACE = 30.0
"""Seconds past the node's `timeout` a silent caller waits for the session to act on it (the
session counts from when what it said has been spoken, which it can only estimate)."""


REPLY_THREAD = re.compile(r"relay-[0-9a-f]{12}")
"""The name engine/relay/session.py gives the thread of each reply: `relay-<session key>`."""


def replies_running() -> bool:
    """Whether a relay session of this process is still working on a reply (asking the model,
    sending or stepping it), by its thread's name (`REPLY_THREAD`)."""
    return any(REPLY_THREAD.fullmatch(thread.name) and thread.is_alive()
               for thread in threading.enumerate())


class RelayCaller:
    """Drives the relay sessions of one `SimulatedCall`; see the module.

    `address` gives where to open the sockets (an app served locally; None: the URL's own
    host). `store` is the call's store when the app runs in this process (None over `--url`).
    `stop_early` says a turn will not be answered and need not be waited for (a scenario's
    model asked for an answer it was not given). RelayError when a session does not answer.
    """

    def __init__(self, call: SimulatedCall, *, address: Callable[[], str] | None = None,
                 store: CallStore | None = None,
                 stop_early: Callable[[], bool] = lambda: False,
                 timeout: float = REPLY_TIMEOUT) -> None:
        self.call = call
        self.address = address
        self.store = store
        self.stop_early = stop_early
        self.timeout = timeout

    @property
    def in_session(self) -> bool:
        """Whether the call is connected to a relay session (the caller talks over it)."""
        return self.call.waiting.kind == "relay"

    def connect(self) -> RelayLine | None:
        """Open the session the call waits for, as Twilio does once it reads `<Connect>`, unless
        it is open; the line, or None when the call is not connected to a relay."""
        if not self.in_session:
            return None
        line = self.call.line
        if line is not None and line.ended is None and not line.closed:
            return line
        return self.call.relay(address=self.address() if self.address else None,
                               timeout=self.timeout)

    def _line(self) -> RelayLine:
        line = self.connect()
        if line is None:
            raise RelayError(f"the call is not in a relay session (it waits for "
                             f"{self.call.waiting.kind})")
        self.call.relay_heard()  # a reply cut short is what was heard of it
        return line

    # -- what the caller does ------------------------------------------------------------------

    def say(self, speech: str) -> None:
        """The caller says `speech` (a final `prompt`); returns once it is answered."""
        line = self._line()
        mark = len(line.received)
        line.say(speech, wait=False)
        self._answered(line, mark)

    def press(self, keys: str) -> None:
        """The caller presses `keys`, one `dtmf` each, each answered before the next; keys
        left when the session ends are not sent."""
        for key in keys:
            if not self.in_session:
                return
            line = self._line()
            mark = len(line.received)
            line.press(key, wait=False)
            self._answered(line, mark)

    def interrupt(self, heard: str) -> None:
        """The caller talks over the reply, having heard `heard` of it."""
        line = self._line()
        before = self._count("call.interrupt")
        line.interrupt(heard, duration_ms=_spoken_ms(heard))
        if self.store is None:
            line.barrier()
            return
        self._until(line, lambda: self._count("call.interrupt") > before,
                    "the session did not take the interruption")

    def report_error(self, description: str) -> None:
        """Twilio reports an `error` about the session (its speech, say)."""
        line = self._line()
        before = self._count("call.error")
        line.error(description)
        if self.store is None:
            line.barrier()
            return
        self._until(line, lambda: self._count("call.error") > before,
                    "the session did not record Twilio's error")

    def silence(self, seconds: float) -> None:
        """The caller says nothing: Twilio sends nothing, and the session measures the silence
        itself. Returns once it said something (a reprompt) or ended; RelayError when it does
        neither within `seconds` plus a grace."""
        line = self._line()
        mark = len(line.received)
        deadline = time.monotonic() + seconds + SILENCE_GRACE
        while not (line.ended or line.closed or _has_text(line, mark, last=True)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RelayError(f"the relay session did nothing about {seconds:g} s of "
                                 f"silence (no reprompt, no end) within {SILENCE_GRACE:g} s "
                                 f"more")
            line.next_message(min(left, POLL * 5))
        self._settle(line)

    def drain(self) -> None:
        """Read what the open session sent until now (its `end` included, whose `<Connect
        action>` is then followed)."""
        line = self.call.line
        if line is not None and line.ended is None and not line.closed:
            line.barrier(self.timeout)

    def close(self) -> None:
        """Hang up the open session's socket, if any."""
        line = self.call.line
        if line is not None and not line.closed:
            line.close()

    # -- waiting -------------------------------------------------------------------------------

    def _answered(self, line: RelayLine, mark: int) -> None:
        self._until(line, lambda: _has_text(line, mark, last=True) or self.stop_early(),
                    "no reply came")
        self._settle(line)

    def _settle(self, line: RelayLine) -> None:
        """Until the session has nothing more to send for this turn."""
        if line.ended or line.closed:
            return
        if self.store is not None:
            self._until(line, lambda: not replies_running(), "the reply did not finish")
        line.barrier(self.timeout)

    def _until(self, line: RelayLine, done: Callable[[], bool], failure: str) -> None:
        """Read the socket until `done()` holds or the session ends; RelayError after the
        timeout."""
        deadline = time.monotonic() + self.timeout
        while not (line.ended or line.closed or done()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RelayError(f"{failure} within {self.timeout:g} s")
            line.next_message(min(left, POLL))

    def _count(self, name: str) -> int:
        if self.store is None:
            return 0
        events = self.store.events_after(0, self.call.call_sid, limit=100_000)
        return sum(event.name == name for event in events)


def _has_text(line: RelayLine, mark: int, last: bool) -> bool:
    return any(message.get("type") == "text" and (not last or message.get("last") is True)
               for message in line.received[mark:])


def _spoken_ms(text: str) -> int:
    """About how long `text` takes to say (150 words a minute): the interruption's
    `durationUntilInterruptMs`."""
    return len(text.split()) * 400
