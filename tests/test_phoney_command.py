"""The `phoney` console script (pyproject's entry point), from a business's own repository: a
temporary directory with its own flows and personalities, none of Phoney's, driven in
subprocesses exactly as a user or pre-commit would run it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from engine.settings import ENV_KEYS

ROOT = Path(__file__).resolve().parents[1]
PHONEY = Path(sys.executable).parent / "phoney"

PERSONALITY = """\
personality: host
name: Host
system_prompt: You take orders for {{ vars.business }} on the phone, briefly and kindly.
voice: {twilio: Polly.Joanna-Neural}
examples:
  - {input: "Are you open?", response: We are open until ten tonight.}
"""

FLOW = """\
flow: pizzeria
description: Orders line of a pizzeria.
personality: host
timezone: Europe/Rome
numbers: ["+390612345678"]
vars: {business: Da Luigi}
start: menu
nodes:
  menu:
    type: gather
    prompt: Thanks for calling {{ vars.business }}. Press 1 to order, or 2 for our hours.
    input: [dtmf]
    routes:
      - {when: "digits == '1'", to: order}
    next: hours
    no_input: {retries: 1, then: bye}
  order: {type: say, text: Our orders line opens soon., next: bye}
  hours: {type: say, text: We are open from noon to ten., next: bye}
  bye: {type: hangup, text: Ciao!}
"""

SCENARIOS = """\
flow: pizzeria
min_coverage: 40
scenarios:
  - name: presses 1 to order
    steps:
      - press: "1"
        expect: {heard: orders line, hangup: true}
"""


@pytest.fixture(scope="module")
def phoney() -> Path:
    if not PHONEY.exists():
        pytest.fail(f"{PHONEY} is missing: `pip install -e .` installs the phoney command "
                    "(make install does)")
    return PHONEY


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A business's repository: its own flows, personalities and scenario file."""
    root = tmp_path / "pizzeria-phone"
    (root / "flows").mkdir(parents=True)
    (root / "personalities").mkdir()
    (root / "personalities" / "host.yaml").write_text(PERSONALITY)
    (root / "flows" / "pizzeria.yaml").write_text(FLOW)
    (root / "flows" / "pizzeria.test.yaml").write_text(SCENARIOS)
    return root


def environment(**extra: str) -> dict[str, str]:
    clean = {key: value for key, value in os.environ.items()
             if key not in ENV_KEYS and not key.startswith("FLASK_")}
    return {**clean, **extra}


def run(phoney: Path, cwd: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(phoney), *args], cwd=cwd, env=environment(), input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_validate_test_and_export_over_the_repositorys_own_flows(phoney: Path,
                                                                  repository: Path) -> None:
    done = run(phoney, repository, "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 files checked: all good" in done.stderr

    done = run(phoney, repository, "test")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS pizzeria: presses 1 to order" in done.stdout
    assert "receptionist" not in done.stdout + done.stderr  # none of Phoney's own flows

    done = run(phoney, repository, "export", "pizzeria", "--format", "mermaid")
    assert done.returncode == 0, done.stderr
    assert 'n_menu -->|"route<br/>digits == \'1\'"| n_order' in done.stdout

    flow = repository / "flows" / "pizzeria.yaml"
    flow.write_text(FLOW.replace("next: hours", "next: hour"))
    done = run(phoney, repository, "validate")
    assert done.returncode == 1
    assert "flows/pizzeria.yaml:15:11: nodes.menu.next: unknown node 'hour' (did you mean " \
           "'hours'?)" in done.stdout


def test_project_option_names_the_directory(phoney: Path, repository: Path,
                                            tmp_path: Path) -> None:
    done = run(phoney, tmp_path, "--project", str(repository), "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    (repository / ".env").write_text("DEFAULT_FLOW=nowhere\n")  # read from --project's .env
    done = run(phoney, tmp_path, "--project", str(repository), "doctor")
    assert "DEFAULT_FLOW" in done.stdout + done.stderr and "nowhere" in done.stdout + done.stderr


def test_call_in_the_terminal(phoney: Path, repository: Path) -> None:
    script = repository / "call.txt"
    script.write_text("#2\n")
    done = run(phoney, repository, "call", "pizzeria", "--script", str(script))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "We are open from noon to ten." in done.stdout
    assert "menu -route->" not in done.stdout and "hours" in done.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served(phoney: Path, repository: Path) -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen([str(phoney), "serve", "--port", str(port)], cwd=repository,
                              env=environment(DASHBOARD_PASSWORD="pw", SECRET_KEY="s"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "phoney serve did not get ready"
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_serve_answers_calls_with_the_repositorys_flow(served: str) -> None:
    session = requests.Session()
    assert session.post(f"{served}/login", data={"password": "pw"},
                        allow_redirects=False).status_code == 302
    flows = session.get(f"{served}/api/flows", timeout=10).json()
    assert [flow["id"] for flow in flows["flows"]] == ["pizzeria"]


def test_the_pre_commit_hooks_run_phoney(phoney: Path, repository: Path) -> None:
    hooks = {hook["id"]: hook for hook in
             yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))}
    validate = hooks["phoney-validate"]
    assert validate["language"] == "python" and validate["pass_filenames"] is False
    assert validate["entry"] == "phoney validate"
    command, *args = validate["entry"].split()
    assert command == "phoney"
    done = run(phoney, repository, *args)  # as pre-commit runs it: the entry, in the repo root
    assert done.returncode == 0, done.stdout + done.stderr
    assert hooks["phoney-test"]["entry"] == "phoney test"


def test_pyproject_declares_the_console_script() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'phoney = "engine.phoney:main"' in text
