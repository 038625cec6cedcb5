"""Synthesise every static prompt ahead of calls, so no caller waits on speech for them.

Static means fixed once the flow's vars are known: say texts, prompts, reprompts, openings,
announcements and goodbyes. Texts that read the caller, the time or what was said are skipped
(they are synthesised when spoken).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.flows.model import OpenAIVoice, Registry
from engine.runtime.templates import render
from engine.speech.cache import AudioCache, audio_key
from engine.speech.tts import SpeechFailed, Synthesizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmupReport:
    total: int
    synthesised: int
    cached: int
    failed: int


def static_texts(registry: Registry) -> list[tuple[str, OpenAIVoice]]:
    found: dict[tuple[str, OpenAIVoice], None] = {}
    for flow in registry.flows.values():
        context = {"vars": dict(flow.vars)}
        for node in flow.nodes.values():
            personality = registry.personalities.get(node.personality or flow.personality)
            if personality is None or personality.voice.openai is None:
                continue
            texts = [getattr(node, name, None) for name in node.speaks]
            no_input = getattr(node, "no_input", None)
            if no_input is not None:
                texts += list(no_input.reprompt)
            for text in texts:
                if not text or text == "ai":
                    continue
                try:
                    spoken = render(text, context).strip()
                except Exception:  # reads the caller or the clock: not static
                    continue
                if spoken:
                    found[(spoken, personality.voice.openai)] = None
    return list(found)


def warm(registry: Registry, synthesizer: Synthesizer, cache: AudioCache) -> WarmupReport:
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
