"""Synthesise every static prompt ahead of calls, so no caller waits on speech for them.

Static means fixed once the flow's vars are known: say texts, prompts, reprompts, openings,
announcements and goodbyes. Texts that read the caller, the time or what was said are skipped
(they are synthesised when spoken).

`Warmup` is one app's warm-up: started in the background when a server starts, or run in the
foreground by `flask speech warm`; one run at a time, so two never synthesise the same texts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from engine.flows.model import OpenAIVoice, Registry
from engine.runtime.templates import render
from engine.speech.cache import AudioCache, audio_key
from engine.speech.tts import SpeechFailed, Synthesizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmupReport:
    """How one warm-up went: texts found, and how many were synthesised, already cached or
    failed (these add up to `total`).
    """

    total: int
    synthesised: int
    cached: int
    failed: int


def static_texts(registry: Registry) -> list[tuple[str, OpenAIVoice]]:
    """Every distinct (text, OpenAI voice) a call of `registry` may speak that is fixed once
    the flow's vars are known, as rendered: say texts, prompts, openings (not `ai`),
    announcements, goodbyes and reprompts of nodes whose personality has an OpenAI voice, in
    each of the flow's languages with the personality's voice for that language. Texts that
    fail to render with `vars` and `language` alone (they read the call) are left out.
    """
    found: dict[tuple[str, OpenAIVoice], None] = {}
    for flow in registry.flows.values():
        for language in flow.spoken_languages():
            context = {"vars": dict(flow.vars), "language": language}
            for node in flow.nodes.values():
                personality = registry.personalities.get(node.personality or flow.personality)
                voice = personality.voice.for_language(language).openai if personality else None
                if voice is None:
                    continue
                texts = [getattr(node, name, None) for name in node.speaks]
                no_input = getattr(node, "no_input", None)
                if no_input is not None:
                    texts += list(no_input.reprompt)
                for text in texts:
                    if not text or text == "ai":
                        continue
                    try:
                        spoken = render(flow.text_in(text, language), context).strip()
                    except Exception:  # reads the caller or the clock: not static
                        continue
                    if spoken:
                        found[(spoken, voice)] = None
    return list(found)


def warm(registry: Registry, synthesizer: Synthesizer, cache: AudioCache) -> WarmupReport:
    """Synthesise into `cache` every static text not cached yet, one after the other. Never
    raises for a failed synthesis: it is logged and counted in the report.
    """
    texts = static_texts(registry)
    synthesised = cached = failed = 0
    for text, voice in texts:
        key = audio_key(text, voice)
        if cache.has(key):
            cached += 1
            continue
        try:
            cache.put(key, synthesizer.synthesize(text, voice))
            synthesised += 1
        except SpeechFailed as failure:
            failed += 1
            log.warning("warm-up could not synthesise %r: %s", text[:40], failure.detail)
    return WarmupReport(len(texts), synthesised, cached, failed)


class Warmup:
    """One app's warm-up of its static prompts, over the flows `registry()` gives when a run
    starts. Runs are serialised by a lock (a second waits for the first, then finds its work
    cached); `start` runs one in a daemon thread, `run` in the caller's.
    """

    def __init__(self, registry: Callable[[], Registry], synthesizer: Synthesizer,
                 cache: AudioCache) -> None:
        self.registry = registry  # the live flows when the run starts
        self.synthesizer = synthesizer
        self.cache = cache
        self.last: WarmupReport | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def run(self) -> WarmupReport:
        """Warm now; a run already going on is waited for (its work is then found cached)."""
        with self._lock:
            self.last = warm(self.registry(), self.synthesizer, self.cache)
            return self.last

    def start(self) -> None:
        """Warm in a background thread (at a server's start-up)."""
        self._thread = threading.Thread(target=self._quietly, daemon=True, name="speech-warmup")
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background run; True when none is going on any more."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _quietly(self) -> None:
        try:
            report = self.run()
            log.info("speech warm-up: %d static prompts, %d synthesised, %d cached, %d failed",
                     report.total, report.synthesised, report.cached, report.failed)
        except Exception:
            log.exception("speech warm-up failed; prompts will be synthesised when first spoken")
