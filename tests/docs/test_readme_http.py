"""The README's HTTP actions section: its http node and its tools validate as written, in a flow
that has the nodes they lead to."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from engine.flows.loader import load_project
from tests.conftest import ROOT

FLOW = """\
flow: example
personality: friendly
vars: {business: Acme Dental, day: monday}
defaults:
  no_input: {retries: 1, then: goodbye}
  on_error:
    network: {then: apology}
    rate_limit: {then: apology}
    ai_failure: {then: apology}
    tts_failure: {voice: twilio}
start: check_slots
nodes:
NODES
  offer: {type: say, text: "The first slot is {{ vars.first_slot }}.", next: assist}
  apology: {type: say, text: Sorry., next: goodbye}
  goodbye: {type: hangup, text: Goodbye.}
"""


def test_the_readme_http_examples_validate(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### HTTP actions and tools", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(blocks) == 2 and "type: http" in blocks[0] and "tools:" in blocks[1]
    root = tmp_path / "project"
    shutil.copytree(ROOT / "personalities", root / "personalities")
    (root / "flows").mkdir()
    (root / "flows" / "example.yaml").write_text(FLOW.replace("NODES\n", "".join(blocks)),
                                                 encoding="utf-8")
    result = load_project(root)
    assert result.problems == [] and result.registry is not None
    assert "error:http" in {edge.kind for edge in result.registry.flows["example"].edges}
