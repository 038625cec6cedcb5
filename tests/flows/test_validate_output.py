"""`flask flows validate` on a broken project: every problem printed once (no log line repeats
it on stderr), and one broken flow leaves the other flows' scenario files checked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from engine.settings import ENV_KEYS

ROOT = Path(__file__).resolve().parents[2]


def _copy(tmp_path: Path) -> Path:
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def _validate(root: Path) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key not in ENV_KEYS}
    environment.update(PROJECT_ROOT=str(root), STORE_URL=f"sqlite:///{root / 's.db'}")
    return subprocess.run([sys.executable, "-m", "flask", "flows", "validate"], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=120,
                          check=False)


def test_a_broken_flow_is_reported_once_and_the_other_scenarios_are_checked(
        tmp_path: Path) -> None:
    root = _copy(tmp_path)
    path = root / "flows" / "after_hours.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "digits == '2'", "digits = '2'"), encoding="utf-8")
    completed = _validate(root)
    assert completed.returncode == 1, completed.stderr
    assert completed.stdout.splitlines() == [
        "flows/after_hours.test.yaml:4:7: warning: flow: flow 'after_hours' does not load, so "
        "the nodes and exits named here were not checked",
        "flows/after_hours.yaml:64:15: nodes.closed.routes[1].when: condition does not parse: "
        "use == to compare (a single = is not a comparison): said_any('message', 'voicemail') "
        "or digits == '2'"]
    assert completed.stderr.splitlines() == ["17 files checked: 1 errors, 1 warnings"]


def test_a_flow_that_does_not_compile_warns_about_its_own_scenarios_only(
        tmp_path: Path) -> None:
    root = _copy(tmp_path)
    path = root / "flows" / "after_hours.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "start: welcome", "start: [welcome]"), encoding="utf-8")
    scenario = root / "flows" / "receptionist.test.yaml"
    scenario.write_text(scenario.read_text(encoding="utf-8").replace(
        "node: voicemail", "node: voicemale", 1), encoding="utf-8")
    completed = _validate(root)
    assert completed.returncode == 1, completed.stderr
    lines = completed.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "flows/after_hours.test.yaml", "flows/after_hours.yaml", "flows/receptionist.test.yaml"]
    assert lines[0].endswith("warning: flow: flow 'after_hours' does not load, so the nodes "
                             "and exits named here were not checked")
    assert "has no node 'voicemale' (did you mean 'voicemail'?)" in lines[2]
