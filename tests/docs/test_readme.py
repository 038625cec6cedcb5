"""The README shows the main flow's graph as the exporter draws it today."""

from pathlib import Path

from engine.flows.export import mermaid_block
from engine.flows.loader import load_project

ROOT = Path(__file__).resolve().parents[2]


def test_readme_embeds_the_current_mermaid_of_the_main_flow() -> None:
    registry = load_project(ROOT).registry
    assert registry is not None
    block = mermaid_block(registry.flows["receptionist"])
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert block.strip() in readme, (
        "README.md's mermaid block is out of date: paste the output of "
        "`flask flows export receptionist --format mermaid` into it")


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
