"""What scoring an utterance's sentiment costs next to the voice webhook that carries it.

    .venv/bin/python -m bench.sentiment_cost

(bench/intelligence.py puts the same numbers in the benchmarks' table.)

Calls the bundled support_triage flow in-process (offline model, no network) and says the same
sentence to its assistant many times, measuring CPU time (time.process_time): per webhook round
trip, per `CallService.advance` (the webhook without HTTP), and per `score()` of that sentence.
Prints the ratios; the bar is 5% of a webhook's CPU. Nothing is written to the project.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.authoring.transports import app_transport
from engine.calls.sentiment import score
from engine.simulator import SimulatedCall
from engine.web.app import create_app

TEXT = "I already told you that twice, this is not what I asked for."
CALLS, SAYS = 20, 15  # support_triage ends a call after 20 turns
SCORES = 20_000


def cost() -> tuple[float, float, float]:
    """CPU seconds of (one `score()`, one webhook round trip in-process, one
    `CallService.advance`), measured in one run."""
    logging.disable(logging.WARNING)
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"PROJECT_ROOT": str(root), "STORE_URL": f"sqlite:///{tmp}/m.db",
                          "TWILIO_AUTH_TOKEN": "t", "DASHBOARD_PASSWORD": "p",
                          "SECRET_KEY": "s", "TESTING": True, "RELOAD": False,
                          "PUBLISHER": False, "CALLER_CALL_LIMIT": "off",
                          "OPENAI_API_KEY": ""})
        service = app.extensions["phoney"].call_service
        advance = service.advance
        inside = {"cpu": 0.0, "count": 0}

        def timed(*args: Any, **kwargs: Any) -> str:
            started = time.process_time()
            try:
                return advance(*args, **kwargs)  # type: ignore[no-any-return]
            finally:
                inside["cpu"] += time.process_time() - started
                inside["count"] += 1

        service.advance = timed
        post = app_transport(app)
        round_trip = 0.0
        for _ in range(CALLS):
            call = SimulatedCall(post, "http://localhost", "t", to="+15550003000")
            call.start()
            call.say("I have a question about something else.")  # on to the assistant
            for _ in range(SAYS):
                started = time.process_time()
                call.say(TEXT)
                round_trip += time.process_time() - started
            call.hang_up()
        app.extensions["phoney"].store.close()
    webhook = round_trip / (CALLS * SAYS)
    service_cpu = inside["cpu"] / inside["count"]
    started = time.process_time()
    for _ in range(SCORES):
        score(TEXT)
    scoring = (time.process_time() - started) / SCORES
    logging.disable(logging.NOTSET)
    return scoring, webhook, service_cpu


def main() -> None:
    scoring, webhook, service_cpu = cost()
    print(f"score() of one utterance:            {scoring * 1e6:8.1f} us CPU")
    print(f"voice webhook, in-process round trip: {webhook * 1e6:8.0f} us CPU "
          f"(scoring is {scoring / webhook:.2%} of it)")
    print(f"CallService.advance alone:           {service_cpu * 1e6:8.0f} us CPU "
          f"(scoring is {scoring / service_cpu:.2%} of it; bar 5%)")


if __name__ == "__main__":
    main()
