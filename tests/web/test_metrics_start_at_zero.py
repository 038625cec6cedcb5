"""`/metrics` on a fresh process: every known label of the error, delivery and speech series is
there at 0 before anything has happened, so `rate(...)` reads 0 instead of "no data".

The instruments belong to the process, and other tests increment them, so the app is made and
scraped in a child process of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from engine.web.metrics import ERROR_LABELS
from tests.conftest import ROOT

FRESH_SCRAPE = textwrap.dedent("""
    import sys
    from engine.web.app import create_app

    class Sink:
        name = "fresh-sink"
        max_batch = 10

        def deliver(self, events):
            pass

    app = create_app({"PROJECT_ROOT": sys.argv[1], "STORE_URL": sys.argv[2],
                      "TWILIO_AUTH_TOKEN": "test-token", "DASHBOARD_PASSWORD": "pw",
                      "SECRET_KEY": "s", "TESTING": True, "PUBLISHER": False,
                      "EVENT_SINKS": [Sink()], "SPEECH_WARMUP": False})
    print(app.test_client().get("/metrics").get_data(as_text=True))
""")


def fresh_samples(tmp_path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("PROMETHEUS_", "prometheus_"))}
    environment["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", FRESH_SCRAPE, str(ROOT),
                           f"sqlite:///{tmp_path / 'fresh.db'}"], env=environment, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(done.stdout)
            for sample in family.samples}


def test_known_labels_start_at_zero_on_a_fresh_process(tmp_path: Path) -> None:
    samples = fresh_samples(tmp_path)

    for kind in sorted({*ERROR_LABELS, "other"}):
        assert samples.get(("phoney_call_errors_total", (("kind", kind),))) == 0, kind
    for name in ("delivered", "failed", "rejected"):
        assert samples.get((f"phoney_events_{name}_total", (("sink", "fresh-sink"),))) == 0
    for outcome in ("ok", "failed"):  # what engine/speech/tts.py reports
        assert samples.get(("phoney_speech_synthesis_seconds_count",
                            (("outcome", outcome),))) == 0
    for route in ("/api/incoming-call", "/api/call-status"):
        assert samples.get(("phoney_webhook_duration_seconds_count", (("route", route),))) == 0
    # The caller limit's refusals are a kind of their own, not `other`.
    assert "rate_limit_caller" in ERROR_LABELS
