"""Call state, the events that move a call, and the actions a step asks the shell to carry out.

All plain frozen values: the web shell turns a Twilio webhook into an event, `step` returns the
next state and a list of actions, and the shell renders the actions as TwiML, writes the state and
records the events. `state_to_dict`/`state_from_dict` give the JSON the store keeps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.flows.model import InputKind

CallStatus = Literal["in-progress", "completed", "busy", "failed", "no-answer", "canceled"]
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "busy", "failed", "no-answer",
                                             "canceled"})
DialStatus = Literal["completed", "answered", "busy", "no-answer", "failed", "canceled"]


@dataclass(frozen=True)
class Caller:
    """Who is calling, as Twilio's webhook describes them (From, FromCity, ...); '' when not
    given.
    """

    number: str = ""
    city: str = ""
    state: str = ""
    country: str = ""
    zip: str = ""
    name: str = ""


@dataclass(frozen=True)
class Message:
    """One line of the conversation, for the model's context and the transcript."""

    role: Literal["caller", "agent"]
    text: str
    node: str


@dataclass(frozen=True)
class CallState:
    """Everything the engine knows of one call between webhooks, as the store keeps it:
    where it is in the flow (pinned to `flow_version`), its counters, its conversation, and
    any model reply pending or still streaming. Frozen: `step` returns a new one.
    """

    call_sid: str
    flow_id: str
    flow_version: str
    node: str
    caller: Caller
    called: str
    started_at: float  # epoch seconds
    personality: str
    step: int = 0  # number of webhooks that advanced the call; travels in callback URLs
    turn: int = 0  # caller turns, silences included: what `limits.max_turns` counts
    silences: int = 0  # consecutive no-inputs on the current node
    status: CallStatus = "in-progress"
    ended: bool = False  # the last answer hung up or the status callback closed the call
    path: tuple[str, ...] = ()
    history: tuple[Message, ...] = ()
    pending: str | None = None  # caller utterance not yet answered (see DESIGN.md section 6)
    pending_digits: str = ""
    errors: Mapping[str, int] = field(default_factory=dict)  # failures by kind on this turn
    hold_until: float = 0.0  # rate limited: ask the model again no earlier than this
    offline: bool = False
    # A relay ai node whose session lost Twilio's speech: until the call leaves it, the node
    # converses by <Gather> in the Twilio voice (its tts_failure strategy).
    relay_lost: str = ""
    # A streamed reply whose first sentence was spoken; the rest is read on the next webhook.
    stream: str | None = None
    stream_offset: int = 0  # characters of the model's text already spoken
    stream_personality: str | None = None
    stream_sentences: int = 0
    # The sentiment of the caller's scored utterances, oldest first (the last MAX_SENTIMENTS).
    sentiments: tuple[float, ...] = ()
    # The language the call speaks now ('' : the flow's default), switched by a route's
    # `language`; and the language of the last utterance, as the shell's detector heard it.
    language: str = ""
    detected_language: str = ""
    # Values an http node saved from its answers: the flow's `vars` with these on top.
    vars: Mapping[str, Any] = field(default_factory=dict)
    # An http node's request still running after its webhook answered ("one moment..."): its
    # answer is read from the store under this key when Twilio comes back.
    request: str | None = None

    def at(self, node_id: str) -> CallState:
        """The state on entering `node_id`: per-node counters start over."""
        return dataclasses.replace(self, node=node_id, silences=0, path=(*self.path, node_id),
                                   errors={})


def state_to_dict(state: CallState) -> dict[str, Any]:
    """The state as plain values for the store's JSON: exactly `dataclasses.asdict(state)`
    (same keys in the same order, tuples kept as tuples, nested dataclasses as dicts), written
    out by hand because asdict's generic recursion and deep copies cost more than a webhook's
    whole store write. tests/runtime/test_state_dict.py holds the two to each other."""
    caller = state.caller
    return {
        "call_sid": state.call_sid,
        "flow_id": state.flow_id,
        "flow_version": state.flow_version,
        "node": state.node,
        "caller": {"number": caller.number, "city": caller.city, "state": caller.state,
                   "country": caller.country, "zip": caller.zip, "name": caller.name},
        "called": state.called,
        "started_at": state.started_at,
        "personality": state.personality,
        "step": state.step,
        "turn": state.turn,
        "silences": state.silences,
        "status": state.status,
        "ended": state.ended,
        "path": tuple(state.path),
        "history": tuple({"role": line.role, "text": line.text, "node": line.node}
                         for line in state.history),
        "pending": state.pending,
        "pending_digits": state.pending_digits,
        "errors": dict(state.errors),
        "hold_until": state.hold_until,
        "offline": state.offline,
        "relay_lost": state.relay_lost,
        "stream": state.stream,
        "stream_offset": state.stream_offset,
        "stream_personality": state.stream_personality,
        "stream_sentences": state.stream_sentences,
        "sentiments": tuple(state.sentiments),
        "language": state.language,
        "detected_language": state.detected_language,
        "vars": dict(state.vars),
        "request": state.request,
    }


_STATE_FIELDS = frozenset(spec.name for spec in dataclasses.fields(CallState))


def state_from_dict(data: Mapping[str, Any]) -> CallState:
    """The state `state_to_dict` (or its JSON) gave. Keys this code does not know (written by a
    newer version) are ignored; missing ones take their defaults."""
    values = {key: value for key, value in data.items() if key in _STATE_FIELDS}
    values["caller"] = Caller(**values.get("caller", {}))
    values["path"] = tuple(values.get("path", ()))
    values["history"] = tuple(Message(**item) for item in values.get("history", ()))
    values["errors"] = dict(values.get("errors", {}))
    values["sentiments"] = tuple(values.get("sentiments", ()))
    values["vars"] = dict(values.get("vars", {}))
    return CallState(**values)


# Events: what happened, as the shell understood a webhook.

@dataclass(frozen=True)
class CallStarted:
    """The call rang in (the incoming-call webhook): it enters the flow's start node.

    `answered_by` is Twilio's `AnsweredBy` on that webhook (an outbound call with synchronous
    answering-machine detection): `machine_start`, `machine_end_beep`, `machine_end_silence`,
    `machine_end_other` or `fax` take the flow's `machine` edge instead; '' when not detected.
    """

    now: float
    answered_by: str = ""


MACHINE_ANSWERS = frozenset({"machine_start", "machine_end_beep", "machine_end_silence",
                             "machine_end_other", "fax"})
"""Twilio's `AnsweredBy` values that mean nobody is listening (`human` and `unknown` do not)."""


@dataclass(frozen=True)
class MachineAnswered:
    """Twilio's asynchronous answering-machine detection said a machine answered the call,
    which is already under way: it leaves wherever it is by the flow's `machine` edge."""

    now: float
    answered_by: str


@dataclass(frozen=True)
class Heard:
    """The caller answered a gather: speech, digits or both. `sentiment` is the speech's score
    in [-1, 1], as the shell's scorer gave it (engine/calls/sentiment.py); None: not scored."""

    now: float
    speech: str = ""
    confidence: float = 0.0
    digits: str = ""
    sentiment: float | None = None
    # The language of the speech among the flow's, as the shell's detector heard it ('' : not
    # sure, or no speech): engine/calls/language.py.
    language: str = ""


@dataclass(frozen=True)
class Silence:
    """The caller's turn passed with no speech or digits: the node's `no_input` applies."""

    now: float


@dataclass(frozen=True)
class DialEnded:
    """A transfer's `<Dial>` ended with Twilio's DialCallStatus (`completed` or `answered`
    mean it was taken) after `duration` seconds.
    """

    now: float
    status: str
    duration: int = 0


@dataclass(frozen=True)
class RecordingDone:
    """A `<Record>` ended: the recording's URL ('' when Twilio sent none) and seconds."""

    now: float
    url: str = ""
    duration: int = 0


@dataclass(frozen=True)
class StatusChanged:
    """Twilio's status callback. A final status (FINAL_STATUSES) ends the call; any other is
    news and changes nothing.
    """

    now: float
    status: str
    duration: int = 0


@dataclass(frozen=True)
class Resume:
    """Twilio came back without caller input (a redirect); carry on where the call waits."""

    now: float


@dataclass(frozen=True)
class Replied:
    """The model (or the offline responder) answered the pending utterance.

    `final=False` is the first part of a reply still streaming under `stream`; the text up to
    `offset` of the model's output has then been consumed.
    """

    now: float
    text: str
    exit: str | None = None
    personality: str | None = None
    offline: bool = False
    final: bool = True
    stream: str | None = None
    offset: int = 0
    timings: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """A model or speech call failed in the way `kind` names (network, rate_limit, ...), or an
    http node's request did (`http`, with the `exchange` recorded, without secrets)."""

    now: float
    kind: str
    detail: str = ""
    retry_after: float = 0.0
    exchange: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpAnswered:
    """An http node's request answered: its JSON (`data`) and its record (`exchange`, without
    secrets: engine.actions.exchange.Exchange.as_dict)."""

    now: float
    node: str
    data: Any = None
    exchange: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestPending:
    """An http node's request is still running as its webhook must answer: say the node's
    `say_while_waiting` and have Twilio come back; the answer is kept under `key`."""

    now: float
    node: str
    key: str


@dataclass(frozen=True)
class SpeechFailed:
    """Speech for a node's text could not be made (`cause`: network, rate_limit, ...), so the
    shell spoke it with the personality's Twilio voice instead: the `tts_failure` strategy.

    News, not a move: stepping it records the failure against `node` (and its `tts_failure`
    edge where the node declares one) and changes nothing else. Except with `cause` "relay",
    from a relay session whose speech (Twilio's) failed on the node the call is on: then the
    node goes on by <Gather> in the Twilio voice, saying again its last line (`relay_lost`).
    """

    now: float
    node: str
    cause: str
    detail: str = ""


@dataclass(frozen=True)
class Interrupted:
    """The caller talked over a reply on a relay node: only `heard`, what was said of the reply
    before they did (`duration_ms` into it), stays in the conversation."""

    now: float
    heard: str = ""
    duration_ms: int = 0


Event = (CallStarted | Heard | Silence | DialEnded | RecordingDone | StatusChanged | Resume
         | Replied | Failed | SpeechFailed | Interrupted | HttpAnswered | RequestPending
         | MachineAnswered)


# Actions: what the shell must do. Speech actions before a Listen are spoken inside it.

@dataclass(frozen=True)
class Say:
    """Speak `text` as `personality`, in `language`. Equal texts, voices and languages are
    equal actions, whatever node spoke them.
    """

    text: str
    personality: str  # whose voice; the shell picks OpenAI speech or the Twilio voice
    language: str
    twilio_voice: bool = False  # tts_failure: speak with the Twilio voice even if OpenAI is on
    # The node that speaks it, so a speech failure is charged to its edge; provenance only,
    # not part of what is said (two Says of the same text are equal).
    node: str = field(default="", compare=False)


@dataclass(frozen=True)
class Pause:
    """Silence for `seconds` (TwiML rounds to whole seconds, at least one)."""

    seconds: float


@dataclass(frozen=True)
class Listen:
    """Wait for the caller: a `<Gather>` of `input` kinds, with speech `hints`, `timeout`
    seconds of silence, and `num_digits` keys at most (None: no limit). Speech just before it
    is spoken inside it, so the caller can interrupt.
    """

    input: tuple[InputKind, ...]
    language: str
    hints: tuple[str, ...] = ()
    timeout: int = 5
    num_digits: int | None = None


@dataclass(frozen=True)
class Dial:
    """Transfer the call to `target` (E.164 or `sip:`), ringing for `timeout` seconds, showing
    `caller_id` (None: the caller's number); the outcome comes back as `DialEnded`.
    """

    target: str
    timeout: int
    caller_id: str | None = None


@dataclass(frozen=True)
class Record:
    """Record the caller after a beep, for up to `max_seconds` or until `finish_on_key` is
    pressed (Twilio transcribes it when `transcribe`); the outcome comes back as `RecordingDone`.
    """

    max_seconds: int
    finish_on_key: str = "#"
    transcribe: bool = False


@dataclass(frozen=True)
class Hangup:
    """End the call."""


@dataclass(frozen=True)
class Continue:
    """Ask Twilio to come back right away (after a hold, or to fetch a streamed reply)."""


@dataclass(frozen=True)
class AskModel:
    """The shell must get a reply to `state.pending` and step again with Replied or Failed."""

    node: str
    personality: str
    attempt: int = 0


@dataclass(frozen=True)
class AwaitStream:
    """The shell must read more of `state.stream` and step again with Replied or Failed."""

    node: str


@dataclass(frozen=True)
class SendRequest:
    """The shell must send http node `node`'s request, rendered (`${NAME}` still in: the sender
    expands it), and step again with HttpAnswered, Failed(kind="http") or, when it is still
    running at the webhook's answer and `waiting` (the node has a line to say meanwhile),
    RequestPending. `attempt` counts the retries (0: the first)."""

    node: str
    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    timeout: float = 5.0
    attempt: int = 0
    waiting: bool = False


@dataclass(frozen=True)
class AwaitRequest:
    """The shell must read the answer to `state.request` (see RequestPending) and step again
    with HttpAnswered or Failed."""

    node: str


@dataclass(frozen=True)
class Converse:
    """Hold the conversation of relay ai node `node` over ConversationRelay: Twilio connects a
    WebSocket session for call `call_sid`, in `language`, speaking as `personality`, with
    speech `hints`, opening with `greeting` (nothing when ''). The session takes every turn
    on the node; the edge out of it comes back when Twilio posts the `<Connect action>`.
    """

    node: str
    call_sid: str
    personality: str
    language: str
    hints: tuple[str, ...] = ()
    greeting: str = ""
    languages: tuple[str, ...] = ()  # a flow of several: every one the session may switch to


@dataclass(frozen=True)
class Emit:
    """A call event to record (and publish): `call.node`, `call.transcript`, ..."""

    name: str
    data: Mapping[str, Any]


Action = (Say | Pause | Listen | Dial | Record | Hangup | Continue | AskModel | AwaitStream
          | Converse | Emit | SendRequest | AwaitRequest)
