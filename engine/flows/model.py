"""The compiled flow language: frozen dataclasses that the runtime interprets.

A flow file compiles to a `Flow`: its nodes, with `defaults` already applied, and the neutral
graph of typed `Edge`s that checks, exports and coverage all read. Field names of the node classes
are the YAML keys of their node type; `tests/flows/test_schema_matches_compiler.py` holds the
schema to the same keys.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

K = TypeVar("K")
V = TypeVar("V")

ErrorKind = Literal["network", "rate_limit", "ai_failure", "tts_failure", "http"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("network", "rate_limit", "ai_failure", "tts_failure")
"""The error kinds of an ai node: its model's and its speech's failures."""
HTTP_ERROR_KINDS: tuple[ErrorKind, ...] = ("http",)
"""The error kinds of an http node: timeouts, connection errors, >= 400, bad JSON, refusals."""

EdgeKind = Literal[
    "next", "route", "exit", "no_input", "error:network", "error:rate_limit",
    "error:ai_failure", "error:tts_failure", "error:http", "transfer_failed", "limit", "machine",
]
EDGE_KINDS: tuple[EdgeKind, ...] = (
    "next", "route", "exit", "no_input", "error:network", "error:rate_limit",
    "error:ai_failure", "error:tts_failure", "error:http", "transfer_failed", "limit", "machine",
)

InputKind = Literal["speech", "dtmf"]

Conversation = Literal["gather", "relay"]
"""How an ai node holds its conversation: `<Gather>` round trips, or Twilio ConversationRelay."""


def frozen_mapping(values: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """A read-only view, so a compiled flow cannot be changed by the code that runs it."""
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class Route:
    """`when:` is a sandboxed Jinja2 expression; the first route that holds is taken. A route
    with `language` switches the call to that language (one of the flow's) as it is taken."""

    when: str
    to: str
    language: str | None = None


@dataclass(frozen=True)
class Exit:
    """An edge the model may take, offered to it as a tool named after the target node."""

    to: str
    description: str


@dataclass(frozen=True)
class NoInput:
    """What a gather or ai node does when the caller says nothing (its own, or `defaults`').

    Each of the first `retries` silences in a row on the node speaks the next `reprompt` (the last
    one again once they run out; a gather node without reprompts repeats its prompt) and listens
    again; the silence after that takes the node's `no_input` edge to `then`. The count starts
    over when the caller answers or the call enters a node.
    """

    retries: int
    reprompt: tuple[str, ...]  # templates, spoken in turn
    then: str  # the node the `no_input` edge leads to


@dataclass(frozen=True)
class ErrorPolicy:
    """What an ai node does when a model or speech call fails in one way (`kind`).

    Each of `retry`, `personality` and `voice` is drawn as a self-loop of the node (the call stays
    and tries again differently); `then` is the edge to another node once those are spent.
    """

    kind: ErrorKind
    retry: int = 0  # network / rate_limit / http: try again up to this many times
    personality: str | None = None  # ai_failure: ask once more as this personality
    voice: str | None = None  # tts_failure: speak with this voice instead ("twilio")
    then: str | None = None  # the node to go to when the strategy is spent


@dataclass(frozen=True)
class Request:
    """A request to the business's API, as an `http` node or an ai node's tool declares it.

    `url`, each header value and each string of `body` are templates (a tool's also read
    `args`, the model's arguments); `${NAME}` in them is left for the sender, which reads it from
    the environment as the request goes out. A `body` that is not a string is sent as JSON.
    """

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=frozen_mapping)
    body: Any = None
    timeout: float = 5.0  # seconds, at most 10, within the webhook's own deadline


@dataclass(frozen=True)
class Tool:
    """A function an ai node's model may call: `parameters` are JSON Schema properties (each
    one required unless listed in `optional`), checked before `request` is sent; the JSON
    answer goes back to the model."""

    name: str
    description: str
    request: Request
    parameters: Mapping[str, Any] = field(default_factory=frozen_mapping)
    optional: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the arguments: an object of `parameters`, nothing else."""
        properties = {name: dict(spec) for name, spec in self.parameters.items()}
        return {"type": "object", "properties": properties,
                "required": [name for name in properties if name not in self.optional],
                "additionalProperties": False}


FieldType = Literal["string", "boolean", "integer", "number"]

WEBHOOK_EVENTS = ("call.start", "call.end", "call.transfer", "call.recording", "call.sentiment",
                  "call.analysis")
"""The events a webhook may subscribe to."""

DEFAULT_WEBHOOK_EVENTS = ("call.end", "call.analysis")
"""What a webhook that names no `events` receives (and what CALL_WEBHOOK_URL receives)."""


@dataclass(frozen=True)
class AnalysisField:
    """One thing to learn from a call: a JSON `type`, the values a string may take (`enum`,
    empty: any), and what it means, for the model (`description`)."""

    name: str
    type: FieldType
    enum: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Analysis:
    """A flow's post-call analysis: a short `summary` (when True) and typed `fields`, filled
    once the call has ended (null when the call did not tell)."""

    summary: bool = True
    fields: tuple[AnalysisField, ...] = ()


@dataclass(frozen=True)
class Webhook:
    """A business URL the flow's call events are posted to (signed), for the `events` named."""

    url: str
    events: tuple[str, ...] = DEFAULT_WEBHOOK_EVENTS


@dataclass(frozen=True)
class Limits:
    """The flow's bounds on one call, `None` meaning no bound.

    A call on a node that listens (the only nodes the graph draws a `limit` edge from) that has had
    more than `max_turns` caller turns (answers and silences), or is more than `max_seconds` past
    its start, takes that node's `limit` edge to `then`. The check runs on each answer, silence
    and resume (a hold coming back), so a call that never speaks is bounded too.
    """

    max_turns: int | None
    max_seconds: int | None
    then: str  # the node every `limit` edge leads to


@dataclass(frozen=True, kw_only=True)
class Node:
    """What every node of a flow has; only its subclasses, one per node type, are compiled.

    The class variables say what a node type is to the rest of the engine: `type` is its YAML
    `type:`, `speaks` the fields spoken to the caller (templates checked and warmed up as speech),
    `listens` whether it takes caller input (so `no_input` and `limit` edges leave it), and
    `terminal` whether it ends the call.
    """

    type: ClassVar[str] = ""
    speaks: ClassVar[tuple[str, ...]] = ()  # template fields that are spoken to the caller
    listens: ClassVar[bool] = False  # takes caller input, so no_input and limits apply
    terminal: ClassVar[bool] = False

    id: str  # its key under `nodes`
    personality: str | None = None  # speak as this personality on this node
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class SayNode(Node):
    """`say`: speaks `text`, pauses `pause` seconds, then leaves by `next` without waiting."""

    type: ClassVar[str] = "say"
    speaks: ClassVar[tuple[str, ...]] = ("text",)

    text: str
    pause: float = 0
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class GatherNode(Node):
    """`gather`: speaks `prompt` and listens for one answer (`input`, `hints`, `num_digits`).

    An answer leaves by the first of `routes` whose condition holds, else by `next`; silence
    for `timeout` seconds reprompts and then leaves by `no_input`; `limit` when the flow's
    limits are passed.
    """

    type: ClassVar[str] = "gather"
    speaks: ClassVar[tuple[str, ...]] = ("prompt",)
    listens: ClassVar[bool] = True

    prompt: str
    input: tuple[InputKind, ...] = ("speech",)
    hints: tuple[str, ...] = ()
    timeout: int = 5
    num_digits: int | None = None
    routes: tuple[Route, ...] = ()
    next: str | None = None
    no_input: NoInput | None = None


@dataclass(frozen=True, kw_only=True)
class AiNode(Node):
    """`ai`: a conversation with the model, answer by answer, guided by `instructions`.

    On entry it speaks `opening` (or asks the model for one) and listens. Each answer leaves by
    the first of `routes` whose condition holds, checked before any model call; otherwise the
    model replies and may take one of `exits`, offered to it as tools. It also leaves by
    `no_input`, `limit`, and the `on_error` strategy of each error kind (see `ErrorPolicy`).
    `conversation: relay` holds the conversation over ConversationRelay instead of `<Gather>`:
    the same edges, taken from inside a session (DESIGN.md section 8.1).
    """

    type: ClassVar[str] = "ai"
    speaks: ClassVar[tuple[str, ...]] = ("opening",)
    listens: ClassVar[bool] = True

    instructions: str = ""
    opening: str | None = None  # text to speak on entry, or "ai" for a generated greeting
    conversation: Conversation = "gather"
    input: tuple[InputKind, ...] = ("speech",)
    hints: tuple[str, ...] = ()
    timeout: int = 5
    routes: tuple[Route, ...] = ()
    exits: tuple[Exit, ...] = ()
    tools: tuple[Tool, ...] = ()
    no_input: NoInput | None = None
    on_error: Mapping[ErrorKind, ErrorPolicy] = field(default_factory=frozen_mapping)


@dataclass(frozen=True, kw_only=True)
class HttpNode(Node):
    """`http`: sends `request` and reads its JSON answer without listening (DESIGN.md 8.5).

    An answer leaves by `next` with each `save` JSONPath's value in `vars`; a request that
    fails (a timeout, a connection error, a status >= 400, an answer that is not JSON, a host
    HTTP_ALLOW_HOSTS refuses) is retried and then leaves by `on_error.http` (the `error:http`
    edge). `say_while_waiting` is spoken when the answer may come after the webhook has to
    answer Twilio; the call then comes back for it.
    """

    type: ClassVar[str] = "http"
    speaks: ClassVar[tuple[str, ...]] = ("say_while_waiting",)

    request: Request
    save: Mapping[str, str] = field(default_factory=frozen_mapping)
    say_while_waiting: str | None = None
    next: str | None = None
    on_error: Mapping[ErrorKind, ErrorPolicy] = field(default_factory=frozen_mapping)


@dataclass(frozen=True, kw_only=True)
class SwitchNode(Node):
    """`switch`: decides without listening, in the same step: the first of `routes` whose
    condition holds (over vars, the caller and the time), else `next`."""

    type: ClassVar[str] = "switch"

    routes: tuple[Route, ...] = ()
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class TransferNode(Node):
    """`transfer`: speaks `announce`, then dials `to` (a template) for `timeout` seconds.

    A dial that ends answered or completed leaves by `next`, or hangs up when there is none;
    busy, no answer, a failed dial, or a `to` that renders empty leaves by `on_fail` (the
    `transfer_failed` edge).
    """

    type: ClassVar[str] = "transfer"
    speaks: ClassVar[tuple[str, ...]] = ("announce",)

    to: str
    announce: str | None = None
    timeout: int = 30
    caller_id: str | None = None  # shown to the person called; None: the caller's number
    on_fail: str | None = None
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class RecordNode(Node):
    """`record`: speaks `prompt`, then records after a beep, and leaves by `next` once the
    recording is done (at `max_seconds`, or a key of `finish_on_key`)."""

    type: ClassVar[str] = "record"
    speaks: ClassVar[tuple[str, ...]] = ("prompt",)

    prompt: str | None = None
    max_seconds: int = 120
    finish_on_key: str = "#"
    transcribe: bool = False  # ask Twilio to transcribe the recording
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class HangupNode(Node):
    """`hangup`: speaks `text` and ends the call; no edge leaves it."""

    type: ClassVar[str] = "hangup"
    speaks: ClassVar[tuple[str, ...]] = ("text",)
    terminal: ClassVar[bool] = True

    text: str | None = None


NODE_TYPES: Mapping[str, type[Node]] = MappingProxyType({
    cls.type: cls for cls in (SayNode, GatherNode, AiNode, SwitchNode, TransferNode, RecordNode,
                              HangupNode, HttpNode)
})


EdgePart = Literal["retry", "personality", "voice", "then"]
"""The four edges one error policy can declare: three self-loops and its `then`."""


def edge_id(source: str, kind: EdgeKind, part: str | int | None = None) -> str:
    """The identity of an edge of the compiled graph; see `Edge`.

    The compiler names every edge with it and the interpreter finds the edge it takes with it,
    so both spell each identity in this one place.
    """
    return f"{source}/{kind}" if part is None else f"{source}/{kind}/{part}"


@dataclass(frozen=True)
class Edge:
    """One way out of a node.

    `strategy` marks the self-loops of the error strategy ("retry 3", "personality
    professional", "voice twilio"): the call stays on the node and tries again differently.

    `id` names the edge within its flow, built by `edge_id` from the source node, the kind and,
    where a node can have several edges of that kind, what tells them apart:

    - `assist/route/0`: the first of the node's `routes` (by index, as written);
    - `assist/exit/front_desk`: the exit to `front_desk` (exits are keyed by their target);
    - `assist/next`, `front_desk/transfer_failed`, `assist/no_input` (its `then`),
      `assist/limit` (the flow's `limits.then`, from a node that listens);
    - `assist/error:network/retry`, `.../personality`, `.../voice`: the error strategy's
      self-loops; `assist/error:network/then`: its edge to another node;
    - `greet/machine`: the flow's `on_machine`, drawn from its `start` node: an outbound call
      answered by a machine goes there from wherever it is (engine/runtime/step.py).

    Node ids cannot hold `/`, so no two edges of a flow share an id. An id depends only on the
    flow's text, not on the order of compilation, so it is the same every time a flow (or a
    stored snapshot of it) is compiled: the interpreter records it in each `call.node` event
    (`edge_id`), and coverage and the dashboard read it back.
    """

    source: str
    target: str
    kind: EdgeKind
    label: str = ""
    strategy: str | None = None
    id: str = field(kw_only=True)

    @property
    def is_error(self) -> bool:
        """True for the `error:*` kinds, the error strategy's edges (drawn dashed)."""
        return self.kind.startswith("error:")

    @property
    def key(self) -> str:
        """A readable name for coverage reports: `source -kind-> target`."""
        suffix = f" ({self.strategy})" if self.strategy else ""
        return f"{self.source} -{self.kind}-> {self.target}{suffix}"


@dataclass(frozen=True)
class Flow:
    """One compiled flow: its nodes with defaults applied, and every edge between them.

    `edges` is the only definition of the graph; the interpreter leaves a node only by one of
    them, found by id with `edge`.
    """

    id: str
    description: str
    personality: str
    language: str
    timezone: str
    numbers: tuple[str, ...]
    vars: Mapping[str, Any]
    limits: Limits | None
    start: str
    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    source: str = ""
    analysis: Analysis | None = None  # what to learn from each call once it ends
    webhooks: tuple[Webhook, ...] = ()  # where its call events are posted
    languages: tuple[str, ...] = ()  # every language it speaks, `language` first
    on_machine: str | None = None
    """Where an outbound call answered by a machine goes (the `machine` edge from `start`)."""
    texts: Mapping[str, Mapping[str, str]] = field(default_factory=frozen_mapping)
    """Each spoken text of a flow with `languages`, by its text in `language`: the text in
    every language (DESIGN.md 8.2)."""
    _edges_by_id: Mapping[str, Edge] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once with the flow, so each move of a call looks its edge up in O(1).
        by_id = {edge.id: edge for edge in self.edges}
        if len(by_id) != len(self.edges):
            counts = Counter(edge.id for edge in self.edges)
            repeated = sorted(name for name, count in counts.items() if count > 1)
            raise ValueError(f"flow {self.id!r}: edge ids are not unique: {', '.join(repeated)}")
        object.__setattr__(self, "_edges_by_id", frozen_mapping(by_id))

    def spoken_languages(self) -> tuple[str, ...]:
        """The languages a call on this flow may speak, the default (`language`) first."""
        return self.languages or (self.language,)

    def text_in(self, text: str, language: str) -> str:
        """`text` (a node's text, in the flow's `language`) in `language`: its translation
        when the flow has one, else `text` itself."""
        return self.texts.get(text, {}).get(language, text)

    def edge(self, edge_id: str) -> Edge | None:
        """The edge with this id, if the flow has it."""
        return self._edges_by_id.get(edge_id)

    def edges_from(self, node_id: str) -> tuple[Edge, ...]:
        """The edges leaving `node_id`, in the flow's edge order; empty for an unknown node."""
        return tuple(edge for edge in self.edges if edge.source == node_id)

    def personalities_used(self) -> tuple[str, ...]:
        """Every personality a call on this flow may speak as, each once: the flow's own first,
        then, node by node, those a node sets and its error strategy falls back to. The names
        are as written, not checked to exist."""
        names = [self.personality]
        for node in self.nodes.values():
            if node.personality:
                names.append(node.personality)
            if isinstance(node, AiNode):
                names += [p.personality for p in node.on_error.values() if p.personality]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class OpenAIVoice:
    """An OpenAI speech voice: the speech `model` and `voice` to synthesise with, and
    `instructions` on how to speak (tone, pace)."""

    model: str = "gpt-4o-mini-tts"
    voice: str = "alloy"
    instructions: str = ""


@dataclass(frozen=True)
class RelayVoice:
    """The voice ConversationRelay speaks with: its `provider` (ttsProvider) and `voice`."""

    provider: Literal["ElevenLabs", "Google", "Amazon"]
    voice: str


@dataclass(frozen=True)
class Voice:
    """A personality's voices: `openai` speech when it is configured, else the Twilio `<Say>`
    voice `twilio`, which is also what speech falls back to when synthesis fails; `relay` for
    ConversationRelay (None: derived from `twilio`).

    Each may also be given per language (`by_language`: language -> `Voice` of that language's
    voices); `for_language` picks them, falling back to these for what a language lacks.
    """

    twilio: str
    openai: OpenAIVoice | None = None
    relay: RelayVoice | None = None
    by_language: Mapping[str, Voice] = field(default_factory=frozen_mapping)

    def for_language(self, language: str) -> Voice:
        """The voices for `language`: its own where given, these defaults otherwise."""
        own = self.by_language.get(language)
        if own is None:
            return self
        return Voice(twilio=own.twilio or self.twilio, openai=own.openai or self.openai,
                     relay=own.relay or self.relay)

    def gives(self, language: str, engine: str) -> bool:
        """Whether `engine`'s voice (twilio, openai, relay) is given for `language` itself."""
        own = self.by_language.get(language)
        return own is not None and bool(getattr(own, engine))


@dataclass(frozen=True)
class Example:
    """A sample exchange: what a caller says (`input`) and how the personality answers; shown to
    the model, and what the offline responder answers from."""

    input: str
    response: str


@dataclass(frozen=True)
class Style:
    """How a personality's replies are shaped: `max_sentences` is asked of the model, and a
    longer reply is cut to it (keeping one more sentence if that is a question); the model
    samples at `temperature`."""

    max_sentences: int = 2
    temperature: float = 0.7


@dataclass(frozen=True)
class Personality:
    """One compiled personality: who answers, how they sound, and how the model is prompted.

    `system_prompt` is a Jinja2 template over the flow's vars. Flows refer to a personality by
    `id` (the file name); a flow's version covers the documents of every personality it uses.
    """

    id: str
    name: str  # display name
    description: str
    traits: tuple[str, ...]
    system_prompt: str
    style: Style
    voice: Voice
    examples: tuple[Example, ...]
    model: str | None = None  # chat model for this personality; None: the server's default
    fallback: str | None = None  # another personality's id, checked to exist
    source: str = ""  # the file it was compiled from, for messages
    # A blended personality's parts (id -> weight, heaviest first; DESIGN.md 8.3): what it was
    # compiled from, shown beside it. Empty for one written out in full.
    blend: Mapping[str, float] = field(default_factory=frozen_mapping)


@dataclass(frozen=True)
class Registry:
    """Every flow and personality of one loaded set, with a version per flow.

    A flow's version hashes its compiled form and the personalities it can use, so a call can
    record exactly what it started on and finish on it after a reload.
    """

    flows: Mapping[str, Flow]
    personalities: Mapping[str, Personality]
    versions: Mapping[str, str]
    snapshots: Mapping[str, Mapping[str, Any]] = field(default_factory=frozen_mapping)
    """Per flow: the documents its version hashes, enough to compile it again anywhere."""

    def flow_for_number(self, number: str) -> Flow | None:
        """The flow whose `numbers` lists `number` (compared as written), or None. A loaded set
        never has two flows claiming one number: validation refuses it."""
        for flow in self.flows.values():
            if number in flow.numbers:
                return flow
        return None
