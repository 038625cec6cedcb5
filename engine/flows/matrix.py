"""The language support matrix (DESIGN.md 8.2): for each flow and each language it speaks, its
texts, the voice of each speech engine, and speech recognition, with the gaps named.

A gap is something a caller in that language would meet: a text not written in it, a Twilio or
relay voice that speaks another language (what `<Say>` falls back to, and what a relay session
speaks), or a language Twilio's recognition does not list. OpenAI's speech voices read any
language, so an OpenAI voice is shown but never a gap; no OpenAI voice means Twilio's speaks.
Pure: it reads a loaded `Registry`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.flows.languages import RECOGNISED, same_language, voice_language
from engine.flows.model import Flow, Registry

NONE = "-"


@dataclass(frozen=True)
class LanguageSupport:
    """One row: how `flow` supports `language`, as its personality speaks it."""

    flow: str
    language: str
    personality: str
    texts: int  # spoken texts written in the language
    total: int  # spoken texts of the flow
    twilio: str  # the Twilio <Say> voice, NONE when unknown
    openai: str  # the OpenAI speech voice, NONE when Twilio's speaks
    relay: str  # ConversationRelay's provider and voice, NONE for Twilio's default
    recognition: bool  # Twilio's speech recognition lists the language
    gaps: tuple[str, ...]  # what a caller in this language would meet, in words

    def as_json(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return {**asdict(self), "gaps": list(self.gaps)}


def _texts(flow: Flow) -> list[str]:
    found: list[str] = []
    for node in flow.nodes.values():
        for name in node.speaks:
            value = getattr(node, name, None)
            if isinstance(value, str) and value and value != "ai":
                found.append(value)
        no_input = getattr(node, "no_input", None)
        if no_input is not None:
            found += list(no_input.reprompt)
    return list(dict.fromkeys(found))


def _relay(provider: str | None, voice: str | None) -> str:
    return f"{provider} {voice}" if provider and voice else NONE


def flow_support(flow: Flow, registry: Registry) -> list[LanguageSupport]:
    """A row per language of `flow`, its default first."""
    texts = _texts(flow)
    rows = []
    for language in flow.spoken_languages():
        written = sum(1 for text in texts if not flow.languages
                      or language in flow.texts.get(text, {}))
        gaps: list[str] = []
        if written < len(texts):
            gaps.append(f"{len(texts) - written} text(s) not in {language}")
        if language not in RECOGNISED:
            gaps.append(f"Twilio's speech recognition does not list {language}")
        twilio = openai = relay = NONE
        for name in flow.personalities_used():
            personality = registry.personalities.get(name)
            if personality is None:
                continue
            voice = personality.voice.for_language(language)
            spoken = voice_language(voice.twilio) if voice.twilio else None
            if spoken is not None and not same_language(spoken, language):
                gaps.append(f"personality '{name}': Twilio voice {voice.twilio} speaks {spoken}")
            # A relay voice derived from the Twilio voice speaks its language (a gap above).
            relay_spoken = voice_language(voice.relay.voice) if voice.relay else None
            if voice.relay and relay_spoken and not same_language(relay_spoken, language):
                gaps.append(f"personality '{name}': relay voice {voice.relay.voice} speaks "
                            f"{relay_spoken}")
            if name == flow.personality:
                twilio = voice.twilio or NONE
                openai = voice.openai.voice if voice.openai else NONE
                relay = _relay(*_relay_of(voice.relay, voice.twilio))
        rows.append(LanguageSupport(flow.id, language, flow.personality, written, len(texts),
                                    twilio, openai, relay, language in RECOGNISED,
                                    tuple(gaps)))
    return rows


def _relay_of(relay: Any, twilio: str) -> tuple[str | None, str | None]:
    # As engine/calls/relay_voice.py derives it: Polly.X is Amazon X, Google.X is Google X.
    if relay is not None:
        return relay.provider, relay.voice
    family, _, name = twilio.partition(".")
    provider = {"Polly": "Amazon", "Google": "Google"}.get(family)
    return (provider, name) if provider and name else (None, None)


def support_matrix(registry: Registry, flow_ids: tuple[str, ...] = ()) -> list[LanguageSupport]:
    """The rows of the flows named (every flow when none is), by flow id."""
    chosen = flow_ids or tuple(sorted(registry.flows))
    return [row for flow_id in chosen for row in flow_support(registry.flows[flow_id], registry)]


def render_matrix(rows: list[LanguageSupport]) -> str:
    """The rows as an aligned table, then each gap on a line of its own."""
    header = ("flow", "language", "texts", "twilio voice", "openai voice", "relay voice",
              "recognition")
    table = [header] + [(row.flow, row.language, f"{row.texts}/{row.total}", row.twilio,
                         row.openai, row.relay, "yes" if row.recognition else "no")
                        for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
             .rstrip() for line in table]
    gaps = [f"gap: {row.flow} {row.language}: {gap}" for row in rows for gap in row.gaps]
    return "\n".join([*lines, *gaps]) + "\n"
