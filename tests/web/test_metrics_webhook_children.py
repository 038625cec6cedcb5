"""The webhook histogram's child is looked up once per route, and what it observes still adds
up across the app instances of a process and, in multi-process mode, across workers (a child
made before a fork included)."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.datastructures import MultiDict

from engine.web.metrics import instruments
from tests.conftest import ROOT
from tests.support import AUTH_TOKEN
from tests.web.test_metrics import SCRAPER, WEBHOOK, Samples, grew, run_python, scrape, value
from tests.web.test_signature import sign

FALLBACK = "/api/incoming-call/fallback"


def post_fallback(app: Flask, token: str) -> None:
    form = MultiDict({"CallSid": "CA" + "2" * 32})
    signature = sign("http://localhost" + FALLBACK, form, token)
    answer = app.test_client().post(FALLBACK, data=form,
                                    headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 200


def test_labels_is_asked_once_a_route_and_every_webhook_is_observed(
        make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    client = app.test_client()
    asked: list[str] = []
    labels = Histogram.labels

    def counting(self: Histogram, *values: str) -> Histogram:
        if self is instruments().webhook:
            asked.extend(values)
        return labels(self, *values)

    monkeypatch.setattr(Histogram, "labels", counting)
    before = scrape(client)
    for _ in range(3):
        post_fallback(app, AUTH_TOKEN)
    after = scrape(client)
    assert asked.count(FALLBACK) <= 1  # once (none if an earlier test made the child)
    assert grew(before, after, f"{WEBHOOK}_count", route=FALLBACK) == 3

    other = make_app()  # a second app in the same process counts into the same child
    post_fallback(other, AUTH_TOKEN)
    assert grew(after, scrape(client), f"{WEBHOOK}_count", route=FALLBACK) == 1


WORKER = textwrap.dedent("""
    import os, sys
    from twilio.request_validator import RequestValidator
    from engine.web.app import create_app
    app = create_app({"PROJECT_ROOT": sys.argv[1], "STORE_URL": sys.argv[2],
                      "TWILIO_AUTH_TOKEN": "t", "DASHBOARD_PASSWORD": "p", "SECRET_KEY": "k",
                      "TESTING": True})
    form = {"CallSid": "CA" + "3" * 32}
    path = "/api/incoming-call/fallback"
    signature = RequestValidator("t").compute_signature("http://localhost" + path, form)

    def post():
        answer = app.test_client().post(path, data=form, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200

    post()  # the child for the route is made in this process...
    pid = os.fork()
    if pid == 0:  # ...and observes in the forked one too, into that process's own file
        post(); post()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    post()
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_multiprocess_mode_adds_up_each_workers_webhooks(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("PROMETHEUS_", "prometheus_"))}
    environment.update(PROMETHEUS_MULTIPROC_DIR=str(directory), PYTHONPATH=str(ROOT))
    store = f"sqlite:///{tmp_path / 'p.db'}"
    for _ in range(2):  # two workers, each forking once
        run_python(WORKER, environment, str(ROOT), store)
    text = run_python(SCRAPER, environment, str(ROOT), store)

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert value(samples, f"{WEBHOOK}_count", route=FALLBACK) == 8
