"""Graph export: every edge drawn and labelled, then rendered by Graphviz, parsed by mermaid
and rendered to SVG by mermaid's own renderer (mermaid-cli on Debian's Chromium), whose edges
are counted.

Graphviz (`dot`), node/npm and /usr/bin/chromium are needed for the rendering tests; without
them those tests skip, unless CI or PHONEY_REQUIRE_TOOLS is set, where they fail.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from engine.flows.export import (
    DETAIL_WIDTH,
    LOOP_WIDTH,
    drawn_edges,
    edge_detail,
    mermaid_block,
    render,
    to_dot,
    to_json,
    to_mermaid,
)
from engine.flows.loader import load_project
from engine.flows.model import EDGE_KINDS, Flow

ROOT = Path(__file__).resolve().parents[2]
MERMAID_TOOL = ROOT / "tools" / "mermaid"
CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_TOOLS = bool(os.environ.get("CI") or os.environ.get("PHONEY_REQUIRE_TOOLS"))

PERSONALITY = """\
personality: {id}
name: {id}
system_prompt: You answer the phone for a small business, briefly and kindly.
voice: {{twilio: Polly.Joanna-Neural}}
examples:
  - input: Hi
    response: Hello, how can I help?
"""

THREE = """\
flow: three
personality: p
start: greet
nodes:
  greet: {type: say, text: Hello., next: menu}
  menu:
    type: gather
    prompt: Press 1 to hear it again.
    input: [dtmf]
    routes:
      - {when: "digits == '1'", to: menu}
    next: bye
    no_input: {retries: 1, then: bye}
  bye: {type: hangup, text: Goodbye.}
"""

# Every edge kind, conditions full of characters that both languages treat specially, and node
# ids that are Mermaid or DOT keywords.
KINDS = r"""flow: kinds
personality: p
on_machine: end
vars: {business: Acme & Sons}
limits: {max_turns: 20, then: end}
defaults:
  no_input: {retries: 1, reprompt: "Hello?", then: end}
  on_error:
    network: {retry: 3, then: sorry}
    rate_limit: {retry: 1, then: hold}
    ai_failure: {personality: professional, then: sorry}
    tts_failure: {voice: twilio}
start: graph
nodes:
  graph:
    type: say
    text: "Welcome to {{ vars.business }}!"
    next: menu
  menu:
    type: gather
    prompt: Say billing, or press 1.
    input: [speech, dtmf]
    routes:
      - when: |-
          said_any("billing") or digits == '1'
        to: subgraph
      - when: turn < 3 and confidence > 0.5
        to: edge
      - when: |-
          speech|lower == "a|b" or '#' in digits
        to: end
      - when: |-
          '&' in speech or '{{ x }}' in speech
        to: end
      - when: |-
          '\\' in speech or '`' in speech
        to: end
      - when: |-
          '%%' in speech or '<br/>' in speech
        to: end
    next: edge
  edge:
    type: ai
    instructions: Help the caller with {{ vars.business }}.
    routes:
      - when: "said_any('person')"
        to: node
    exits:
      node: The caller wants a person.
      end: The caller is done.
  hold: {type: say, text: One moment please., pause: 1, next: edge}
  sorry: {type: say, text: Sorry about that., next: node}
  subgraph:
    type: switch
    routes:
      - when: "open_between('09:00', '17:00', days='Mon-Fri')"
        to: node
    next: lookup
  lookup:
    type: http
    request: {url: "https://api.example.com/hours"}
    next: class
    on_error: {http: {retry: 1, then: sorry}}
  node: {type: transfer, to: "+15550001111", on_fail: class, next: end}
  class: {type: record, prompt: Leave a message., next: end}
  end: {type: hangup, text: Goodbye.}
"""


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flow]:
    root = tmp_path_factory.mktemp("project")
    (root / "flows").mkdir()
    (root / "personalities").mkdir()
    for name in ("p", "professional"):
        (root / "personalities" / f"{name}.yaml").write_text(PERSONALITY.format(id=name))
    (root / "flows" / "three.yaml").write_text(THREE)
    (root / "flows" / "kinds.yaml").write_text(KINDS)
    result = load_project(root)
    assert result.registry is not None, "\n".join(map(str, result.problems))
    return dict(result.registry.flows)


def _mermaid_unescape(text: str) -> str:
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), html.unescape(
        text.replace("#quot;", "&quot;").replace("#amp;", "&amp;").replace("#lt;", "&lt;")
        .replace("#gt;", "&gt;")))


def _dot_unescape(text: str) -> str:
    return html.unescape(re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1),
                                text))


def _expected(flow: Flow) -> Counter[tuple[str, str, bool, tuple[str, ...]]]:
    return Counter((edge.source, edge.target, edge.dashed, edge.lines)
                   for edge in drawn_edges(flow))


def _words(text: str) -> str:
    return " ".join(text.split())


def test_drawn_edges_stand_for_every_edge_once_with_its_label(flows: dict[str, Flow]) -> None:
    for flow in flows.values():
        drawn = drawn_edges(flow)
        assert sorted(map(id, (edge for arrow in drawn for edge in arrow.edges))) == \
            sorted(map(id, flow.edges))
        for arrow in drawn:
            label = " ".join(arrow.lines)
            for edge in arrow.edges:
                assert (arrow.source, arrow.target) == (edge.source, edge.target)
                assert edge.kind in label and _words(edge_detail(edge)) in label, (edge, label)
        pairs = Counter((arrow.source, arrow.target) for arrow in drawn)
        assert all(count == 1 for (source, target), count in pairs.items() if source == target)


MERMAID_EDGE = re.compile(r'^ {4}n_(\w+) (-->|-\.->)\|"([^"|]*)"\| n_(\w+)$')
DOT_EDGE = re.compile(
    r'^ {4}"(\w+)" -> "(\w+)" \[x?label="((?:[^"\\]|\\.)*)"(, style=dashed)?\];$')


def test_the_flow_has_every_edge_kind(flows: dict[str, Flow]) -> None:
    assert {edge.kind for edge in flows["kinds"].edges} == set(EDGE_KINDS)
    strategies = {edge.strategy for edge in flows["kinds"].edges if edge.strategy}
    assert strategies == {"retry 3", "retry 1", "personality professional", "voice twilio"}


@pytest.mark.parametrize("name", ["three", "kinds"])
def test_mermaid_draws_every_edge_escaped_and_dashed(flows: dict[str, Flow], name: str) -> None:
    flow = flows[name]
    text = to_mermaid(flow)
    drawn: Counter[tuple[str, str, bool, tuple[str, ...]]] = Counter()
    for line in text.splitlines():
        match = MERMAID_EDGE.match(line)
        if match:
            source, arrow, label, target = match.groups()
            assert "<" not in label.replace("<br/>", "") and ">" not in label.replace("<br/>", "")
            lines = tuple(_mermaid_unescape(part) for part in label.split("<br/>"))
            drawn[(source, target, arrow == "-.->", lines)] += 1
    assert drawn == _expected(flow)
    assert f"flow_start --> n_{flow.start}" in text


@pytest.mark.parametrize("name", ["three", "kinds"])
def test_dot_draws_every_edge_escaped_and_dashed(flows: dict[str, Flow], name: str) -> None:
    flow = flows[name]
    text = to_dot(flow)
    drawn: Counter[tuple[str, str, bool, tuple[str, ...]]] = Counter()
    for line in text.splitlines():
        match = DOT_EDGE.match(line)
        if match:
            source, target, label, dashed = match.groups()
            drawn[(source, target, bool(dashed), tuple(_dot_unescape(label).split("\n")))] += 1
    assert drawn == _expected(flow)
    assert f'"__start__" -> "{flow.start}";' in text


def test_a_nodes_self_loops_are_one_labelled_edge(flows: dict[str, Flow]) -> None:
    mermaid, dot = to_mermaid(flows["kinds"]), to_dot(flows["kinds"])
    lines = ["error:network (retry ×3)", "error:rate_limit (retry ×1)",
             "error:ai_failure (personality professional)", "error:tts_failure (voice: twilio)"]
    assert f'    n_edge -.->|"{"<br/>".join(lines)}"| n_edge' in mermaid.splitlines()
    assert sum(line.startswith("    n_edge ") and line.endswith("| n_edge")
               for line in mermaid.splitlines()) == 1
    label = "\\n".join(lines)
    assert f'    "edge" -> "edge" [xlabel="{label}", style=dashed];' in dot.splitlines()
    assert sum(line.startswith('    "edge" -> "edge"') for line in dot.splitlines()) == 1
    # A lone self-loop keeps the kind-and-detail label: the route of `three` back to its menu.
    assert """    n_menu -->|"route<br/>digits == '1'"| n_menu""" in to_mermaid(flows["three"])


def test_an_http_node_and_its_error_edges_are_drawn(flows: dict[str, Flow]) -> None:
    mermaid, dot = to_mermaid(flows["kinds"]), to_dot(flows["kinds"])
    assert 'n_lookup["lookup<br/>http · GET"]' in mermaid
    assert '    n_lookup -.->|"error:http<br/>retry ×1"| n_lookup' in mermaid.splitlines()
    assert '    n_lookup -.->|"error:http"| n_sorry' in mermaid.splitlines()
    assert '    n_lookup -->|"next"| n_class' in mermaid.splitlines()
    assert '    "lookup" -> "sorry" [label="error:http", style=dashed];' in dot.splitlines()
    node = next(node for node in to_json(flows["kinds"])["nodes"] if node["id"] == "lookup")
    assert node["request"] == {"method": "GET", "url": "https://api.example.com/hours"}


def test_terminal_and_start_are_marked(flows: dict[str, Flow]) -> None:
    mermaid, dot = to_mermaid(flows["kinds"]), to_dot(flows["kinds"])
    assert 'n_end(["end<br/>hangup"]):::terminal' in mermaid
    assert "classDef terminal" in mermaid
    assert 'n_graph["graph<br/>say"]' in mermaid
    assert "flow_start(( )):::start" in mermaid
    assert '"end" [label="end\\nhangup", shape=doublecircle];' in dot
    assert '"graph" [label="graph\\nsay"];' in dot
    assert '"__start__" [shape=point' in dot


def test_long_conditions_are_wrapped_in_full_not_cut(flows: dict[str, Flow]) -> None:
    drawn = drawn_edges(flows["kinds"])
    assert all(len(line) <= max(DETAIL_WIDTH, LOOP_WIDTH) for arrow in drawn
               for line in arrow.lines)
    assert not any(line.endswith("…") for arrow in drawn for line in arrow.lines)
    long = next(arrow for arrow in drawn if len(arrow.lines) > 2 and arrow.lines[0] == "route")
    assert " ".join(long.lines[1:]) == _words(long.edges[0].label)


def test_json_round_trips(flows: dict[str, Flow]) -> None:
    for flow in flows.values():
        data = json.loads(render(flow, "json"))
        assert data == to_json(flow)
        assert data["flow"] == flow.id and data["start"] == flow.start
        assert len(data["edges"]) == len(flow.edges)
        assert [node["id"] for node in data["nodes"]] == list(flow.nodes)
        assert {edge["kind"] for edge in data["edges"] if edge["dashed"]} <= {
            kind for kind in EDGE_KINDS if kind.startswith("error:")}
    end = next(node for node in json.loads(render(flows["kinds"], "json"))["nodes"]
               if node["id"] == "end")
    assert end == {"id": "end", "type": "hangup", "terminal": True, "description": ""}


def test_render_picks_the_format(flows: dict[str, Flow]) -> None:
    flow = flows["three"]
    assert render(flow, "mermaid") == to_mermaid(flow)
    assert render(flow, "dot") == to_dot(flow)
    assert mermaid_block(flow) == f"```mermaid\n{to_mermaid(flow)}```\n"
    with pytest.raises(ValueError, match="svg"):
        render(flow, "svg")


# Rendering with the real tools.

def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"`{name}` is not installed; it is needed to render exports for real"
        if REQUIRE_TOOLS:
            pytest.fail(f"{message} (required because CI or PHONEY_REQUIRE_TOOLS is set)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def mermaid_parser() -> list[str]:
    """The command that checks Mermaid files with mermaid's own parser."""
    node, npm = _tool("node"), _tool("npm")
    if not (MERMAID_TOOL / "node_modules" / ".bin" / "mmdc").exists():
        done = subprocess.run([npm, "ci", "--prefix", str(MERMAID_TOOL), "--no-audit",
                               "--no-fund"], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"})
        if done.returncode != 0:
            message = f"`npm ci --prefix tools/mermaid` failed:\n{done.stderr}"
            if REQUIRE_TOOLS:
                pytest.fail(message)
            pytest.skip(message)
    return [node, str(MERMAID_TOOL / "parse.mjs")]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_graphviz_renders_dot(flows: dict[str, Flow], tmp_path: Path) -> None:
    dot = _tool("dot")
    for flow in flows.values():
        source = tmp_path / f"{flow.id}.dot"
        source.write_text(render(flow, "dot"))
        done = _run([dot, "-Tsvg", str(source)])
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr, done.stderr
        svg = html.unescape(done.stdout)
        for node_id in flow.nodes:
            assert f">{node_id}</text>" in svg
        for arrow in drawn_edges(flow):  # labels come out as written, escapes undone
            for line in arrow.lines:
                assert f">{line}</text>" in svg


def test_mermaid_parses_exports(flows: dict[str, Flow], mermaid_parser: list[str],
                                tmp_path: Path) -> None:
    files = []
    for flow in flows.values():
        files.append(tmp_path / f"{flow.id}.mmd")
        files[-1].write_text(render(flow, "mermaid"))
        files.append(tmp_path / f"{flow.id}.md")
        files[-1].write_text(mermaid_block(flow))
    done = _run([*mermaid_parser, *map(str, files)])
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def mermaid_renderer(mermaid_parser: list[str]) -> list[str]:
    """mermaid-cli's `mmdc`, rendering with Debian's Chromium (tools/mermaid/puppeteer.json)."""
    mmdc = MERMAID_TOOL / "node_modules" / ".bin" / "mmdc"
    missing = [str(path) for path in (mmdc, CHROMIUM) if not path.exists()]
    if missing:
        message = (f"{', '.join(missing)} missing: mermaid's renderer needs `npm ci --prefix "
                   "tools/mermaid` (PUPPETEER_SKIP_DOWNLOAD=1) and Debian's chromium")
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    return [mermaid_parser[0], str(mmdc), "--quiet", "--puppeteerConfigFile",
            str(MERMAID_TOOL / "puppeteer.json")]


def _rendered_edges(renderer: list[str], text: str, tmp_path: Path, name: str) -> list[str]:
    """Render Mermaid `text` to SVG with mermaid itself; the ids of the edges it drew."""
    source, target = tmp_path / f"{name}.mmd", tmp_path / f"{name}.svg"
    source.write_text(text)
    done = subprocess.run([*renderer, "--input", str(source), "--output", str(target)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    svg = target.read_text()
    link = re.compile(r'<path\b[^>]*\bid="([^"]*)"[^>]*\bclass="[^"]*\bflowchart-link\b')
    return [match.group(1) for match in link.finditer(svg)]


def test_mermaid_renders_every_drawn_edge(flows: dict[str, Flow], mermaid_renderer: list[str],
                                          tmp_path: Path) -> None:
    project = load_project(ROOT)
    assert project.registry is not None
    for flow in [*flows.values(), project.registry.flows["receptionist"]]:
        edges = _rendered_edges(mermaid_renderer, to_mermaid(flow), tmp_path, flow.id)
        assert len(edges) == len(drawn_edges(flow)) + 1, (flow.id, edges)  # + the start arrow
        loops = {arrow.source for arrow in drawn_edges(flow) if arrow.source == arrow.target}
        for node_id in loops:
            assert f"my-svg-L_n_{node_id}_n_{node_id}_0" in edges


def test_mermaid_keeps_one_self_loop_of_a_node(mermaid_renderer: list[str],
                                               tmp_path: Path) -> None:
    """The fact the export works around: two self-loops of a node render as one edge."""
    two = 'flowchart TD\n    n_a -->|"one"| n_a\n    n_a -->|"two"| n_a\n    n_a --> n_b\n'
    assert len(_rendered_edges(mermaid_renderer, two, tmp_path, "two_loops")) == 2


def test_mermaid_parser_rejects_broken_text(mermaid_parser: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.mmd"
    broken.write_text('flowchart TD\n    end --> n_a\n    n_a -->|"say "hi""| n_b\n')
    done = _run([*mermaid_parser, str(broken)])
    assert done.returncode == 1
    assert "parse error" in done.stderr
    from_stdin = subprocess.run(mermaid_parser, input="flowchart TD\n    a[x -->\n",
                                capture_output=True, text=True, timeout=120)
    assert from_stdin.returncode == 1, from_stdin.stderr
