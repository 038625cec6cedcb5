"""A compiled personality as plain JSON: what `flask personalities show`, `GET /api/flows` and
the dashboard show, a blend's parts and computed fields included."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from engine.flows.model import Personality, Voice


def _voice(voice: Voice) -> dict[str, Any]:
    found: dict[str, Any] = {"twilio": voice.twilio}
    if voice.openai is not None:
        found["openai"] = asdict(voice.openai)
    if voice.relay is not None:
        found["relay"] = asdict(voice.relay)
    if voice.by_language:
        found["by_language"] = {language: _voice(voice.for_language(language))
                                for language in voice.by_language}
    return found


def personality_json(personality: Personality) -> dict[str, Any]:
    """Every compiled field of `personality`, `blend` (id -> weight) empty unless blended."""
    return {
        "id": personality.id, "name": personality.name,
        "description": personality.description, "blend": dict(personality.blend),
        "traits": list(personality.traits), "style": asdict(personality.style),
        "model": personality.model, "fallback": personality.fallback,
        "voice": _voice(personality.voice), "system_prompt": personality.system_prompt,
        "examples": [asdict(example) for example in personality.examples],
        "source": personality.source,
    }
