"""`flask doctor` on flows that send requests: HTTP_ALLOW_HOSTS and the `${NAME}` variables they
read, named when unset, their values never printed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.doctor import doctor_command
from tests.conftest import ROOT

FLOW = """\
flow: lookup
personality: friendly
vars: {business: Acme}
start: check
nodes:
  check:
    type: http
    request: {url: "https://api.example.com/x", headers: {X-Key: "${LOOKUP_KEY}"}}
    next: bye
    on_error: {http: {then: bye}}
  bye: {type: hangup, text: Goodbye.}
"""


def requests_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    root = tmp_path / "project"
    shutil.copytree(ROOT / "personalities", root / "personalities")
    (root / "flows").mkdir()
    (root / "flows" / "lookup.yaml").write_text(FLOW, encoding="utf-8")
    for key, value in {"PROJECT_ROOT": str(root), "DEFAULT_FLOW": "lookup",
                       "STORE_URL": f"sqlite:///{tmp_path / 'd.db'}", **env}.items():
        monkeypatch.setenv(key, value)
    output = CliRunner().invoke(doctor_command, []).output
    return [line for line in output.splitlines() if line.split()[1:2] == ["requests"]]


def test_unset_allow_list_and_variables_are_named(
        clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKUP_KEY", raising=False)
    found = requests_lines(tmp_path, monkeypatch)
    assert [line.split()[0] for line in found] == ["WARN", "WARN"]
    assert "HTTP_ALLOW_HOSTS is not set: every request of lookup is refused" in found[0]
    assert "${LOOKUP_KEY} is used by lookup but LOOKUP_KEY is not set" in found[1]


def test_set_ones_pass_without_showing_the_value(
        clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = requests_lines(tmp_path, monkeypatch, HTTP_ALLOW_HOSTS="api.example.com",
                           LOOKUP_KEY="value-never-shown")
    assert [line.split()[0] for line in found] == ["ok"]
    assert "value-never-shown" not in found[0]


def test_a_host_the_allow_list_refuses_is_named(
        clean_environment: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = requests_lines(tmp_path, monkeypatch, HTTP_ALLOW_HOSTS="api.other.com",
                           LOOKUP_KEY="set")
    assert [line.split()[0] for line in found] == ["WARN"]
    assert "api.example.com (used by lookup) is not in HTTP_ALLOW_HOSTS" in found[0]
