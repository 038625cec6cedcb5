"""bench/apps.py's hand-written peer: it answers a new call with the very TwiML Phoney answers,
writes one row of a few hundred bytes, and refuses what is not signed, as Phoney does."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from bench.common import OPENAI_KEY, TOKEN, call_sid, incoming
from bench.profile_webhook import BASE_URL, build_app, call, environ_for
from tests.doubles.openai_server import Audio, OpenAIDouble


@pytest.fixture
def peer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Flask, Path]:
    monkeypatch.setenv("BENCH_APP", "bare")  # what importing bench.apps builds: nothing heavy
    apps: Any = importlib.import_module("bench.apps")
    path = tmp_path / "peer.sqlite3"
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE_URL)
    monkeypatch.setenv("STORE_URL", f"sqlite:///{path}")
    made: Callable[[], Flask] = apps.peer_app
    return made(), path


def test_the_peer_answers_a_new_call_as_phoney_does(
        clean_environment: None, peer: tuple[Flask, Path], tmp_path: Path) -> None:
    peer_app, path = peer
    with OpenAIDouble(api_key=OPENAI_KEY) as double, \
            contextlib.redirect_stderr(io.StringIO()):
        double.default_speech(Audio())
        phoney = build_app(tmp_path, double.base_url)
        try:
            sid = call_sid(1, "peer-test")
            theirs = call(phoney, environ_for(incoming(BASE_URL, sid))).decode()
        finally:
            phoney.extensions["phoney"].store.close()
    ours = call(peer_app, environ_for(incoming(BASE_URL, call_sid(2, "peer-test")))).decode()
    assert "<Gather" in ours and ours.count("<Play>") == 2 and "<Redirect" in ours
    assert ours == theirs

    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT call_sid, caller, called, data FROM calls").fetchall()
    finally:
        db.close()
    assert [row[0] for row in rows] == [call_sid(2, "peer-test")]
    assert rows[0][2] == "+15550001000"
    assert 200 <= len(rows[0][3]) <= 600 and json.loads(rows[0][3])["caller"]["number"]


def test_the_peer_refuses_an_unsigned_webhook(peer: tuple[Flask, Path]) -> None:
    peer_app, _ = peer
    answer = peer_app.test_client().post("/api/incoming-call", data={"CallSid": "CA1"},
                                         headers={"X-Twilio-Signature": "forged"})
    assert answer.status_code == 403
