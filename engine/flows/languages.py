"""The languages a flow speaks (DESIGN.md 8.2): language tags, per-language texts, and what is
known about which language a voice or a speech recogniser speaks. Pure data and functions.

A flow with `languages: [en-US, es-US]` writes every spoken text as a map from language to
text. The compiler keeps the first language's text on the node (so everything that reads a
node reads a plain string) and the whole map in `Flow.texts`, keyed by that first text; the
runtime speaks `Flow.text_in(text, language)`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?$")
"""The BCP 47 tags Twilio and ConversationRelay take: a language, an optional script and an
optional region (en-US, es-US, cmn-Hans-CN, es-419), cased as Twilio writes them."""

SPOKEN_FIELDS = ("text", "prompt", "opening", "announce", "say_while_waiting")
"""The node keys that hold a text spoken to the caller (`opening: ai` is no text)."""

LANGUAGE_NAMES: Mapping[str, str] = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian",
    "pt": "Portuguese", "nl": "Dutch", "sv": "Swedish", "da": "Danish", "nb": "Norwegian",
    "fi": "Finnish", "pl": "Polish", "ru": "Russian", "tr": "Turkish", "ja": "Japanese",
    "ko": "Korean", "cmn": "Mandarin Chinese", "zh": "Chinese", "yue": "Cantonese",
    "ar": "Arabic", "hi": "Hindi", "vi": "Vietnamese", "ca": "Catalan", "cy": "Welsh",
    "is": "Icelandic", "ro": "Romanian", "uk": "Ukrainian", "he": "Hebrew", "id": "Indonesian",
}
"""English names of languages by primary subtag, for the model ("answer in Spanish")."""

RECOGNISED: frozenset[str] = frozenset({
    "af-ZA", "ar-AE", "ar-SA", "ca-ES", "cmn-Hans-CN", "cmn-Hant-TW", "cs-CZ", "da-DK",
    "de-DE", "el-GR", "en-AU", "en-CA", "en-GB", "en-IE", "en-IN", "en-NZ", "en-US", "en-ZA",
    "es-ES", "es-MX", "es-US", "es-419", "fi-FI", "fil-PH", "fr-CA", "fr-FR", "he-IL", "hi-IN",
    "hu-HU", "id-ID", "is-IS", "it-IT", "ja-JP", "ko-KR", "ms-MY", "nb-NO", "nl-NL", "pl-PL",
    "pt-BR", "pt-PT", "ro-RO", "ru-RU", "sk-SK", "sv-SE", "th-TH", "tr-TR", "uk-UA", "vi-VN",
    "yue-Hant-HK",
})
"""Languages Twilio's `<Gather>` speech recognition (and ConversationRelay's) takes, from
Twilio's list of supported languages; a flow language outside it is a gap in the matrix."""

POLLY_VOICES: Mapping[str, str] = {
    "Joanna": "en-US", "Matthew": "en-US", "Ivy": "en-US", "Kendra": "en-US",
    "Kimberly": "en-US", "Salli": "en-US", "Joey": "en-US", "Justin": "en-US", "Kevin": "en-US",
    "Ruth": "en-US", "Stephen": "en-US", "Danielle": "en-US", "Gregory": "en-US",
    "Amy": "en-GB", "Emma": "en-GB", "Brian": "en-GB", "Arthur": "en-GB",
    "Olivia": "en-AU", "Nicole": "en-AU", "Russell": "en-AU", "Aria": "en-NZ", "Ayanda": "en-ZA",
    "Raveena": "en-IN", "Aditi": "en-IN", "Kajal": "en-IN", "Niamh": "en-IE", "Geraint": "en-GB",
    "Lupe": "es-US", "Penelope": "es-US", "Miguel": "es-US", "Pedro": "es-US",
    "Mia": "es-MX", "Andres": "es-MX", "Conchita": "es-ES", "Lucia": "es-ES", "Enrique": "es-ES",
    "Sergio": "es-ES", "Celine": "fr-FR", "Lea": "fr-FR", "Mathieu": "fr-FR", "Remi": "fr-FR",
    "Chantal": "fr-CA", "Gabrielle": "fr-CA", "Liam": "fr-CA", "Marlene": "de-DE",
    "Vicki": "de-DE", "Hans": "de-DE", "Daniel": "de-DE", "Carla": "it-IT", "Bianca": "it-IT",
    "Giorgio": "it-IT", "Adriano": "it-IT", "Camila": "pt-BR", "Vitoria": "pt-BR",
    "Ricardo": "pt-BR", "Thiago": "pt-BR", "Ines": "pt-PT", "Cristiano": "pt-PT",
    "Mizuki": "ja-JP", "Takumi": "ja-JP", "Kazuha": "ja-JP", "Tomoko": "ja-JP", "Seoyeon": "ko-KR",
    "Zhiyu": "cmn-Hans-CN", "Lotte": "nl-NL", "Ruben": "nl-NL", "Laura": "nl-NL",
}
"""Amazon Polly voices Twilio's `<Say>` speaks (`Polly.<Name>` or `Polly.<Name>-Neural`, and
ConversationRelay's Amazon voices), with their language."""

_GOOGLE_VOICE = re.compile(r"^(?:Google\.)?([a-z]{2,3}(?:-[A-Z][a-z]{3})?-(?:[A-Z]{2}|[0-9]{3}))-")


def is_language(tag: object) -> bool:
    """Whether `tag` is a language tag as Twilio writes them (`LANGUAGE_TAG`)."""
    return isinstance(tag, str) and bool(LANGUAGE_TAG.match(tag))


def primary(tag: str) -> str:
    """The language of a tag without script or region: `es` for es-US."""
    return tag.split("-", 1)[0]


def language_name(tag: str) -> str:
    """The English name of `tag`'s language with its tag, for the model: "Spanish (es-US)"."""
    name = LANGUAGE_NAMES.get(primary(tag))
    return f"{name} ({tag})" if name else tag


def voice_language(voice: str) -> str | None:
    """The language a Twilio or relay voice speaks (en-US for Polly.Joanna-Neural, es-US for
    Google.es-US-Neural2-A), or None when the name does not tell (alice, an ElevenLabs id)."""
    google = _GOOGLE_VOICE.match(voice)
    if google:
        return google.group(1)
    name = voice.removeprefix("Polly.").removesuffix("-Neural").removesuffix("-Generative")
    return POLLY_VOICES.get(name)


def same_language(voice_tag: str, tag: str) -> bool:
    """Whether a voice of `voice_tag` can speak `tag`: the same language, whatever the region
    (an es-ES voice can read es-US text, if with an accent)."""
    return primary(voice_tag) == primary(tag)


def flow_languages(data: Mapping[str, Any], default: str) -> tuple[str, ...]:
    """The languages a flow document declares: `languages`, else `(language,)`, else
    `(default,)`."""
    languages = data.get("languages")
    if isinstance(languages, list) and languages:
        return tuple(str(tag) for tag in languages)
    return (str(data.get("language", default)),)


def _plain(value: Any, first: str, texts: dict[str, dict[str, str]]) -> Any:
    if isinstance(value, Mapping):
        chosen = str(value.get(first, next(iter(value.values()), "")))
        texts.setdefault(chosen, {}).update({str(k): str(v) for k, v in value.items()})
        return chosen
    return value


def _plain_no_input(raw: Mapping[str, Any], first: str, texts: dict[str, dict[str, str]]
                    ) -> dict[str, Any]:
    reprompt = raw.get("reprompt")
    if isinstance(reprompt, list):
        return {**raw, "reprompt": [_plain(item, first, texts) for item in reprompt]}
    if reprompt is not None:
        return {**raw, "reprompt": _plain(reprompt, first, texts)}
    return dict(raw)


def plain_texts(data: Mapping[str, Any], default: str
                ) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """A flow document with each text map replaced by its first language's text, and the
    maps, keyed by that text. The document given is not changed."""
    first = flow_languages(data, default)[0]
    texts: dict[str, dict[str, str]] = {}
    plain = dict(data)
    defaults = data.get("defaults")
    if isinstance(defaults, Mapping) and isinstance(defaults.get("no_input"), Mapping):
        plain["defaults"] = {**defaults,
                             "no_input": _plain_no_input(defaults["no_input"], first, texts)}
    nodes: dict[str, Any] = {}
    for node_id, raw in (data.get("nodes") or {}).items():
        node = dict(raw)
        for name in SPOKEN_FIELDS:
            if name in node:
                node[name] = _plain(node[name], first, texts)
        if isinstance(node.get("no_input"), Mapping):
            node["no_input"] = _plain_no_input(node["no_input"], first, texts)
        nodes[node_id] = node
    plain["nodes"] = nodes
    return plain, texts


def spoken_texts(data: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(key path, value) of every text a flow document speaks, as written: a string or a map
    from language to text. `opening: ai` is left out (the model speaks it)."""
    defaults = data.get("defaults")
    if isinstance(defaults, Mapping):
        yield from _reprompt_texts(("defaults",), defaults)
    nodes = data.get("nodes")
    for node_id, raw in (nodes.items() if isinstance(nodes, Mapping) else ()):
        if not isinstance(raw, Mapping):
            continue
        for name in SPOKEN_FIELDS:
            if name in raw and not (name == "opening" and raw[name] == "ai"):
                yield ("nodes", node_id, name), raw[name]
        yield from _reprompt_texts(("nodes", node_id), raw)


def _reprompt_texts(base: tuple[str | int, ...], raw: Mapping[str, Any]
                    ) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    no_input = raw.get("no_input")
    reprompt = no_input.get("reprompt") if isinstance(no_input, Mapping) else None
    if isinstance(reprompt, list):
        for index, item in enumerate(reprompt):
            yield (*base, "no_input", "reprompt", index), item
    elif reprompt is not None:
        yield (*base, "no_input", "reprompt"), reprompt
