"""The start warning of an open /metrics: with no METRICS_TOKEN anyone who reaches the server
can read it, which a server says once, loudly, when it starts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from unittest import mock

import pytest
from flask import Flask

from engine.web import app as web_app


def metrics_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING and "METRICS_TOKEN" in record.getMessage()]


def test_a_server_without_a_metrics_token_warns_that_metrics_are_open(
        make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = make_app()
    [line] = metrics_warnings(caplog)
    assert "/metrics is open to anyone" in line and "set METRICS_TOKEN" in line
    assert app.test_client().get("/metrics").status_code == 200  # as the warning says


def test_a_metrics_token_closes_metrics_and_silences_the_warning(
        make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(METRICS_TOKEN="scrape-secret")
    assert metrics_warnings(caplog) == []
    assert app.test_client().get("/metrics").status_code == 401


def test_a_short_flask_command_does_not_warn(make_app: Callable[..., Flask],
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with mock.patch.object(web_app, "serving_requests", return_value=False):
        make_app()
    assert metrics_warnings(caplog) == []
