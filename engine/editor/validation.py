"""Check a flow's YAML text as `flask flows validate` checks its file, for the editor.

`check_text(root, flow_id, text)` runs the loader on the text as if it were `flows/<id>.yaml`
of the project at `root` (the project's personalities and other flows read for context, so a
clash of numbers with another flow is found before saving), then checks the flow's scenario
file against it. Every problem comes back with its line and column and, where it lies inside a
node, that node's id, so the page can mark the node in the graph and the line in the text.

Beside the problems it gives the flow as data and its graph (the JSON export): compiled from
the text even when a graph check fails (a route to a node that does not exist yet), so the page
can keep drawing while the author is halfway through a change.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.flows.compile import compile_flow
from engine.flows.export import render
from engine.flows.loader import SCENARIO_SUFFIX, load
from engine.flows.problems import Problem, has_errors
from engine.flows.scenarios import load_scenarios
from engine.flows.schema import check_schema
from engine.flows.yamlread import Document, read_text

__all__ = ["Checked", "EditorProblem", "check_text", "flow_path"]

_NODE_MESSAGE = re.compile(r"^nodes\.([A-Za-z0-9_]+)\b")


def flow_path(flow_id: str) -> str:
    """The flow's file as messages name it: `flows/<id>.yaml`."""
    return f"flows/{flow_id}.yaml"


@dataclass(frozen=True)
class EditorProblem:
    """A problem as the editor shows it: the loader's problem, and the node it lies in (None
    for one outside every node, or in another file)."""

    problem: Problem
    node: str | None

    def as_json(self) -> dict[str, Any]:
        """path, line, column, message, severity, node, and the one-line `text`."""
        return self.problem.as_json() | {"node": self.node, "text": str(self.problem)}


@dataclass
class Checked:
    """What checking a flow's text found."""

    problems: list[EditorProblem] = field(default_factory=list)  # in this flow's text
    elsewhere: list[EditorProblem] = field(default_factory=list)  # scenario file, other files
    data: Any = None  # the flow as read (None when the YAML does not parse)
    graph: dict[str, Any] | None = None  # the JSON export, when the schema check passes

    @property
    def ok(self) -> bool:
        """No error in the flow's own text (warnings, and problems elsewhere, do not count)."""
        return not has_errors([item.problem for item in self.problems])

    def as_json(self) -> dict[str, Any]:
        """The answer of `POST /api/flows/validate`."""
        return {"ok": self.ok, "errors": sum(p.problem.severity == "error"
                                             for p in self.problems),
                "problems": [item.as_json() for item in self.problems],
                "elsewhere": [item.as_json() for item in self.elsewhere],
                "data": self.data, "graph": self.graph}


def _node_lines(document: Document) -> list[tuple[int, int, str]]:
    """(first line, last line, node id) of each node of the document, by where keys start."""
    data = document.data if isinstance(document.data, dict) else {}
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        return []
    top = sorted(document.key_mark((key,)).line for key in data)
    nodes_line = document.key_mark(("nodes",)).line
    after = [line for line in top if line > nodes_line]
    end_of_nodes = (after[0] - 1) if after else 10 ** 9
    starts = sorted((document.key_mark(("nodes", node_id)).line, str(node_id))
                    for node_id in nodes)
    spans = []
    for index, (line, node_id) in enumerate(starts):
        last = starts[index + 1][0] - 1 if index + 1 < len(starts) else end_of_nodes
        spans.append((line, last, node_id))
    return spans


def _node_of(problem: Problem, spans: list[tuple[int, int, str]], known: set[str]) -> str | None:
    named = _NODE_MESSAGE.match(problem.message)
    if named and named.group(1) in known:
        return named.group(1)
    for first, last, node_id in spans:
        if first <= problem.line <= last:
            return node_id
    return None


def _graph(document: Document) -> dict[str, Any] | None:
    if check_schema(document, "flow"):
        return None
    try:
        flow = compile_flow(document.data, document.path).flow
        found: dict[str, Any] = json.loads(render(flow, "json"))
    except Exception:  # a draft the compiler cannot take: the page keeps its last graph
        return None
    return found


def _relative(problem: Problem, root: Path) -> Problem:
    prefix = str(root.resolve()) + "/"
    if problem.path.startswith(prefix):
        return Problem(problem.path[len(prefix):], problem.line, problem.column,
                       problem.message, problem.severity)
    return problem


def check_text(root: Path, flow_id: str, text: str) -> Checked:
    """Check `text` as the file `flows/<flow_id>.yaml` of the project at `root`."""
    shown = flow_path(flow_id)
    checked = Checked()
    document, _ = read_text(shown, text)
    if document is not None:
        checked.data = document.data
        checked.graph = _graph(document)
    with tempfile.TemporaryDirectory(prefix="phoney-editor-") as scratch:
        draft = Path(scratch) / "flows" / f"{flow_id}.yaml"
        draft.parent.mkdir()
        draft.write_text(text, encoding="utf-8")
        result = load([draft], context_paths=[root / "personalities", root / "flows"],
                      root=Path(scratch))
        flows = dict(result.compiled)
    spans = _node_lines(document) if document is not None else []
    known = {node_id for _, _, node_id in spans}
    for problem in result.problems:
        if problem.path == shown:
            checked.problems.append(EditorProblem(problem, _node_of(problem, spans, known)))
        else:
            checked.elsewhere.append(EditorProblem(_relative(problem, root), None))
    scenarios = root / "flows" / f"{flow_id}{SCENARIO_SUFFIX}"
    if scenarios.is_file() and checked.ok and flow_id in flows:
        found = load_scenarios([scenarios], flows, root=root, complete=result.ok)
        checked.elsewhere += [EditorProblem(problem, None) for problem in found.problems]
    return checked
