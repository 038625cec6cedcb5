"""`/healthz` (the process is up) and `/readyz` (the store answers and valid flows are loaded)."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.store import open_store
from tests.conftest import ROOT


def closed_port() -> int:
    """A local port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_healthz_says_ok_without_a_login(client: FlaskClient) -> None:
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ok"}
    assert answer.headers["Cache-Control"] == "no-store"


def test_readyz_is_ready_with_the_store_up_and_the_flows_loaded(client: FlaskClient) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ready", "checks": {"store": "ok", "flows": "ok"}}


def test_readyz_is_unavailable_when_the_store_does_not_answer_its_ping(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.extensions["phoney"].store, "ping", lambda: False)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["status"] == "unavailable"
    assert body["reasons"] == ["store unreachable"]
    assert body["checks"] == {"store": "unreachable", "flows": "ok"}


def test_readyz_is_unavailable_when_the_ping_itself_fails(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> bool:
        raise OSError("disk gone")

    monkeypatch.setattr(app.extensions["phoney"].store, "ping", broken)
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["reasons"] == ["store unreachable"]
    assert client.get("/healthz").status_code == 200  # up, just not ready


def test_readyz_is_unavailable_with_a_redis_store_on_a_closed_port(
        app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    unreachable = open_store(f"redis://127.0.0.1:{closed_port()}/0")
    try:
        monkeypatch.setattr(app.extensions["phoney"].runtime, "store", unreachable)
        answer = client.get("/readyz")
    finally:
        unreachable.close()
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["store"] == "unreachable"


def test_readyz_is_unavailable_without_a_valid_set_of_flows(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    project = tmp_path / "project"
    for folder in ("flows", "personalities", "schemas"):
        shutil.copytree(ROOT / folder, project / folder)
    broken = project / "flows" / "receptionist.yaml"
    broken.write_text(broken.read_text(encoding="utf-8").replace("start: ", "start: nowhere_",
                                                                 1), encoding="utf-8")
    client = make_app(PROJECT_ROOT=str(project)).test_client()

    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["checks"] == {"store": "ok", "flows": "not loaded"}
    assert len(body["reasons"]) == 1
    assert body["reasons"][0].startswith("no valid set of flows loaded (")
