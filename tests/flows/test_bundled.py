"""The bundled flows and personalities, and `flask flows validate` / `export` on copies of them.

Each broken copy changes one thing in a bundled file by a text substitution, runs the command
line as a user would, and expects exit 1 with `flows/<file>:<line>:` at the changed line and the
offending name in the message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result

from engine.flows.loader import load_project
from engine.flows.model import ERROR_KINDS, AiNode
from engine.settings import ENV_KEYS
from engine.web.app import create_app
from tests.flows.conftest import line_of

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_FLOWS = ("after_hours", "concierge", "family_clinic", "receptionist", "reminder",
                 "support_triage")
BUNDLED_PERSONALITIES = ("friendly", "host", "professional", "witty", "zen")


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled flows/ and personalities/ copied into tmp_path, with no outside settings."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def validate(root: Path, *args: str) -> Result:
    app = create_app({"PROJECT_ROOT": str(root), "STORE_URL": f"sqlite:///{root / 's.db'}"})
    result = app.test_cli_runner().invoke(args=["flows", "validate", *args])
    # Never a traceback: only SystemExit (from exit codes) may escape the command.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def problem_lines(result: Result) -> list[str]:
    """Standard output: one `path:line:col: message` a line (the summary goes to stderr)."""
    return result.stdout.splitlines()


def error_lines(result: Result) -> list[str]:
    """The errors only: warnings (from scenario files about flows that do not load, say) are
    reported but do not fail validation."""
    return [text for text in problem_lines(result) if ": warning: " not in text]


def substitute(root: Path, relative: str, old: str, new: str) -> str:
    path = root / relative
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} is not in {relative}"
    changed = text.replace(old, new, 1)
    path.write_text(changed, encoding="utf-8")
    return changed


# --- the bundled project --------------------------------------------------------------------

def test_the_bundled_project_has_no_problems() -> None:
    result = load_project(ROOT)
    assert result.problems == []
    assert result.registry is not None
    assert sorted(result.registry.flows) == list(BUNDLED_FLOWS)
    assert sorted(result.registry.personalities) == list(BUNDLED_PERSONALITIES)
    assert sorted(result.files) == sorted(
        [f"flows/{name}.yaml" for name in BUNDLED_FLOWS]
        + [f"personalities/{name}.yaml" for name in BUNDLED_PERSONALITIES])


@pytest.mark.parametrize("flow_id", BUNDLED_FLOWS)
def test_each_bundled_flow_compiles_with_every_ai_error_handled(flow_id: str) -> None:
    registry = load_project(ROOT).registry
    assert registry is not None
    flow = registry.flows[flow_id]
    assert flow.id == flow_id
    assert flow.start in flow.nodes
    assert {edge.target for edge in flow.edges} <= set(flow.nodes)
    assert flow.personality in registry.personalities
    assert set(flow.personalities_used()) <= set(registry.personalities)
    for node in flow.nodes.values():
        if isinstance(node, AiNode):
            assert set(node.on_error) == set(ERROR_KINDS), node.id
            kinds = {edge.kind for edge in flow.edges_from(node.id)}
            assert {f"error:{kind}" for kind in ERROR_KINDS} <= kinds, node.id
            assert node.no_input is not None
            assert node.exits


def test_the_bundled_numbers_are_distinct() -> None:
    registry = load_project(ROOT).registry
    assert registry is not None
    numbers = [number for flow in registry.flows.values() for number in flow.numbers]
    assert len(numbers) == len(set(numbers)) == len(BUNDLED_FLOWS)
    for flow in registry.flows.values():
        assert registry.flow_for_number(flow.numbers[0]) is flow


def test_validate_passes_on_the_bundled_project(copy: Path) -> None:
    result = validate(copy)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "files checked: all good" in result.output


# --- broken copies --------------------------------------------------------------------------

# (file, text to replace, replacement, text on the line to be reported, offending name)
BREAKAGES = {
    "bad next target": (
        "flows/receptionist.yaml", "    next: voicemail\n", "    next: voicemal\n",
        "next: voicemal", "'voicemal' (did you mean 'voicemail'?)"),
    "bad on_fail target": (
        "flows/after_hours.yaml", "on_fail: office_busy", "on_fail: ofice_busy",
        "on_fail: ofice_busy", "'ofice_busy' (did you mean 'office_busy'?)"),
    "bad exit target": (
        "flows/support_triage.yaml", "      sales: The caller", "      sale: The caller",
        "sale: The caller wants", "'sale' (did you mean 'sales'?)"),
    "orphan node": (
        "flows/receptionist.yaml", "  goodbye:\n",
        "  orphan:\n    type: say\n    text: Nobody links here.\n    next: goodbye\n\n"
        "  goodbye:\n",
        "  orphan:", "nodes.orphan: unreachable"),
    "wrong node type": (
        "flows/receptionist.yaml", "    type: record\n", "    type: recrod\n",
        "type: recrod", "'recrod' is not allowed (did you mean 'record'?)"),
    "wrong value type": (
        "flows/after_hours.yaml", "    timeout: 25\n", "    timeout: [25]\n",
        "timeout: [25]", "nodes.office.timeout: expected a whole number, got a list"),
    "start removed": (
        "flows/support_triage.yaml", "start: welcome\n", "",
        "flow: support_triage", "missing required key 'start'"),
    "tab in YAML": (
        "flows/receptionist.yaml", "    text: One moment please.\n",
        "\ttext: One moment please.\n",
        "\ttext: One moment please.", "found character '\\t'"),
    "unclosed bracket": (
        "flows/receptionist.yaml", "front desk, emergency]", "front desk, emergency",
        "    routes:", "while parsing a flow sequence that starts on line"),
    "unknown flow personality": (
        "flows/receptionist.yaml", "personality: friendly\n", "personality: frendly\n",
        "personality: frendly", "unknown personality 'frendly' (did you mean 'friendly'?)"),
    "unknown fallback personality": (
        "flows/support_triage.yaml", "{personality: friendly,", "{personality: frienly,",
        "personality: frienly", "unknown personality 'frienly' (did you mean 'friendly'?)"),
    "unknown variable": (
        "flows/after_hours.yaml", 'to: "{{ vars.on_call }}"', 'to: "{{ vars.oncall }}"',
        "vars.oncall", "unknown variable 'vars.oncall' (did you mean 'on_call'?)"),
    "duplicate number": (
        "flows/support_triage.yaml", '"+15550003000"', '"+15550001000"',
        'numbers: ["+15550001000"]', "+15550001000 is already claimed by flow 'receptionist'"),
    "flow id differs from file name": (
        "flows/after_hours.yaml", "flow: after_hours\n", "flow: afterhours\n",
        "flow: afterhours", "id 'afterhours' differs from the file name 'after_hours.yaml'"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_a_broken_copy_fails_at_the_line_of_the_breakage(copy: Path, breakage: str) -> None:
    relative, old, new, reported, name = BREAKAGES[breakage]
    changed = substitute(copy, relative, old, new)
    line = line_of(changed, reported)
    if breakage == "unclosed bracket":
        # YAML notices on the line after the bracket, and says where the bracket is.
        name += f" {line_of(changed, 'hints: [appointment')})"
    result = validate(copy)
    assert result.exit_code == 1, result.output
    lines = error_lines(result)
    # One error, no cascade: at the changed line, naming what is wrong.
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"{relative}:{line}:")
    assert name in lines[0]
    assert "1 errors" in result.output  # the summary, on stderr


def test_every_problem_in_the_project_is_reported_at_once(copy: Path) -> None:
    for breakage in ("bad next target", "start removed", "unknown variable"):
        relative, old, new, _, _ = BREAKAGES[breakage]
        substitute(copy, relative, old, new)
    result = validate(copy)
    assert result.exit_code == 1
    files = [text.split(":")[0] for text in error_lines(result)]
    assert files == ["flows/after_hours.yaml", "flows/receptionist.yaml",
                     "flows/support_triage.yaml"]


def test_a_broken_personality_fails(copy: Path) -> None:
    changed = substitute(copy, "personalities/zen.yaml", "fallback: professional",
                         "fallback: profesional")
    result = validate(copy)
    assert result.exit_code == 1
    assert error_lines(result) == [
        f"personalities/zen.yaml:{line_of(changed, 'fallback:')}:11: fallback: unknown "
        f"personality 'profesional' (did you mean 'professional'?)"]


def test_warnings_alone_exit_zero(copy: Path) -> None:
    # An ai node with no routes and no exits can only end by hanging up: a warning.
    path = copy / "flows" / "support_triage.yaml"
    text = path.read_text(encoding="utf-8")
    cut_from = text.index("    routes:\n      - when: said_any('main menu'")
    cut_to = text.index("\n\n", cut_from)
    text = text[:cut_from] + text[cut_to + 1:]
    # The node only the routes led to (the upset caller's transfer) goes with them.
    upset_from = text.index("  upset:\n")
    text = text[:upset_from] + text[text.index("\n\n", upset_from) + 2:]
    path.write_text(text, encoding="utf-8")
    # The flow's scenarios take the exits just removed; they are not what this test is about.
    (copy / "flows" / "support_triage.test.yaml").unlink(missing_ok=True)
    result = validate(copy)
    assert result.exit_code == 0, result.output
    assert error_lines(result) == []
    [warning] = [text for text in problem_lines(result)
                 if text.startswith("flows/support_triage.yaml:")]
    assert ": warning: nodes.assistant: dead end: no routes or exits" in warning
    assert "0 errors" in result.output


# --- one clear message for files that are not flows at all -----------------------------------

NOT_FLOWS = {
    "syntax error": ("flow: bad\nnodes: {greet: {type: say}\n", "YAML syntax error"),
    "empty file": ("", "the file is empty; it should hold one YAML mapping"),
    "comments only": ("# flow: bad\n", "the file is empty; it should hold one YAML mapping"),
    "a list": ("- type: say\n  text: Hello.\n",
               "expected a mapping at the top of the flow file, got a list"),
    "a scalar": ("just some words\n",
                 "expected a mapping at the top of the flow file, got a string"),
    "not UTF-8": ("flow: caf\udce9\n", "the file is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(NOT_FLOWS), ids=list(NOT_FLOWS))
def test_a_file_that_is_not_a_flow_gets_one_clear_message(copy: Path, case: str) -> None:
    text, message = NOT_FLOWS[case]
    (copy / "flows" / "bad.yaml").write_bytes(text.encode("utf-8", "surrogateescape"))
    result = validate(copy)
    assert result.exit_code == 1
    lines = [text for text in problem_lines(result) if text.startswith("flows/bad.yaml:")]
    assert len(lines) == 1, result.output
    assert error_lines(result) == lines
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_a_5_mb_file_gets_one_clear_message(copy: Path) -> None:
    (copy / "flows" / "huge.yaml").write_text("# padding\n" * 500_000, encoding="utf-8")
    result = validate(copy)
    assert result.exit_code == 1
    assert error_lines(result) == [
        "flows/huge.yaml:1:1: the file is 5.0 MB; flow and personality files are limited to 1 MB"]


# --- options and arguments ------------------------------------------------------------------

def test_json_format_lists_every_problem(copy: Path) -> None:
    for breakage in ("bad next target", "orphan node"):
        relative, old, new, _, _ = BREAKAGES[breakage]
        substitute(copy, relative, old, new)
    result = validate(copy, "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["errors"] == 2
    assert set(report["files"]) >= {f"flows/{name}.yaml" for name in BUNDLED_FLOWS} | {
        f"personalities/{name}.yaml" for name in BUNDLED_PERSONALITIES}
    problems = report["problems"]
    assert len(problems) == report["errors"] + report["warnings"]
    assert all(set(problem) == {"path", "line", "column", "message", "severity"}
               for problem in problems)
    errors = [problem for problem in problems if problem["severity"] == "error"]
    changed = (copy / "flows" / "receptionist.yaml").read_text(encoding="utf-8")
    assert [(p["path"], p["line"], p["column"]) for p in errors] == [
        ("flows/receptionist.yaml", line_of(changed, "next: voicemal"), 11),
        ("flows/receptionist.yaml", line_of(changed, "  orphan:"), 3),
    ]
    assert "'voicemal'" in errors[0]["message"]
    assert errors[1]["message"].startswith("nodes.orphan: unreachable")


def test_json_format_on_a_clean_project(copy: Path) -> None:
    result = validate(copy, "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert (report["ok"], report["errors"], report["problems"]) == (True, 0, [])


def test_validating_an_explicit_path(copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(copy)
    substitute(copy, "flows/after_hours.yaml", "on_fail: office_busy", "on_fail: ofice_busy")
    ok = validate(copy, "flows/receptionist.yaml")
    assert ok.exit_code == 0, ok.output
    assert "files checked" in ok.output
    broken = validate(copy, "flows/after_hours.yaml")
    assert broken.exit_code == 1
    assert [text.split(":")[0] for text in error_lines(broken)] == ["flows/after_hours.yaml"]


def test_a_changed_flow_and_personality_see_the_other_personalities(
        copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As pre-commit passes changed files: receptionist falls back to `professional`, and
    # `friendly` falls back to it too; neither file is given, both must be found.
    monkeypatch.chdir(copy)
    result = validate(copy, "flows/receptionist.yaml", "personalities/friendly.yaml")
    assert result.exit_code == 0, result.output
    only_personality = validate(copy, "personalities/friendly.yaml")
    assert only_personality.exit_code == 0, only_personality.output


def test_a_nonexistent_path_is_a_usage_error(copy: Path) -> None:
    result = validate(copy, str(copy / "flows" / "nope.yaml"))
    assert result.exit_code == 2
    assert "no such file or directory" in result.output
    assert "nope.yaml" in result.output
    assert "Traceback" not in result.output


def test_the_flask_command_line(copy: Path) -> None:
    """The real `flask` entry point, from the project root, on the broken copy."""
    substitute(copy, "flows/receptionist.yaml", "personality: friendly\n",
               "personality: frendly\n")
    environment = {key: value for key, value in os.environ.items() if key not in ENV_KEYS}
    environment.update(PROJECT_ROOT=str(copy), STORE_URL=f"sqlite:///{copy / 's.db'}")
    completed = subprocess.run(
        [sys.executable, "-m", "flask", "flows", "validate"], cwd=ROOT, env=environment,
        capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 1, completed.stderr
    [error] = [text for text in completed.stdout.splitlines() if ": warning: " not in text]
    assert error.startswith("flows/receptionist.yaml:")
    assert "unknown personality 'frendly'" in error
    assert "Traceback" not in completed.stderr


# --- export ---------------------------------------------------------------------------------

def test_export_writes_a_dot_file(copy: Path) -> None:
    output = copy / "receptionist.dot"
    app = create_app({"PROJECT_ROOT": str(copy), "STORE_URL": f"sqlite:///{copy / 's.db'}"})
    result = app.test_cli_runner().invoke(
        args=["flows", "export", "receptionist", "--format", "dot", "-o", str(output)])
    assert result.exit_code == 0, result.output
    text = output.read_text(encoding="utf-8")
    assert text.startswith('digraph "receptionist" {')
    assert text.rstrip().endswith("}")
    for node_id in ("greet", "assist", "front_desk", "voicemail", "goodbye"):
        assert f'"{node_id}"' in text


def test_export_refuses_an_unknown_flow(copy: Path) -> None:
    app = create_app({"PROJECT_ROOT": str(copy), "STORE_URL": f"sqlite:///{copy / 's.db'}"})
    result = app.test_cli_runner().invoke(args=["flows", "export", "nope"])
    assert result.exit_code == 1
    assert ("unknown flow 'nope'; known flows: after_hours, concierge, family_clinic, "
            "receptionist, reminder, support_triage") in result.output
