"""Compile schema-valid flow and personality documents into frozen dataclasses.

The compiler trusts the schema for shapes and types; it applies `defaults`, turns every way out
of a node into a typed `Edge` named by `model.edge_id`, and remembers which key declared each
edge so graph checks can point at it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.flows.languages import flow_languages, is_language, plain_texts
from engine.flows.model import (
    DEFAULT_WEBHOOK_EVENTS,
    ERROR_KINDS,
    HTTP_ERROR_KINDS,
    NODE_TYPES,
    AiNode,
    Analysis,
    AnalysisField,
    Edge,
    EdgeKind,
    ErrorKind,
    ErrorPolicy,
    Example,
    Exit,
    Flow,
    HttpNode,
    Limits,
    Node,
    NoInput,
    OpenAIVoice,
    Personality,
    RelayVoice,
    Request,
    Route,
    Style,
    Tool,
    TransferNode,
    Voice,
    Webhook,
    edge_id,
    frozen_mapping,
)
from engine.flows.yamlread import KeyPath

DEFAULT_LANGUAGE = "en-US"
DEFAULT_TIMEZONE = "UTC"

FLOW_KEYS = frozenset({"flow", "description", "personality", "language", "languages", "timezone",
                       "numbers", "vars", "limits", "defaults", "start", "nodes", "analysis",
                       "webhooks", "on_machine"})
"""The top-level keys `compile_flow` reads (a node's keys: `node_keys`)."""

PERSONALITY_KEYS = frozenset({"personality", "name", "description", "traits", "system_prompt",
                              "style", "model", "voice", "examples", "fallback"})
"""The top-level keys `compile_personality` reads."""

INHERITED = ("no_input", "on_error", "conversation")
"""The node keys `defaults` gives every node of a type that has the key and does not set it."""

EDITOR_KEYS = frozenset({"$schema"})
"""Top-level keys the schemas also allow, for editors only; the compiler ignores them."""


@dataclass(frozen=True)
class CompiledFlow:
    """What `compile_flow` gives: the `Flow`, and for each of its edges the key of the document
    that declared it (`nodes.<id>...`, or under `defaults` or `limits` for an inherited edge), so
    a graph check can point at the line to change."""

    flow: Flow
    edge_paths: Mapping[Edge, KeyPath]  # the key that declared each edge, for messages


def _routes(raw: list[dict[str, str]] | None) -> tuple[Route, ...]:
    return tuple(Route(when=item["when"], to=item["to"], language=item.get("language"))
                 for item in raw or ())


def _no_input(raw: dict[str, Any]) -> NoInput:
    reprompt = raw.get("reprompt", ())
    reprompts = (reprompt,) if isinstance(reprompt, str) else tuple(reprompt)
    return NoInput(retries=raw["retries"], reprompt=reprompts, then=raw["then"])


def _on_error(raw: Mapping[str, dict[str, Any]], kinds: tuple[ErrorKind, ...]
              ) -> Mapping[str, ErrorPolicy]:
    # `defaults.on_error` may hold the kinds of every node type; a node keeps its own type's.
    return frozen_mapping({
        kind: ErrorPolicy(kind=kind, retry=raw[kind].get("retry", 0),
                          personality=raw[kind].get("personality"),
                          voice=raw[kind].get("voice"), then=raw[kind].get("then"))
        for kind in kinds if kind in raw
    })


def error_kinds(cls: type[Node]) -> tuple[ErrorKind, ...]:
    """The error kinds a node type's `on_error` strategy covers."""
    return HTTP_ERROR_KINDS if cls is HttpNode else ERROR_KINDS


def _request(raw: Mapping[str, Any]) -> Request:
    return Request(url=raw["url"], method=raw.get("method", "GET").upper(),
                   headers=frozen_mapping(raw.get("headers", {})), body=raw.get("body"),
                   timeout=float(raw.get("timeout", 5.0)))


def _tools(raw: Mapping[str, Mapping[str, Any]]) -> tuple[Tool, ...]:
    return tuple(Tool(name=name, description=spec["description"],
                      request=_request(spec["request"]),
                      parameters=frozen_mapping(spec.get("parameters", {})),
                      optional=tuple(spec.get("optional", ())))
                 for name, spec in raw.items())


def node_keys(cls: type[Node]) -> set[str]:
    """The YAML keys a node type reads: its dataclass fields, plus `type`, minus `id`."""
    return {f.name for f in dataclasses.fields(cls)} - {"id"} | {"type"}


def _node(node_id: str, raw: dict[str, Any], defaults: dict[str, Any],
          origins: dict[str, KeyPath]) -> Node:
    cls = NODE_TYPES[raw["type"]]
    base: KeyPath = ("nodes", node_id)
    values: dict[str, Any] = {"id": node_id}
    for spec in dataclasses.fields(cls):
        name = spec.name
        if name == "id":
            continue
        inherited = name in INHERITED and name not in raw and name in defaults
        if name not in raw and not inherited:
            continue
        value = defaults[name] if inherited else raw[name]
        origins[name] = ("defaults", name) if inherited else (*base, name)
        if name == "routes":
            value = _routes(value)
        elif name == "exits":
            value = tuple(Exit(to=target, description=text) for target, text in value.items())
        elif name == "no_input":
            value = _no_input(value)
        elif name == "on_error":
            if not inherited and "on_error" in defaults:
                # A node's own strategy replaces the default one kind at a time.
                origins.update({f"on_error.{kind}": ("defaults", "on_error", kind)
                                for kind in defaults["on_error"] if kind not in value})
                value = {**defaults["on_error"], **value}
            value = _on_error(value, error_kinds(cls))
        elif name == "request":
            value = _request(value)
        elif name == "save":
            value = frozen_mapping(value)
        elif name == "tools":
            value = _tools(value)
        elif name in ("input", "hints"):
            value = tuple(value)
        values[name] = value
    node: Node = cls(**values)
    return node


def _edges(node: Node, origins: dict[str, KeyPath], limits: Limits | None
           ) -> list[tuple[Edge, KeyPath]]:
    found: list[tuple[Edge, KeyPath]] = []
    base: KeyPath = ("nodes", node.id)

    def add(target: str | None, kind: EdgeKind, path: KeyPath, label: str = "",
            strategy: str | None = None, part: str | int | None = None) -> None:
        if target:
            found.append((Edge(node.id, target, kind, label, strategy,
                               id=edge_id(node.id, kind, part)), path))

    for index, route in enumerate(getattr(node, "routes", ())):
        add(route.to, "route", (*base, "routes", index, "to"), route.when, part=index)
    if isinstance(node, AiNode):
        for exit_ in node.exits:
            add(exit_.to, "exit", (*base, "exits", exit_.to), exit_.description, part=exit_.to)
    add(getattr(node, "next", None), "next", (*base, "next"))
    if isinstance(node, TransferNode):
        add(node.on_fail, "transfer_failed", (*base, "on_fail"))
    no_input = getattr(node, "no_input", None)
    if no_input is not None:
        add(no_input.then, "no_input", (*origins["no_input"], "then"),
            f"after {no_input.retries} retries" if no_input.retries else "")
    if isinstance(node, AiNode | HttpNode):
        for kind, policy in node.on_error.items():
            origin = origins.get(f"on_error.{kind}", (*origins["on_error"], kind))
            edge_kind: EdgeKind = f"error:{kind}"  # type: ignore[assignment]
            if policy.retry:
                add(node.id, edge_kind, (*origin, "retry"), f"retry ×{policy.retry}",
                    f"retry {policy.retry}", "retry")
            if policy.personality:
                add(node.id, edge_kind, (*origin, "personality"), policy.personality,
                    f"personality {policy.personality}", "personality")
            if policy.voice:
                add(node.id, edge_kind, (*origin, "voice"), f"voice: {policy.voice}",
                    f"voice {policy.voice}", "voice")
            add(policy.then, edge_kind, (*origin, "then"), part="then")
    if limits is not None and node.listens:
        add(limits.then, "limit", ("limits", "then"))
    return found


def _analysis(raw: Mapping[str, Any] | None) -> Analysis | None:
    if raw is None:
        return None
    return Analysis(summary=bool(raw.get("summary", True)), fields=tuple(
        AnalysisField(name=name, type=spec["type"], enum=tuple(spec.get("enum", ())),
                      description=spec.get("description", ""))
        for name, spec in raw.get("fields", {}).items()))


def compile_flow(data: dict[str, Any], source: str = "") -> CompiledFlow:
    """Compile one flow document that passed the flow schema (`source`: its file, for messages).

    Shapes are not checked again: a document the schema refuses may raise anything. Applies
    `defaults` (`no_input` and `conversation` unless the node sets its own, `on_error` one kind
    at a time), and turns every way out of every node into an `Edge`, keeping one of routes
    repeated word for word.
    The graph itself (targets, reachability, templates) is left to `checks`. Text maps of a
    flow with `languages` keep their first language's text on the node and the map in
    `Flow.texts`; whether each has every language is `language_checks`' to say.
    """
    languages = flow_languages(data, DEFAULT_LANGUAGE)
    plain, texts = plain_texts(data, DEFAULT_LANGUAGE)  # nodes and defaults, texts plain
    defaults = plain.get("defaults", {})
    raw_limits = data.get("limits")
    limits = (Limits(max_turns=raw_limits.get("max_turns"),
                     max_seconds=raw_limits.get("max_seconds"), then=raw_limits["then"])
              if raw_limits else None)
    nodes: dict[str, Node] = {}
    edge_paths: dict[Edge, KeyPath] = {}
    edges: list[Edge] = []
    drawn: set[tuple[str, str, str, str, str | None]] = set()
    for node_id, raw in plain["nodes"].items():
        origins: dict[str, KeyPath] = {}
        node = _node(node_id, raw, defaults, origins)
        nodes[node_id] = node
        for edge, path in _edges(node, origins, limits):
            # A route repeated word for word can never be taken (the first one always holds
            # first): the graph keeps one edge for it, so coverage does not ask for the other.
            way = (edge.source, edge.target, edge.kind, edge.label, edge.strategy)
            if way not in drawn:
                drawn.add(way)
                edges.append(edge)
                edge_paths[edge] = path
    on_machine = data.get("on_machine")
    if on_machine:
        # A machine may answer before the call reaches any node, or while it is on any: the
        # graph draws the one way there from the node every call starts on.
        machine = Edge(data["start"], on_machine, "machine", "answered by a machine",
                       id=edge_id(data["start"], "machine"))
        edges.append(machine)
        edge_paths[machine] = ("on_machine",)
    flow = Flow(
        id=data["flow"], description=data.get("description", ""),
        personality=data["personality"], language=languages[0],
        timezone=data.get("timezone", DEFAULT_TIMEZONE), numbers=tuple(data.get("numbers", ())),
        vars=frozen_mapping(data.get("vars", {})), limits=limits, start=data["start"],
        nodes=frozen_mapping(nodes), edges=tuple(edges), source=source,
        analysis=_analysis(data.get("analysis")),
        webhooks=tuple(Webhook(url=raw["url"],
                               events=tuple(raw.get("events", DEFAULT_WEBHOOK_EVENTS)))
                       for raw in data.get("webhooks", ())),
        languages=languages if "languages" in data else (),
        on_machine=on_machine or None,
        texts=frozen_mapping({text: frozen_mapping(by_language)
                              for text, by_language in texts.items()}),
    )
    return CompiledFlow(flow, frozen_mapping(edge_paths))


def compile_personality(data: dict[str, Any], source: str = "") -> Personality:
    """Compile one personality document that passed the personality schema (`source`: its
    file). Unset `style` and OpenAI voice fields take the dataclasses' defaults; whether
    `fallback` names a known personality is the loader's check."""
    return Personality(
        id=data["personality"], name=data["name"], description=data.get("description", ""),
        traits=tuple(data.get("traits", ())), system_prompt=data["system_prompt"],
        style=Style(**data.get("style", {})),
        voice=compile_voice(data["voice"]),
        examples=tuple(Example(**example) for example in data["examples"]),
        model=data.get("model"), fallback=data.get("fallback"), source=source,
    )


def _per_language(raw: Any) -> dict[str, Any]:
    # A voice given per language is a map of language tags to voices; one voice has no tags.
    if isinstance(raw, str) or raw is None:
        return {}
    if isinstance(raw, Mapping) and raw and all(is_language(key) for key in raw):
        return dict(raw)
    return {}


def compile_voice(raw: Mapping[str, Any]) -> Voice:
    """A personality's `voice`: `twilio` a voice or a map of language to voice (its first the
    default), `openai` and `relay` likewise (a map's first entry is the default)."""
    twilio, openai, relay = (raw.get(name) for name in ("twilio", "openai", "relay"))
    maps = {name: _per_language(value) for name, value in
            (("twilio", twilio), ("openai", openai), ("relay", relay))}
    default_twilio = next(iter(maps["twilio"].values()), "") if maps["twilio"] else twilio
    default_openai = next(iter(maps["openai"].values())) if maps["openai"] else openai
    default_relay = next(iter(maps["relay"].values())) if maps["relay"] else relay
    languages = dict.fromkeys([*maps["twilio"], *maps["openai"], *maps["relay"]])
    return Voice(
        twilio=str(default_twilio or ""),
        openai=OpenAIVoice(**default_openai) if default_openai else None,
        relay=RelayVoice(**default_relay) if default_relay else None,
        by_language=frozen_mapping({language: Voice(
            twilio=maps["twilio"].get(language, ""),
            openai=OpenAIVoice(**maps["openai"][language]) if language in maps["openai"]
            else None,
            relay=RelayVoice(**maps["relay"][language]) if language in maps["relay"] else None,
        ) for language in languages}),
    )
