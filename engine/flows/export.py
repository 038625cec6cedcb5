"""Draw a compiled flow: Mermaid and DOT renderers, and a JSON form, over the flow's edges.

The compiled `Flow` is the neutral graph; this module only decides how each node and edge is
shown. Every edge is labelled by its kind plus a short detail (the route condition, the exit
name, the error strategy), error edges are dashed, and the error strategy's retries, fallback
personality and Twilio voice are self-loops. Labels are escaped for each language, because
conditions hold quotes, `|`, `<`, `&` and `{{ }}`. An `ai` node that converses over
ConversationRelay is marked as one (`ai · relay`, and `conversation` in the JSON form); an
`http` node shows its method (`http · GET`, and `request` with the method and URL as written in
the JSON form), and its `error:http` edges are drawn as every error strategy's are. A flow's
languages are shown at its start (`languages` in the JSON form), and a route that switches
language says so after its condition (`→ es-US`, and `language` in the JSON form).

What is drawn is `drawn_edges(flow)`: every edge between two nodes as it is, and all the
self-loops of a node as one edge whose label has a line for each (Mermaid keeps only one
self-loop of a node, mermaid-js/mermaid issue 6888, and Graphviz stacks their labels on each
other). Details are wrapped at `DETAIL_WIDTH` characters a line, never cut.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.flows.model import AiNode, Edge, Flow, HttpNode, Node, Personality

FORMATS = ("mermaid", "dot", "json")
DETAIL_WIDTH = 40
LOOP_WIDTH = 50  # a self-loop's line holds its kind too

# Mermaid entity codes, so a quoted label can hold anything: `#quot;` is `"` and so on.
_MERMAID_ESCAPES = str.maketrans({
    '"': "#quot;", "#": "#35;", "&": "#amp;", "<": "#lt;", ">": "#gt;", "|": "#124;",
    "`": "#96;",
})
_DOT_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "&": "&amp;", "\n": "\\n"})


def shorten(text: str, width: int = DETAIL_WIDTH) -> str:
    """One line of at most `width` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def edge_detail(edge: Edge) -> str:
    """What an edge says besides its kind, in full: the condition, exit name or strategy."""
    if edge.strategy:
        name, _, value = edge.strategy.partition(" ")
        return {"retry": f"retry ×{value}", "voice": f"voice: {value}"}.get(name, edge.strategy)
    if edge.kind == "exit":
        return edge.target  # the model sees the exit as a tool named after its target
    return edge.label


def wrap(text: str, width: int = DETAIL_WIDTH) -> list[str]:
    """`text` in lines of at most `width` characters, broken between words where it can; all
    of it, nothing cut."""
    return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


@dataclass(frozen=True)
class DrawnEdge:
    """One arrow of a drawing: the flow's edge, or all the self-loops of a node together."""

    source: str
    target: str
    dashed: bool
    lines: tuple[str, ...]  # the label, one line each
    edges: tuple[Edge, ...]  # the flow's edges it stands for


def route_language(flow: Flow, edge: Edge) -> str | None:
    """The language a route edge switches the call to, if it does."""
    if edge.kind != "route":
        return None
    routes = getattr(flow.nodes.get(edge.source), "routes", ())
    index = int(edge.id.rsplit("/", 1)[-1])
    return routes[index].language if index < len(routes) else None


def _detail(flow: Flow, edge: Edge) -> str:
    language = route_language(flow, edge)
    return f"{edge_detail(edge)} → {language}" if language else edge_detail(edge)


def _edge_lines(flow: Flow, edge: Edge) -> list[str]:
    return [edge.kind, *wrap(_detail(flow, edge))]


def _loop_line(flow: Flow, edge: Edge) -> str:
    detail = " ".join(_detail(flow, edge).split())
    return f"{edge.kind} ({detail})" if detail else edge.kind


def drawn_edges(flow: Flow) -> list[DrawnEdge]:
    """The arrows to draw, in the order of `flow.edges`; a node's self-loops become one arrow
    at its first loop, labelled with each loop on a line (`error:network (retry ×3)`), dashed
    when they are all error edges."""
    loops: dict[str, list[Edge]] = {}
    for edge in flow.edges:
        if edge.source == edge.target:
            loops.setdefault(edge.source, []).append(edge)
    drawn: list[DrawnEdge] = []
    for edge in flow.edges:
        if edge.source != edge.target:
            drawn.append(DrawnEdge(edge.source, edge.target, edge.is_error,
                                   tuple(_edge_lines(flow, edge)), (edge,)))
            continue
        together = loops[edge.source]
        if edge is not together[0]:
            continue
        lines = _edge_lines(flow, edge) if len(together) == 1 else \
            [line for loop in together for line in wrap(_loop_line(flow, loop), LOOP_WIDTH)]
        drawn.append(DrawnEdge(edge.source, edge.target,
                               all(loop.is_error for loop in together), tuple(lines),
                               tuple(together)))
    return drawn


def _mermaid(text: str) -> str:
    return text.translate(_MERMAID_ESCAPES)


def _dot(text: str) -> str:
    return '"' + text.translate(_DOT_ESCAPES) + '"'


def is_relay(node: Node) -> bool:
    """True for an ai node that converses over ConversationRelay."""
    return isinstance(node, AiNode) and node.conversation == "relay"


def node_kind(node: Node) -> str:
    """What a node is drawn as under its id: its type, `ai · relay` for a relay node,
    `http · GET` for an http node."""
    if isinstance(node, HttpNode):
        return f"{node.type} · {node.request.method}"
    return f"{node.type} · relay" if is_relay(node) else node.type


def _mermaid_node(node: Node) -> str:
    label = f'"{_mermaid(node.id)}<br/>{_mermaid(node_kind(node))}"'
    if node.terminal:
        return f"    n_{node.id}([{label}]):::terminal"
    if is_relay(node):
        return f"    n_{node.id}[{label}]:::relay"
    return f"    n_{node.id}[{label}]"


def to_mermaid(flow: Flow) -> str:
    """A Mermaid flowchart; node ids are prefixed `n_` so `end` or `graph` cannot clash."""
    start = f'(("{_mermaid(" · ".join(flow.languages))}"))' if flow.languages else "(( ))"
    lines = ["flowchart TD", f"    flow_start{start}:::start", f"    flow_start --> n_{flow.start}"]
    lines += [_mermaid_node(node) for node in flow.nodes.values()]
    for edge in drawn_edges(flow):
        label = "<br/>".join(_mermaid(line) for line in edge.lines)
        arrow = "-.->" if edge.dashed else "-->"
        lines.append(f'    n_{edge.source} {arrow}|"{label}"| n_{edge.target}')
    lines += ["    classDef start fill:#333,stroke:#333",
              "    classDef terminal stroke-width:3px"]
    if any(is_relay(node) for node in flow.nodes.values()):
        lines.append("    classDef relay stroke-dasharray:4 2")
    return "\n".join(lines) + "\n"


def mermaid_block(flow: Flow) -> str:
    """The Mermaid chart as a fenced block, for a README."""
    return f"```mermaid\n{to_mermaid(flow)}```\n"


def to_dot(flow: Flow) -> str:
    """A Graphviz digraph: `dot -Tsvg` draws it."""
    lines = [f"digraph {_dot(flow.id)} {{",
             "    node [shape=box, style=rounded, fontname=Helvetica];",
             "    edge [fontname=Helvetica, fontsize=10];",
             "    forcelabels=true;  # a self-loop's xlabel is placed clear of the other edges",
             *([f"    label={_dot('languages: ' + ', '.join(flow.languages))}; labelloc=t;"]
               if flow.languages else []),
             '    "__start__" [shape=point, width=0.15, label=""];',
             f'    "__start__" -> {_dot(flow.start)};']
    for node in flow.nodes.values():
        shape = ", shape=doublecircle" if node.terminal else ""
        if is_relay(node):
            shape = ', style="rounded,dashed"'
        label = _dot(f"{node.id}\n{node_kind(node)}")
        lines.append(f"    {_dot(node.id)} [label={label}{shape}];")
    for edge in drawn_edges(flow):
        style = ", style=dashed" if edge.dashed else ""
        label = _dot("\n".join(edge.lines))
        # A loop's `label` sits where the node's other edges leave it; an `xlabel` is placed
        # after the layout, where it overlaps nothing.
        attribute = "xlabel" if edge.source == edge.target else "label"
        lines.append(f"    {_dot(edge.source)} -> {_dot(edge.target)} "
                     f"[{attribute}={label}{style}];")
    return "\n".join([*lines, "}"]) + "\n"


def _personalities(flow: Flow, known: Mapping[str, Personality]) -> list[dict[str, Any]]:
    return [{"id": found.id, "name": found.name, "blend": dict(found.blend)}
            for name in flow.personalities_used() if (found := known.get(name)) is not None]


def to_json(flow: Flow, personalities: Mapping[str, Personality] | None = None
            ) -> dict[str, Any]:
    """Nodes and edges as plain data; `label` is the edge's detail in full, `id` the edge's
    identity, which the `edge_id` of a call's `call.node` events names. Given the loaded
    `personalities`, also those the flow speaks as, each with its `blend` (empty unless
    blended)."""
    return {
        "flow": flow.id,
        "start": flow.start,
        "languages": list(flow.spoken_languages()),
        **({"personalities": _personalities(flow, personalities)}
           if personalities is not None else {}),
        "nodes": [{"id": node.id, "type": node.type, "terminal": node.terminal,
                   "description": node.description,
                   **({"conversation": node.conversation} if isinstance(node, AiNode) else {}),
                   **({"request": {"method": node.request.method, "url": node.request.url}}
                      if isinstance(node, HttpNode) else {})}
                  for node in flow.nodes.values()],
        "edges": [{"id": edge.id, "source": edge.source, "target": edge.target, "kind": edge.kind,
                   "label": edge_detail(edge), "strategy": edge.strategy,
                   "dashed": edge.is_error,
                   **({"language": language} if (language := route_language(flow, edge))
                      else {})} for edge in flow.edges],
    }


def render(flow: Flow, fmt: str, personalities: Mapping[str, Personality] | None = None) -> str:
    """The flow in one of `FORMATS` (the JSON form lists `personalities` when given)."""
    if fmt == "mermaid":
        return to_mermaid(flow)
    if fmt == "dot":
        return to_dot(flow)
    if fmt == "json":
        return json.dumps(to_json(flow, personalities), indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
