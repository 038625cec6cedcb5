"""The editor's tests run on a copy of the bundled project in tmp_path: they write flows/, and
the checkout's own flows must never change."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the bundled flows and personalities."""
    copy = tmp_path / "project"
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, copy / folder)
    return copy


@pytest.fixture
def app_config(app_config: dict[str, Any], project: Path) -> dict[str, Any]:
    # No watcher: what goes live after a save is the save's own reload.
    return {**app_config, "PROJECT_ROOT": str(project), "RELOAD": False}


def signed_in(client: FlaskClient) -> str:
    """Sign `client` in; its CSRF token."""
    answer = client.post("/login", data={"password": "test-password", "next": "/"})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    token = client.get("/api/session").get_json()["csrf_token"]
    assert isinstance(token, str) and token
    return token


@pytest.fixture
def editor(app: Flask) -> Callable[..., Any]:
    """`editor(method, url, json=...)`: a signed-in request with the CSRF token."""
    client = app.test_client()
    token = signed_in(client)

    def send(method: str, url: str, **kwargs: Any) -> Any:
        headers = {"X-CSRF-Token": token, **kwargs.pop("headers", {})}
        return client.open(url, method=method, headers=headers, **kwargs)

    return send
