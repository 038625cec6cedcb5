"""How a relay ai node's session sounds: the personality's ConversationRelay voice."""

from __future__ import annotations

from engine.flows.model import Registry
from engine.runtime.state import Converse
from engine.twiml import ConnectRelay


def relay_voice(registry: Registry, personality: str, language: str = ""
                ) -> tuple[str | None, str | None]:
    """The ttsProvider and voice a personality speaks with over relay in `language`: its
    `voice.relay` for it, else one derived from its Twilio voice for it (Polly.X → Amazon X,
    Google.X → Google X); (None, None) leaves Twilio's default voice."""
    found = registry.personalities.get(personality)
    if found is None:
        return None, None
    voice = found.voice.for_language(language)
    if voice.relay is not None:
        return voice.relay.provider, voice.relay.voice
    family, _, name = voice.twilio.partition(".")
    if name and family == "Polly":
        return "Amazon", name
    if name and family == "Google":
        return "Google", name
    return None, None


def connect_relay(action: Converse, registry: Registry) -> ConnectRelay:
    """A `Converse` voiced for TwiML: the personality's relay voice for the call's language,
    and for a flow of several languages a `<Language>` with its voice for each."""
    provider, voice = relay_voice(registry, action.personality, action.language)
    languages = tuple((tag, *relay_voice(registry, action.personality, tag))
                      for tag in action.languages)
    return ConnectRelay(action.call_sid, action.language, action.greeting, action.hints,
                        provider, voice, languages)
