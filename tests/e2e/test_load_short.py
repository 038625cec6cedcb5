"""`bench/load.py --short` passes: ten concurrent calls against gunicorn (two workers, one of
them SIGKILLed mid-run) on Redis, with the model and speech failing at random, every invariant
checked against the store. The full run's figures are in docs/load.md."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import require_redis
from tests.e2e.harness import ROOT, clean_environment

pytestmark = pytest.mark.e2e

BOUND = 240.0
"""Seconds the short run may take on a slow, busy machine (it takes about a minute)."""


def test_the_short_load_run_keeps_every_invariant() -> None:
    require_redis()
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--short"],
                         cwd=ROOT, env=clean_environment({}), capture_output=True, text=True,
                         timeout=BOUND, check=False)
    print(run.stdout)
    print(run.stderr[-4000:], file=sys.stderr)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "OK: every invariant holds" in run.stdout
    assert "completed 10 (store: 10 completed)" in run.stdout
    assert "SIGKILLed" in run.stdout
