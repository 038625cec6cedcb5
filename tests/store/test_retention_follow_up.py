"""What a retention run removed is handed to its follow-up (the server re-warms its speech when
cached speech went), and a failing follow-up leaves the run done."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.retention import DAY, Retention
from engine.store import Pruned, open_store
from tests.store.test_prune import make_call


def test_the_follow_up_gets_what_the_run_removed(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    try:
        now = time.time()
        make_call(store, "CAold", now - 40 * DAY, ended=True)
        seen: list[Pruned] = []
        job = Retention(store, 30, clock=lambda: now, after=seen.append)
        assert job.check()
        assert seen == [job.last] and seen[0].calls == 1
    finally:
        store.close()


def test_a_failing_follow_up_is_logged_and_the_run_stands(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    try:
        now = time.time()
        make_call(store, "CAold", now - 40 * DAY, ended=True)

        def broken(pruned: Pruned) -> None:
            raise RuntimeError("no speech today")

        job = Retention(store, 30, clock=lambda: now, after=broken)
        assert job.check()
        assert store.get_state("CAold") is None
        assert "follow-up of a prune failed" in caplog.text
    finally:
        store.close()
