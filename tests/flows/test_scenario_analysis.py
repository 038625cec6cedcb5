"""A scenario's `analysis:`: the model's answers scripted, the stored analysis checked once the
call has ended, and what the script names checked against the flow's analysis fields."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import Result

from engine.settings import ENV_KEYS
from engine.web.app import create_app
from tests.flows.conftest import dedent, line_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def flask(root: Path, *args: str) -> Result:
    app = create_app({"PROJECT_ROOT": str(root), "STORE_URL": f"sqlite:///{root / 's.db'}"})
    return app.test_cli_runner().invoke(args=["flows", *args])


def scenarios(root: Path, flow: str, text: str) -> str:
    (root / "flows" / f"{flow}.test.yaml").write_text(dedent(text), encoding="utf-8")
    return dedent(text)


def test_an_analysis_that_differs_fails_the_scenario_at_its_line(copy: Path) -> None:
    text = scenarios(copy, "support_triage", """
        flow: support_triage
        scenarios:
          - name: the model says sales for a billing call
            analysis:
              model: {summary: A call., reason: sales, resolved: true, callback_requested: false}
              expect: {status: ok, summary: billing, fields: {reason: billing}}
            steps:
              - say: It's about my bill.
        """)
    result = flask(copy, "test", "support_triage")
    assert result.exit_code == 1
    line = line_of(text, "analysis:")
    assert (f"flows/support_triage.test.yaml:{line}: the analysis: expected the analysis "
            f"summary to contain 'billing'; it is 'A call.'; expected analysis field reason = "
            f"'billing'; it is 'sales'") in result.output


def test_a_model_answering_prose_twice_is_stored_as_failed(copy: Path) -> None:
    scenarios(copy, "support_triage", """
        flow: support_triage
        scenarios:
          - name: prose twice
            analysis:
              model: [It was a billing call., Billing.]
              expect: {status: ok}
            steps:
              - say: It's about my bill.
        """)
    result = flask(copy, "test", "support_triage")
    assert "expected the analysis to be ok; it is failed (the answer is not JSON: " \
           "'Billing.')" in result.output


def test_a_script_for_a_flow_without_analysis_or_an_unknown_field_is_refused(
        copy: Path) -> None:
    text = scenarios(copy, "support_triage", """
        flow: support_triage
        scenarios:
          - name: a typo in a field
            analysis:
              expect: {fields: {resaon: billing}}
            steps:
              - say: It's about my bill.
        """)
    receptionist = scenarios(copy, "receptionist", """
        flow: receptionist
        scenarios:
          - name: the receptionist learns nothing
            analysis: {expect: {status: offline}}
            steps:
              - press: "0"
        """)
    result = flask(copy, "validate")
    assert result.exit_code == 1
    assert (f"flows/support_triage.test.yaml:{line_of(text, 'resaon')}:") in result.output
    assert ("scenarios[0].analysis.expect.fields.resaon: the analysis of flow 'support_triage' "
            "has no field 'resaon' (did you mean 'reason'?)") in result.output
    assert (f"flows/receptionist.test.yaml:{line_of(receptionist, 'analysis:')}:") \
        in result.output
    assert "flow 'receptionist' declares no analysis" in result.output
