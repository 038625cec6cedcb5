"""RETENTION_DAYS end to end: the setting, `flask calls prune`, and the servers' own pruning,
which one process claims in the store at a time (so several gunicorn workers do not all prune),
on SQLite and on the real Redis. Calls are made old by writing old time stamps; the servers'
clock is the test's."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from engine.retention import (
    DAY,
    RETENTION,
    Retention,
    claim_run,
    retention_days,
)
from engine.store import CallStore, open_store
from tests.store.test_prune import make_call
from tests.support import Clock


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, app_config: dict[str, Any]) -> str:
    """The test's STORE_URL for `make_app`: its SQLite file, or the test Redis with a prefix."""
    if request.param == "redis":
        app_config["STORE_URL"] = str(request.getfixturevalue("redis_url"))
    return str(app_config["STORE_URL"])


def test_the_setting_reads_days_or_off() -> None:
    assert retention_days("") == 30 and retention_days(None) == 30
    assert retention_days("7") == 7 and retention_days(" 0.5 ") == 0.5
    for off in ("0", "off", "OFF", "none"):
        assert retention_days(off) is None
    for bad in ("soon", "-3", "inf", "nan"):
        with pytest.raises(ValueError, match="RETENTION_DAYS"):
            retention_days(bad)


def test_a_bad_setting_stops_the_start(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ValueError, match="RETENTION_DAYS"):
        make_app(RETENTION_DAYS="a month")


def test_one_process_claims_each_run(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]  # two workers
    try:
        now = 1_700_000_000.0
        assert claim_run(stores[0], now, 3600, "one") is True
        assert claim_run(stores[1], now, 3600, "two") is False
        assert claim_run(stores[0], now + 1800, 3600, "one") is False  # not due yet
        assert claim_run(stores[1], now + 3600, 3600, "two") is True
        assert claim_run(stores[0], now + 3600, 3600, "one") is False
    finally:
        for store in stores:
            store.close()


def test_servers_prune_by_themselves_one_at_a_time(
        make_app: Callable[..., Flask], store_url: str, clock: Clock) -> None:
    writer = open_store(store_url)
    try:
        make_call(writer, "CAold", clock() - 40 * DAY, ended=True)
        make_call(writer, "CArecent", clock() - 5 * DAY, ended=True)
        make_call(writer, "CAlive", clock(), ended=False)

        first = make_app(RETENTION=True, RETENTION_OPTIONS={"first_check": 0, "every": 3600})
        job: Retention = first.extensions[RETENTION]
        assert wait_until(lambda: job.runs == 1)  # no request asked for it
        assert writer.get_call("CAold") is None
        assert [call.call_sid for call in writer.list_calls()] == ["CAlive", "CArecent"]
        assert job.last is not None and job.last.calls == 1

        make_call(writer, "CAold2", clock() - 40 * DAY, ended=True)
        second = make_app(RETENTION=True, RETENTION_OPTIONS={"first_check": 0, "every": 3600})
        other: Retention = second.extensions[RETENTION]
        assert wait_until(lambda: other.checks >= 1)
        assert other.runs == 0  # the run was the first process's, within the hour
        assert writer.get_call("CAold2") is not None

        clock.advance(3600)  # an hour on: the next check, by whichever process, prunes
        assert other.check() is True
        assert writer.get_call("CAold2") is None
    finally:
        writer.close()


def test_no_thread_without_retention(make_app: Callable[..., Flask]) -> None:
    app = make_app(RETENTION=True, RETENTION_DAYS="off")
    assert app.extensions[RETENTION] is None
    assert RETENTION not in make_app().extensions  # tests (TESTING) ask for it explicitly


def test_the_prune_command(make_app: Callable[..., Flask], store_url: str) -> None:
    app = make_app(RETENTION_DAYS="30")
    store: CallStore = app.extensions["phoney"].store
    make_call(store, "CAold", time.time() - 40 * DAY, ended=True)
    make_call(store, "CAweek", time.time() - 7 * DAY, ended=True)
    runner = app.test_cli_runner()

    dry = runner.invoke(args=["calls", "prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 1 calls, 2 events, 1 stored answers" in dry.output
    assert store.get_call("CAold") is not None

    done = runner.invoke(args=["calls", "prune"])
    assert done.exit_code == 0 and "removed 1 calls" in done.output
    assert "older than 30 days" in done.output
    assert store.get_call("CAold") is None and store.get_call("CAweek") is not None

    shorter = runner.invoke(args=["calls", "prune", "--days", "5"])
    assert "removed 1 calls" in shorter.output and store.get_call("CAweek") is None
    assert runner.invoke(args=["calls", "prune", "--days", "0"]).exit_code != 0

    off = make_app(RETENTION_DAYS="off").test_cli_runner().invoke(args=["calls", "prune"])
    assert off.exit_code == 0 and "RETENTION_DAYS is off" in off.output
