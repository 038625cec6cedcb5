"""The composition root: the call service and its ports, built from settings.

`bootstrap` is the one place that decides which adapter fills each port: the store from
`STORE_URL`, the model (or the offline responder without `OPENAI_API_KEY`), the voices (OpenAI
speech with its cache, or Twilio's own), the clock, the event recorder and the callback URLs.
Every port can be handed in instead, which is how the scenario runner, the terminal and the
tests run the real service on fakes: nothing is patched after construction.
`create_app` (engine/web/app.py) calls it and adds the HTTP shell around what it returns.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from engine.actions.hosts import HostPolicy
from engine.actions.http import HttpClient
from engine.actions.secrets import Secrets
from engine.ai.model import ModelResponder, shared_client
from engine.ai.responder import OfflineResponder, Responder
from engine.ai.tools import ToolRunner
from engine.calls import (
    CallbackUrls,
    CallService,
    Clock,
    EventObserver,
    EventRecorder,
    FlowLibrary,
    Voicing,
    VoicingFactory,
    call_limits,
)
from engine.calls.requests import HttpPort
from engine.flows.model import Registry
from engine.settings import Settings
from engine.speech.cache import AudioCache
from engine.speech.tts import SpeechTimer, Synthesizer, TimedSynthesizer
from engine.speech.voices import SpeechVoicing, TwilioVoicing
from engine.speech.warmup import Warmup
from engine.store import CallStore, open_store

log = logging.getLogger(__name__)
library_log = logging.getLogger("engine.calls.library")


@contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    """`logger` drops its records while the block runs: a short `flask` command (validate,
    test, call) prints a refused set's problems on its own, and the log would repeat each."""
    def drop(record: logging.LogRecord) -> bool:
        return False

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


@dataclass
class Runtime:
    """What `bootstrap` built: the call service and the parts others share with it."""

    settings: Settings
    store: CallStore
    library: FlowLibrary
    recorder: EventRecorder
    call_service: CallService
    warmup: Warmup | None = None  # speech warm-up; None without OpenAI voices to warm


def bootstrap(settings: Settings, *, store: CallStore | None = None,
              responder: Responder | None = None, voicing: VoicingFactory | None = None,
              clock: Clock | None = None, recorder: EventRecorder | None = None,
              urls: CallbackUrls | None = None, observers: tuple[EventObserver, ...] = (),
              speech_timer: SpeechTimer | None = None, announce: bool = False,
              http: HttpPort | None = None) -> Runtime:
    """Build the call service from `settings`; any port given is used as it is.

    `observers` hear of every event written (the metrics); `speech_timer` of every synthesis
    made while answering a webhook. `http` sends the flows' requests (http nodes, tools):
    by default a client to `HTTP_ALLOW_HOSTS` only, reading `${NAME}` from the environment.
    `announce` logs, as a server should, what runs degraded (no model key): short commands
    stay quiet.
    """
    store = store if store is not None else open_store(settings.store_url,
                                                       encryption_key=settings.encryption_key)
    library = FlowLibrary(settings.project_root, store)
    if announce:
        library.reload()
    else:
        with _quiet(library_log):  # a short command reports the problems itself, once
            library.reload()
    now = clock or time.time
    if recorder is None:
        recorder = EventRecorder(store)
    for observer in observers:
        recorder.observe(observer)
    if http is None:
        http = HttpClient(HostPolicy.parse(settings.http_allow_hosts), Secrets(os.environ))
    warmup: Warmup | None = None
    if not settings.openai_api_key:
        (log.warning if announce else log.debug)(
            "OPENAI_API_KEY is not set: the offline responder answers calls (from the "
            "personalities' examples and the nodes' exits) and Twilio voices speak")
        responder = responder or OfflineResponder(now)
        voicing = voicing or TwilioVoicing
    else:
        client = shared_client(settings.openai_api_key, settings.openai_base_url)
        responder = responder or ModelResponder(client, store, settings.openai_model,
                                                recorder=recorder, clock=now,
                                                tools=ToolRunner(http, recorder, now))
        synthesizer, cache = Synthesizer(client), AudioCache(store)
        if voicing is None:
            # The webhooks' speech is timed; the warm-up's is not (it is not on a call).
            timed = TimedSynthesizer(client, speech_timer) if speech_timer else synthesizer
            voicing = _openai_voicing(timed, cache, settings.public_base_url)
        warmup = Warmup(lambda: library.live, synthesizer, cache)
    service = CallService(
        library, store, responder, voicing=voicing, recorder=recorder,
        urls=urls or CallbackUrls(settings.public_base_url), clock=now,
        limits=call_limits(settings.caller_call_limit, settings.max_call_turns,
                           settings.max_call_seconds, settings.max_live_calls,
                           settings.model_calls_per_hour),
        default_flow=settings.default_flow, http=http)
    return Runtime(settings, store, library, recorder, service, warmup)


def _openai_voicing(synthesizer: Synthesizer, cache: AudioCache,
                    public_base_url: str) -> VoicingFactory:
    """OpenAI speech from the cache (synthesised on a miss), served under /audio/."""
    prefix = public_base_url.rstrip("/")

    def voicing(registry: Registry) -> Voicing:
        return SpeechVoicing(registry, synthesizer=synthesizer, cache=cache,
                             audio_url=lambda key: f"{prefix}/audio/{key}.mp3")

    return voicing
