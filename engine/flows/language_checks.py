"""Graph checks of a flow's languages and its personalities' voices (DESIGN.md 8.2).

Each check reports every offender, marked on the key to change: a text that lacks one of the
flow's languages (or is a plain string in a flow with several), a text in a language the flow
does not declare, a route to a language the flow lacks, a voice given for a language it does
not speak.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from engine.flows.languages import (
    RECOGNISED,
    primary,
    same_language,
    spoken_texts,
    voice_language,
)
from engine.flows.model import Flow, Personality
from engine.flows.problems import Problem
from engine.flows.yamlread import Document, dotted


def _listed(languages: tuple[str, ...] | list[str]) -> str:
    return ", ".join(languages)


def text_languages(flow: Flow, document: Document) -> Iterator[Problem]:
    """An error for every text of a flow with `languages` that is a plain string or lacks one
    of them, and for every text (in any flow) with a language the flow does not speak."""
    languages = flow.spoken_languages()
    several = bool(flow.languages)
    for path, value in spoken_texts(document.data):
        where = dotted(path)
        if isinstance(value, str):
            if several:
                example = ", ".join(f"{tag}: ..." for tag in languages)
                yield document.problem(path, f"{where}: a plain text in a flow with languages "
                                             f"{_listed(languages)}; give it in each of them: "
                                             f"{{{example}}}")
            continue
        if not isinstance(value, Mapping):
            continue
        missing = [tag for tag in languages if tag not in value]
        if missing:
            yield document.problem(path, f"{where}: no text in {_listed(missing)}; every text "
                                         f"of this flow needs {_listed(languages)}")
        for tag in value:
            if tag not in languages:
                hint = ("" if several else
                        "; a text map needs the flow's `languages: [...]`")
                yield document.problem((*path, tag), f"{where}: {tag} is not one of the "
                                                     f"flow's languages ({_listed(languages)})"
                                                     f"{hint}", at_key=True)


def route_languages(flow: Flow, document: Document) -> Iterator[Problem]:
    """An error for every route whose `language` the flow does not speak."""
    languages = flow.spoken_languages()
    for node in flow.nodes.values():
        for index, route in enumerate(getattr(node, "routes", ())):
            if route.language is not None and route.language not in languages:
                path = ("nodes", node.id, "routes", index, "language")
                yield document.problem(path, f"{dotted(path)}: {route.language} is not one of "
                                             f"the flow's languages ({_listed(languages)}); add "
                                             f"it to `languages` or route to one of them")


def both_language_keys(document: Document) -> Iterator[Problem]:
    """An error when a flow gives both `language` and `languages`."""
    data = document.data
    if isinstance(data, dict) and "language" in data and "languages" in data:
        yield document.problem(("language",), "language: give `languages` (the first is the "
                                              "default) or `language`, not both", at_key=True)


def recognition(flow: Flow, document: Document) -> Iterator[Problem]:
    """A warning for every flow language Twilio's speech recognition does not list."""
    for index, tag in enumerate(flow.spoken_languages()):
        if tag not in RECOGNISED:
            path = ("languages", index) if flow.languages else ("language",)
            yield document.problem(path, f"{dotted(path)}: Twilio's speech recognition does "
                                         f"not list {tag}; callers may not be understood",
                                   severity="warning")


def voices_for_languages(flow: Flow, document: Document,
                         personalities: Mapping[str, Personality]) -> Iterator[Problem]:
    """A warning for every language of the flow that a personality it uses would speak with a
    Twilio voice of another language (no voice given for it): `flask flows languages` shows it
    as a gap."""
    if not flow.languages:
        return
    for name in flow.personalities_used():
        personality = personalities.get(name)
        if personality is None:
            continue
        for index, tag in enumerate(flow.languages):
            voice = personality.voice.for_language(tag).twilio
            spoken = voice_language(voice)
            if spoken is not None and not same_language(spoken, tag):
                yield document.problem(
                    ("languages", index),
                    f"languages[{index}]: personality '{name}' has no Twilio voice for {tag} "
                    f"({voice} speaks {spoken}); give voice.twilio as a map with {tag}",
                    severity="warning")


def check_languages(flow: Flow, document: Document,
                    personalities: Mapping[str, Personality]) -> list[Problem]:
    """Every problem of the flow's languages, in check order."""
    return [*both_language_keys(document), *text_languages(flow, document),
            *route_languages(flow, document), *recognition(flow, document),
            *voices_for_languages(flow, document, personalities)]


def personality_voices(personality: Personality, document: Document) -> Iterator[Problem]:
    """An error for every voice a personality gives for a language that the voice does not
    speak (`es-US: Polly.Joanna-Neural`), where the voice's name tells its language."""
    for tag, voice in personality.voice.by_language.items():
        named = [("twilio", voice.twilio)]
        if voice.relay is not None and voice.relay.provider != "ElevenLabs":
            named.append(("relay", voice.relay.voice))
        for engine, name in named:
            spoken = voice_language(name) if name else None
            if spoken is not None and primary(spoken) != primary(tag):
                path = ("voice", engine, tag)
                yield document.problem(path, f"{dotted(path)}: {name} speaks {spoken}, not "
                                             f"{tag}; give a {tag} voice here")
