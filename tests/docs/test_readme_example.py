"""The README's complete example flow validates with no problem at all, and the scenarios the
README gives for it pass, through the real webhooks, with the bundled personalities."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from flask import Flask

from engine.settings import ENV_KEYS
from engine.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_blocks(first_line: str) -> list[str]:
    """The README's yaml blocks that begin with `first_line`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return [block for block in _BLOCK.findall(readme) if block.startswith(first_line + "\n")]


def example_flow() -> str:
    [flow] = [block for block in readme_blocks("flow: pizzeria") if "\nnodes:\n" in block]
    return flow


def example_scenarios() -> str:
    [scenarios] = [block for block in readme_blocks("flow: pizzeria")
                   if "\nscenarios:\n" in block]
    return scenarios


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    shutil.copytree(ROOT / "personalities", tmp_path / "personalities")
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "pizzeria.yaml").write_text(example_flow(), encoding="utf-8")
    (tmp_path / "flows" / "pizzeria.test.yaml").write_text(example_scenarios(),
                                                           encoding="utf-8")
    return tmp_path


def _app(root: Path) -> Flask:
    return create_app({"PROJECT_ROOT": str(root), "STORE_URL": f"sqlite:///{root / 's.db'}",
                       "RELOAD": False, "PUBLISHER": False})


def test_the_example_shows_every_part_of_the_language() -> None:
    flow = example_flow()
    assert "\n..." not in flow and "  ...\n" not in flow
    for part in ("type: switch", "type: gather", "type: ai", "type: transfer", "on_fail:",
                 "routes:", "when:", "to:", "exits:", "no_input:", "on_error:"):
        assert part in flow, part


def test_the_readme_example_flow_validates_cleanly(example: Path) -> None:
    result = _app(example).test_cli_runner().invoke(args=["flows", "validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # not even a warning


def test_the_readme_example_scenarios_pass(example: Path) -> None:
    result = _app(example).test_cli_runner().invoke(args=["flows", "test", "pizzeria"])
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    assert re.search(r"^[1-9][0-9]* passed, 0 failed$", result.output, re.MULTILINE), \
        result.output
