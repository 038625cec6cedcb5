"""Edge coverage: which edges of a flow calls took, from their `call.node` events.

The interpreter leaves a node only by an edge of the compiled graph and records it as a
`call.node` event carrying that edge's `edge_id`, so the id names the one `Edge` of `flow.edges`
the call took. An event without an id the flow knows is kept apart as unmapped: a move the graph
does not draw (the server-wide ceiling's goodbye, `by: server`), or an event of another version
of the flow, which is worth a look.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.flows.export import shorten
from engine.flows.model import Edge, Flow


def edge_taken(flow: Flow, data: Mapping[str, Any]) -> Edge | None:
    """The edge of `flow` a `call.node` event's data names by its `edge_id`, if the flow has it."""
    taken = data.get("edge_id")
    return flow.edge(taken) if isinstance(taken, str) else None


def describe_event(data: Mapping[str, Any]) -> str:
    """`source -kind-> node (strategy)`, as `Edge.key` writes edges, and the id it gave."""
    strategy = f" ({data['strategy']})" if data.get("strategy") else ""
    when = f" [when {data['when']}]" if data.get("when") else ""
    named = f" [edge_id {data['edge_id']}]" if data.get("edge_id") else ""
    return (f"{data.get('source')} -{data.get('edge')}-> {data.get('node')}"
            f"{strategy}{when}{named}")


@dataclass
class Coverage:
    """The edge coverage of one flow, summed over the calls `add` is given: how often each edge
    of `flow.edges` was taken, and, apart, the moves that name no edge of it (by `describe_event`).
    """

    flow: Flow
    taken: Counter[Edge] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)  # described moves -> times seen

    def add(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Count the edges named by the data of `call.node` events. Pass only those: data
        without an `edge_id` of the flow, another event's included, is counted as unmapped."""
        for data in events:
            edge = edge_taken(self.flow, data)
            if edge is None:
                self.unmapped[describe_event(data)] += 1
            else:
                self.taken[edge] += 1

    @property
    def never(self) -> list[Edge]:
        """The flow's edges not taken yet, in the flow's edge order."""
        return [edge for edge in self.flow.edges if edge not in self.taken]

    @property
    def percent(self) -> float:
        """Share of the flow's edges taken at least once; a flow without edges is covered."""
        total = len(self.flow.edges)
        return 100.0 if total == 0 else 100.0 * (total - len(self.never)) / total

    def report(self) -> list[str]:
        """Lines of the coverage report: a summary, then every edge taken or not."""
        total = len(self.flow.edges)
        lines = [f"{self.flow.id}: {total - len(self.never)}/{total} edges "
                 f"({format_percent(self.percent)})"]
        for edge in self.flow.edges:
            count = self.taken.get(edge, 0)
            mark = f"✓ {count}×" if count else "✗ never"
            # Two routes may lead to the same node: their conditions tell them apart.
            when = f"  when {shorten(edge.label, 60)}" if edge.kind == "route" else ""
            lines.append(f"  {mark:<9} {edge.key}{when}")
        lines += [f"  ? {count}×     {text}  (not an edge of the flow)"
                  for text, count in sorted(self.unmapped.items())]
        return lines


def format_percent(value: float) -> str:
    """One decimal, rounded down: anything short of full coverage never shows as 100%."""
    return "100%" if value >= 100 else f"{math.floor(value * 10) / 10:.1f}%"
