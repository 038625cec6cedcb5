"""Property: whatever YAML is in flows/ and personalities/, reading it gives problems, not crashes.

Hypothesis writes files of three kinds: random nested structures dumped with `yaml.safe_dump`
(flow-shaped ones too, so the schema check, the compiler and the graph checks get to see them),
the bundled flows and personalities mutated (lines deleted, duplicated or re-indented, random
bytes put in, the text cut short), and plain random text. Then:
- `engine.flows.loader.load` raises nothing, and every problem names a file, a line and a
  column (both at least 1), on one line;
- `flask flows validate` exits 0 or 1 with one `path:line:col: message` line per problem (and
  JSON that says the same), never with a traceback;
- a server whose flows are such files starts, and answers webhooks and its APIs without a 500.
Each example must finish within a deadline, and an alarm stops one that would hang.
"""

from __future__ import annotations

import json
import re
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.flows.loader import LoadResult, load
from engine.simulator import new_call_sid
from tests.web.test_bad_input import base_params, post

ROOT = Path(__file__).resolve().parents[2]
FLOW_TEXTS = {path.stem: path.read_text(encoding="utf-8")
              for path in sorted((ROOT / "flows").glob("*.yaml"))
              if not path.name.endswith(".test.yaml")}
PERSONALITY_TEXTS = {path.stem: path.read_text(encoding="utf-8")
                     for path in sorted((ROOT / "personalities").glob("*.yaml"))}
HANG_SECONDS = 30
PROBLEM_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<column>\d+): \S")

# -- strategies ------------------------------------------------------------------------------------

FLOW_KEYS = ["flow", "description", "personality", "language", "numbers", "vars", "limits",
             "defaults", "start", "nodes", "timezone"]
NODE_KEYS = ["type", "text", "next", "prompt", "input", "hints", "routes", "when", "to",
             "exits", "opening", "instructions", "pause", "timeout", "on_fail", "announce",
             "max_seconds", "no_input", "on_error", "retry", "then", "personality", "voice"]
NODE_TYPES = ["say", "gather", "ai", "switch", "transfer", "record", "hangup", "bogus"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["yes", "no", "on", "off", "~", "{{ vars.x }}", "{% if %}", "greet",
                     "goodbye", "said_any('x')", "0x1F", "1e400", "*ref", "&a", "!!python"]))
KEYS = st.one_of(st.sampled_from(FLOW_KEYS + NODE_KEYS), st.text(max_size=12))
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(KEYS, children, max_size=6)),
    max_leaves=40)
NODES = st.dictionaries(
    st.sampled_from(["greet", "menu", "assist", "goodbye", "hold"]) | st.text(max_size=8),
    st.fixed_dictionaries({"type": st.sampled_from(NODE_TYPES)},
                          optional={key: TREES for key in NODE_KEYS[1:]}),
    max_size=5)


@st.composite
def flow_shaped(draw: st.DrawFn) -> dict[str, Any]:
    stem = draw(st.sampled_from(sorted(FLOW_TEXTS)))
    document: dict[str, Any] = {"flow": stem, "start": draw(st.sampled_from(["greet", "x"])),
                                "personality": draw(st.sampled_from(
                                    [*sorted(PERSONALITY_TEXTS), "nobody"])),
                                "nodes": draw(NODES)}
    document.update(draw(st.dictionaries(st.sampled_from(FLOW_KEYS), TREES, max_size=4)))
    return document


def _dump(tree: Any) -> bytes:
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False).encode("utf-8")


def _mutate(text: str, operations: list[tuple[str, int, int, bytes]]) -> bytes:
    lines = text.encode("utf-8").split(b"\n")
    for kind, where, amount, noise in operations:
        at = where % max(len(lines), 1)
        if kind == "delete":
            del lines[at:at + 1 + amount % 3]
        elif kind == "duplicate":
            lines.insert(at, lines[at] if lines else b"")
        elif kind == "indent":
            line = lines[at] if lines else b""
            stripped = line.lstrip(b" \t")
            indent = [b"", b" ", b"   ", b"\t", b"      ", b"  \t"][amount % 6]
            if lines:
                lines[at] = indent + stripped
        elif kind == "bytes":
            line = lines[at] if lines else b""
            cut = amount % (len(line) + 1)
            if lines:
                lines[at] = line[:cut] + noise + line[cut:]
            else:
                lines = [noise]
        elif kind == "truncate":
            joined = b"\n".join(lines)
            lines = joined[: amount % (len(joined) + 1)].split(b"\n")
    return b"\n".join(lines)


OPERATIONS = st.lists(st.tuples(st.sampled_from(["delete", "duplicate", "indent", "bytes",
                                                 "truncate"]),
                                st.integers(0, 10_000), st.integers(0, 10_000),
                                st.binary(min_size=1, max_size=12)),
                      min_size=1, max_size=5)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(folder, file stem, bytes): a bundled file, broken."""
    if draw(st.booleans()):
        stem = draw(st.sampled_from(sorted(FLOW_TEXTS)))
        return "flows", stem, _mutate(FLOW_TEXTS[stem], draw(OPERATIONS))
    stem = draw(st.sampled_from(sorted(PERSONALITY_TEXTS)))
    return "personalities", stem, _mutate(PERSONALITY_TEXTS[stem], draw(OPERATIONS))


@st.composite
def random_document(draw: st.DrawFn) -> tuple[str, str, bytes]:
    kind = draw(st.sampled_from(["tree", "flow", "mutated", "text", "bytes"]))
    if kind == "mutated":
        return draw(mutated())
    stem = draw(st.sampled_from(sorted(FLOW_TEXTS)))
    if kind == "tree":
        body = _dump(draw(TREES))
    elif kind == "flow":
        body = _dump(draw(flow_shaped()))
    elif kind == "text":
        body = draw(st.text(st.sampled_from(list("ab:-[]{}#&*!|>'\"%@` \t\n,?0123")),
                            max_size=200)).encode()
    else:
        body = draw(st.binary(max_size=200))
    return "flows", stem, body


# -- helpers ---------------------------------------------------------------------------------------

@contextmanager
def project_with(folder: str, stem: str, body: bytes) -> Iterator[Path]:
    """A project of the bundled personalities, one flow (the bundled one of that name, unless
    the broken file is a personality), and the broken file, in a fresh directory.

    Only one flow: reading YAML is pure Python here, and each example should stay quick."""
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / "flows").mkdir()
        (root / "personalities").mkdir()
        for each, text in PERSONALITY_TEXTS.items():
            (root / "personalities" / f"{each}.yaml").write_text(text, encoding="utf-8")
        if folder == "personalities":
            (root / "flows" / "receptionist.yaml").write_text(FLOW_TEXTS["receptionist"],
                                                               encoding="utf-8")
        (root / folder / f"{stem}.yaml").write_bytes(body)
        yield root


@contextmanager
def no_hang(seconds: int = HANG_SECONDS) -> Iterator[None]:
    """Fail an example that runs away instead of hanging the suite (a deadline only reports
    slowness once the example has finished)."""

    def stop(signum: int, frame: object) -> None:
        raise TimeoutError(f"an example ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_well_formed(result: LoadResult) -> None:
    for problem in result.problems:
        assert isinstance(problem.path, str) and problem.path, problem
        assert isinstance(problem.line, int) and problem.line >= 1, problem
        assert isinstance(problem.column, int) and problem.column >= 1, problem
        assert problem.severity in ("error", "warning"), problem
        assert "\n" not in str(problem) and "\r" not in str(problem), problem
        assert PROBLEM_LINE.match(str(problem)), problem
    assert result.ok == (not any(p.severity == "error" for p in result.problems))


PROPERTY = settings(max_examples=100, deadline=timedelta(seconds=10),
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# -- the loader ------------------------------------------------------------------------------------


@PROPERTY
@given(document=random_document())
def test_the_loader_turns_any_yaml_into_problems(document: tuple[str, str, bytes]) -> None:
    folder, stem, body = document
    with project_with(folder, stem, body) as root, no_hang():
        result = load([root / "flows", root / "personalities"], root=root)
    assert_well_formed(result)
    assert result.files  # every file was at least looked at


@PROPERTY
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_one_file_given_alone_never_raises(body: bytes) -> None:
    with tempfile.TemporaryDirectory() as name, no_hang():
        path = Path(name) / "anything.yaml"
        path.write_bytes(body)
        result = load([path], root=Path(name))
    assert_well_formed(result)


def test_mutations_do_reach_the_later_stages() -> None:
    """The strategies are not all syntax errors: some documents get as far as the graph."""
    body = _dump({"flow": "receptionist", "personality": "friendly", "start": "greet",
                  "nodes": {"greet": {"type": "say", "text": "Hi", "next": "gone"}}})
    with project_with("flows", "receptionist", body) as root:
        result = load([root / "flows", root / "personalities"], root=root)
    assert any("gone" in problem.message for problem in result.problems)


# -- flask flows validate --------------------------------------------------------------------------


@pytest.fixture
def cli_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    """An app over a small project (its personalities are the validate command's context)."""
    for folder, texts in (("flows", {"receptionist": FLOW_TEXTS["receptionist"]}),
                          ("personalities", PERSONALITY_TEXTS)):
        (tmp_path / folder).mkdir()
        for stem, text in texts.items():
            (tmp_path / folder / f"{stem}.yaml").write_text(text, encoding="utf-8")
    return make_app(PROJECT_ROOT=str(tmp_path), PUBLISHER=False, SPEECH_WARMUP=False,
                    RELOAD=False)


@settings(max_examples=20, deadline=timedelta(seconds=20),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=random_document())
def test_flows_validate_reports_and_exits_0_or_1(cli_app: Flask,
                                                 document: tuple[str, str, bytes]) -> None:
    folder, stem, body = document
    runner = cli_app.test_cli_runner()
    with project_with(folder, stem, body) as root, no_hang():
        paths = [str(root / "flows"), str(root / "personalities")]
        text = runner.invoke(args=["flows", "validate", *paths])
        as_json = runner.invoke(args=["flows", "validate", "--format", "json", *paths])

    for result in (text, as_json):
        assert result.exit_code in (0, 1), (result.exit_code, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            repr(result.exception)
        assert "Traceback" not in result.output
    report = json.loads(as_json.stdout)
    assert report["ok"] == (as_json.exit_code == 0)
    for problem in report["problems"]:
        assert problem["line"] >= 1 and problem["column"] >= 1 and problem["path"]
    lines = [line for line in text.stdout.splitlines() if line]
    assert len(lines) == len(report["problems"])
    for line in lines:
        assert PROBLEM_LINE.match(line), line


# -- the server ------------------------------------------------------------------------------------


@settings(max_examples=12, deadline=timedelta(seconds=30),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=random_document())
def test_a_server_over_broken_flows_starts_and_never_answers_500(
        make_app: Callable[..., Flask], document: tuple[str, str, bytes]) -> None:
    folder, stem, body = document
    with project_with(folder, stem, body) as root, no_hang():
        app = make_app(PROJECT_ROOT=str(root), PUBLISHER=False, SPEECH_WARMUP=False,
                       RELOAD=False)
        client = app.test_client()
        call_sid = new_call_sid()
        answers = [post(client, "/api/incoming-call", base_params(call_sid)),
                   post(client, "/api/voice/input?step=1",
                        base_params(call_sid, SpeechResult="hello")),
                   post(client, f"/api/incoming-call?flow={stem}", base_params())]
        for answer in answers:
            assert answer.status_code == 200 and answer.mimetype == "text/xml"
        assert client.post("/login", data={"password": "test-password"}).status_code == 302
        for path in ("/api/flows", f"/api/flows/{stem}/graph", "/", "/api/calls",
                     f"/api/calls/{call_sid}"):
            page = client.get(path)
            assert page.status_code < 500, (path, page.status_code)
            assert "Traceback" not in page.get_data(as_text=True)


# -- what the properties found -------------------------------------------------------------------


def test_an_id_that_is_not_a_string_is_a_problem_not_a_crash() -> None:
    with project_with("flows", "receptionist", b"flow: []\nstart: greet\nnodes: {}\n") as root:
        result = load([root / "flows", root / "personalities"], root=root)
    assert not result.ok and any(p.path.endswith("receptionist.yaml") for p in result.problems)


def test_a_character_yaml_forbids_is_reported_where_it_is() -> None:
    body = b"flow: receptionist\nstart: gr\x00eet\n"
    with project_with("flows", "receptionist", body) as root:
        result = load([root / "flows", root / "personalities"], root=root)
    (problem,) = [p for p in result.problems if "U+0000" in p.message]
    assert (problem.line, problem.column) == (2, 10)


def test_control_characters_in_a_message_are_escaped_when_printed() -> None:
    body = (b"flow: receptionist\nstart: greet\nnodes:\n  greet:\n    type: hangup\n"
            b'    "bad\\x1b[31m\\u2028key": 1\n')
    with project_with("flows", "receptionist", body) as root:
        result = load([root / "flows", root / "personalities"], root=root)
    shown = [str(p) for p in result.problems if "bad" in p.message]
    assert shown and all("\x1b" not in line and "\u2028" not in line for line in shown)
    assert any("bad\\x1b[31m\\u2028key" in line for line in shown)
