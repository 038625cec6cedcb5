"""Fixtures for the authoring tools: a small project written into tmp_path, apps over it.

`mini` is a flow small enough to take every edge in a few scenarios, with two routes to the same
node (told apart by their conditions) and the whole error strategy. Apps are made with
`RELOAD=False` unless a test turns hot reload on.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from engine.settings import ENV_KEYS
from engine.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
AUTH_TOKEN = "authoring-token"
PASSWORD = "authoring-password"

PERSONALITY = """\
personality: p
name: P
system_prompt: You answer the phone for {{ vars.business }}, briefly and kindly.
voice: {twilio: Polly.Matthew-Neural}
examples:
  - input: Hi
    response: Hello, how can I help?
"""

MINI = """\
flow: mini
description: A small flow for the authoring tests.
personality: p
timezone: America/New_York
numbers: ["+15550007000"]
vars: {business: Acme, desk: "+15550009999", holiday: false}
limits: {max_turns: 3, then: bye}
defaults:
  no_input: {retries: 1, reprompt: ["Still there?"], then: bye}
  on_error:
    network: {retry: 1, then: sorry}
    rate_limit: {then: sorry}
    ai_failure: {then: sorry}
    tts_failure: {voice: twilio}
start: hello
nodes:
  hello:
    type: say
    text: Hello from {{ vars.business }}.
    next: chat
  chat:
    type: ai
    opening: How can I help?
    input: [speech, dtmf]
    routes:
      - when: said_any('desk')
        to: desk
      - when: digits == '0'
        to: desk
    exits:
      bye: The caller is done.
  sorry:
    type: say
    text: Sorry about that.
    next: bye
  desk:
    type: transfer
    to: "{{ vars.desk }}"
    announce: Putting you through.
    on_fail: bye
  bye:
    type: hangup
    text: Goodbye.
"""


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line of `text` containing `needle`."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in:\n{text}")


@dataclass
class Project:
    root: Path

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text), encoding="utf-8")
        return path

    def scenarios(self, text: str, flow_id: str = "mini") -> Path:
        return self.write(f"flows/{flow_id}.test.yaml", text)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment first: keep a developer's own settings out of the tests."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """flows/mini.yaml and personalities/p.yaml under tmp_path/project."""
    made = Project(tmp_path / "project")
    made.write("personalities/p.yaml", PERSONALITY)
    made.write("flows/mini.yaml", MINI)
    return made


@pytest.fixture
def bundled_copy(tmp_path: Path) -> Project:
    """A copy of the bundled flows and personalities, safe to edit."""
    made = Project(tmp_path / "bundled")
    for folder in ("flows", "personalities"):
        shutil.copytree(ROOT / folder, made.root / folder)
    return made


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """`make_app(root, **config)`: an app over the project at `root`, closed at the end."""
    made: list[Flask] = []

    def make(root: Path, clock: Callable[[], float] | None = None, **config: Any) -> Flask:
        settings = {"PROJECT_ROOT": str(root),
                    "STORE_URL": f"sqlite:///{tmp_path / f'store{len(made)}.sqlite3'}",
                    "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "DASHBOARD_PASSWORD": PASSWORD,
                    "SECRET_KEY": "authoring-secret", "RELOAD": False, "PUBLISHER": False,
                    **config}
        app = create_app(settings, clock=clock)
        made.append(app)
        return app

    yield make
    for app in made:
        watcher = app.extensions.get("phoney.watcher")
        if watcher is not None:
            watcher.stop()
        app.extensions["phoney"].store.close()


def logged_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert client.post("/login", data={"password": PASSWORD}).status_code == 302
    return client
