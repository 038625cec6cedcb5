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

ErrorKind = Literal["network", "rate_limit", "ai_failure", "tts_failure"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("network", "rate_limit", "ai_failure", "tts_failure")

EdgeKind = Literal[
    "next", "route", "exit", "no_input", "error:network", "error:rate_limit",
    "error:ai_failure", "error:tts_failure", "transfer_failed", "limit",
]
EDGE_KINDS: tuple[EdgeKind, ...] = (
    "next", "route", "exit", "no_input", "error:network", "error:rate_limit",
    "error:ai_failure", "error:tts_failure", "transfer_failed", "limit",
)

InputKind = Literal["speech", "dtmf"]


def frozen_mapping(values: Mapping[K, V] | None = None) -> Mapping[K, V]:
    """A read-only view, so a compiled flow cannot be changed by the code that runs it."""
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class Route:
    """`when:` is a sandboxed Jinja2 expression; the first route that holds is taken."""

    when: str
    to: str


@dataclass(frozen=True)
class Exit:
    """An edge the model may take, offered to it as a tool named after the target node."""

    to: str
    description: str


@dataclass(frozen=True)
class NoInput:
    retries: int
    reprompt: tuple[str, ...]
    then: str


@dataclass(frozen=True)
class ErrorPolicy:
    """What to do when a model or speech call fails in one way (`kind`)."""

    kind: ErrorKind
    retry: int = 0
    personality: str | None = None
    voice: str | None = None
    then: str | None = None


@dataclass(frozen=True)
class Limits:
    max_turns: int | None
    max_seconds: int | None
    then: str


@dataclass(frozen=True, kw_only=True)
class Node:
    type: ClassVar[str] = ""
    speaks: ClassVar[tuple[str, ...]] = ()  # template fields that are spoken to the caller
    listens: ClassVar[bool] = False  # takes caller input, so no_input and limits apply
    terminal: ClassVar[bool] = False

    id: str
    personality: str | None = None
    description: str = ""


@dataclass(frozen=True, kw_only=True)
class SayNode(Node):
    type: ClassVar[str] = "say"
    speaks: ClassVar[tuple[str, ...]] = ("text",)

    text: str
    pause: float = 0
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class GatherNode(Node):
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
    type: ClassVar[str] = "ai"
    speaks: ClassVar[tuple[str, ...]] = ("opening",)
    listens: ClassVar[bool] = True

    instructions: str = ""
    opening: str | None = None  # text to speak on entry, or "ai" for a generated greeting
    input: tuple[InputKind, ...] = ("speech",)
    hints: tuple[str, ...] = ()
    timeout: int = 5
    routes: tuple[Route, ...] = ()
    exits: tuple[Exit, ...] = ()
    no_input: NoInput | None = None
    on_error: Mapping[ErrorKind, ErrorPolicy] = field(default_factory=frozen_mapping)


@dataclass(frozen=True, kw_only=True)
class SwitchNode(Node):
    type: ClassVar[str] = "switch"

    routes: tuple[Route, ...] = ()
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class TransferNode(Node):
    type: ClassVar[str] = "transfer"
    speaks: ClassVar[tuple[str, ...]] = ("announce",)

    to: str
    announce: str | None = None
    timeout: int = 30
    caller_id: str | None = None
    on_fail: str | None = None
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class RecordNode(Node):
    type: ClassVar[str] = "record"
    speaks: ClassVar[tuple[str, ...]] = ("prompt",)

    prompt: str | None = None
    max_seconds: int = 120
    finish_on_key: str = "#"
    transcribe: bool = False
    next: str | None = None


@dataclass(frozen=True, kw_only=True)
class HangupNode(Node):
    type: ClassVar[str] = "hangup"
    speaks: ClassVar[tuple[str, ...]] = ("text",)
    terminal: ClassVar[bool] = True

    text: str | None = None


NODE_TYPES: Mapping[str, type[Node]] = MappingProxyType({
    cls.type: cls for cls in (SayNode, GatherNode, AiNode, SwitchNode, TransferNode, RecordNode,
                              HangupNode)
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
      self-loops; `assist/error:network/then`: its edge to another node.

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
    _edges_by_id: Mapping[str, Edge] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once with the flow, so each move of a call looks its edge up in O(1).
        by_id = {edge.id: edge for edge in self.edges}
        if len(by_id) != len(self.edges):
            counts = Counter(edge.id for edge in self.edges)
            repeated = sorted(name for name, count in counts.items() if count > 1)
            raise ValueError(f"flow {self.id!r}: edge ids are not unique: {', '.join(repeated)}")
        object.__setattr__(self, "_edges_by_id", frozen_mapping(by_id))

    def edge(self, edge_id: str) -> Edge | None:
        """The edge with this id, if the flow has it."""
        return self._edges_by_id.get(edge_id)

    def edges_from(self, node_id: str) -> tuple[Edge, ...]:
        return tuple(edge for edge in self.edges if edge.source == node_id)

    def personalities_used(self) -> tuple[str, ...]:
        names = [self.personality]
        for node in self.nodes.values():
            if node.personality:
                names.append(node.personality)
            if isinstance(node, AiNode):
                names += [p.personality for p in node.on_error.values() if p.personality]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class OpenAIVoice:
    model: str = "gpt-4o-mini-tts"
    voice: str = "alloy"
    instructions: str = ""


@dataclass(frozen=True)
class Voice:
    twilio: str
    openai: OpenAIVoice | None = None


@dataclass(frozen=True)
class Example:
    input: str
    response: str


@dataclass(frozen=True)
class Style:
    max_sentences: int = 2
    temperature: float = 0.7


@dataclass(frozen=True)
class Personality:
    id: str
    name: str
    description: str
    traits: tuple[str, ...]
    system_prompt: str
    style: Style
    voice: Voice
    examples: tuple[Example, ...]
    model: str | None = None
    fallback: str | None = None
    source: str = ""


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
        for flow in self.flows.values():
            if number in flow.numbers:
                return flow
        return None
