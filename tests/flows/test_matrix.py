"""`flask flows languages [FLOW ...]`: the language support matrix, exit 1 on a gap; and the
same rows in `GET /api/flows`."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask

from engine.web.app import create_app
from tests.conftest import ROOT
from tests.flows.conftest import PERSONALITY, Project
from tests.flows.test_languages import BILINGUAL


def _app(root: Path, store: Path | None = None) -> Flask:
    where = store or root
    return create_app({"PROJECT_ROOT": str(root), "STORE_URL": f"sqlite:///{where / 's.db'}"})


def test_the_bundled_flows_have_no_gaps(tmp_path: Path) -> None:
    result = _app(ROOT, tmp_path).test_cli_runner().invoke(args=["flows", "languages"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["flow", "language", "texts", "twilio", "voice", "openai",
                                "voice", "relay", "voice", "recognition"]
    spanish = next(line for line in lines if line.startswith("family_clinic") and "es-US" in line)
    assert spanish.split() == ["family_clinic", "es-US", "10/10", "Polly.Lupe-Neural", "coral",
                               "Amazon", "Lupe-Neural", "yes"]
    assert "gap:" not in result.output


def test_a_language_spoken_with_a_voice_of_another_is_a_gap(project: Project) -> None:
    project.personality("p")  # Joanna only: English
    project.flow("t", BILINGUAL)
    result = _app(project.root).test_cli_runner().invoke(args=["flows", "languages", "t"])
    assert result.exit_code == 1
    assert ("gap: t es-US: personality 'p': Twilio voice Polly.Joanna-Neural speaks en-US"
            in result.output)
    assert "gap: t en-US" not in result.output


def test_a_language_twilio_does_not_recognise_is_a_gap(project: Project) -> None:
    project.personality("p", PERSONALITY.format(id="p").replace(
        "voice: {twilio: Polly.Joanna-Neural}", "voice: {twilio: alice}"))
    project.flow("t", BILINGUAL.replace("es-US", "xh-ZA"))
    result = _app(project.root).test_cli_runner().invoke(
        args=["flows", "languages", "t", "--format", "json"])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert [(row["language"], row["recognition"], row["gaps"]) for row in rows] == [
        ("en-US", True, []),
        ("xh-ZA", False, ["Twilio's speech recognition does not list xh-ZA"])]
    assert rows[1]["texts"] == rows[1]["total"] == 3 and rows[1]["twilio"] == "alice"


def test_an_unknown_flow_is_named(project: Project) -> None:
    project.personality("p")
    project.flow("t", BILINGUAL)
    result = _app(project.root).test_cli_runner().invoke(args=["flows", "languages", "nope"])
    assert result.exit_code == 1 and "unknown flow 'nope'; known flows: t" in result.output
