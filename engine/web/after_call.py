"""Wiring of the post-call analysis (engine/events/analysis_sink.py) into an app.

`install_analysis(app, runtime)` builds the analysis lane: an `AnalysisSink` with the model
analyst (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL) or the offline one, behind a publisher
of its own, kept on `app.extensions["phoney.analysis"]`. It runs when the app serves requests and
its config does not say `ANALYSIS=False` (nor `PUBLISHER=False`; a testing app wants
`ANALYSIS=True`): in a daemon thread that holds
the lane weakly, so an app that is dropped (tests make many) takes its thread with it.
`ANALYSIS_OPTIONS` (app config) are keyword arguments for its `Publisher`.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

from flask import Flask

from engine.ai.analysis import Analyst, ModelAnalyst, OfflineAnalyst
from engine.ai.model import shared_client
from engine.bootstrap import Runtime
from engine.events.analysis_sink import AnalysisSink
from engine.events.publisher import Publisher
from engine.web.outbound import call_flow
from engine.web.watcher import serving_requests

log = logging.getLogger(__name__)

EXTENSION = "phoney.analysis"
POLL = 0.5


def analyst_for(runtime: Runtime) -> Analyst:
    """The model analyst with a model key, else the offline one."""
    settings = runtime.settings
    if not settings.openai_api_key:
        return OfflineAnalyst()
    client = shared_client(settings.openai_api_key, settings.openai_base_url)
    return ModelAnalyst(client, settings.openai_model)


class AnalysisLane:
    """The analysis sink's publisher, run by `start` in a thread that holds it weakly."""

    def __init__(self, publisher: Publisher, sink: AnalysisSink, poll: float = POLL) -> None:
        self.publisher = publisher
        self.sink = sink
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> AnalysisLane:
        """Make the cursor (calls ending from now on are analysed) and start the thread."""
        self.publisher.prepare()
        if self._thread is None:
            self._thread = threading.Thread(target=_run, args=(weakref.ref(self.publisher),
                                                               self._stop, self.poll),
                                            name="call-analysis", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and hand the lease back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.publisher.stop(timeout=0)

    def __del__(self) -> None:
        self._stop.set()


def _run(ref: weakref.ref[Publisher], stop: threading.Event, poll: float) -> None:
    while not stop.is_set():
        publisher = ref()
        if publisher is None:
            return
        try:
            busy = publisher.run_once()
        except Exception:  # the store failing now: the next round may do
            log.exception("analysis: a round failed")
            busy = False
        del publisher
        if not busy:
            stop.wait(poll)


def install_analysis(app: Flask, runtime: Runtime) -> AnalysisLane:
    """Build (and, as the module docstring says, start) the app's analysis lane."""
    sink = AnalysisSink(runtime.store, analyst_for(runtime),
                        call_flow(runtime.store, runtime.library),
                        write=runtime.recorder.record, clock=runtime.call_service.clock)
    # The lease outlasts one analysis (two model requests of ANALYSIS_TIMEOUT at most), so no
    # other process takes the lane over while the model thinks.
    options: dict[str, Any] = {"lease_seconds": 180.0,
                               **dict(app.config.get("ANALYSIS_OPTIONS") or {})}
    lane = AnalysisLane(Publisher(runtime.store, [sink], **options), sink,
                        poll=float(options.get("poll_interval", POLL)))
    app.extensions[EXTENSION] = lane
    # Off in tests unless asked for (ANALYSIS=True), as retention is: a thread left polling a
    # store the test has closed is trouble.
    wanted = app.config.get("ANALYSIS", not app.testing and app.config.get("PUBLISHER", True))
    if wanted and serving_requests():
        lane.start()
    return lane
