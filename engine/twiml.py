"""Actions -> TwiML, with `twilio.twiml.voice_response`: a plain function, no I/O.

The call service has already chosen how each text is spoken (`SayWith` a Twilio voice, or
`PlayAudio` of synthesised speech) before it renders. Speech that comes right before a Listen
is nested inside its `<Gather>`, so the caller can interrupt it. Every answer stays under
Twilio's limits: 64 kB a document and 4 096 characters a `<Say>` (3 000 for Polly voices, which
we keep to for all). A relay ai node's session is `<Connect action><ConversationRelay …/>`, whose
WebSocket URL names the call (DESIGN.md section 8.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode

from twilio.twiml.voice_response import Gather, VoiceResponse

from engine.runtime.state import (
    Continue,
    Dial,
    Hangup,
    Listen,
    Pause,
    Record,
)

MAX_SAY_CHARS = 3000
RENDER_CACHE = 4096
"""Distinct answers kept built (a few kB each)."""
MAX_TWIML_BYTES = 64_000

# Characters XML 1.0 cannot carry at all, escaped or not: one in a <Say> (a model echoing the
# caller, a CallerName in a template) would make the whole answer unreadable to Twilio.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Callbacks:
    """Where Twilio posts next; the shell puts the call's step in each URL."""

    input: str
    silence: str
    dial: str
    recording: str
    resume: str
    relay: str = ""  # the ConversationRelay WebSocket (ws:// or wss://)
    relay_done: str = ""  # the <Connect action> Twilio posts when a relay session ends


@dataclass(frozen=True)
class SayWith:
    """Speak with a Twilio <Say> voice."""

    text: str
    voice: str
    language: str


@dataclass(frozen=True)
class PlayAudio:
    """Play synthesised audio from a URL Twilio can fetch."""

    url: str


@dataclass(frozen=True)
class ConnectRelay:
    """A relay node's session, voiced: Twilio's relay speaks in `language` with `tts_provider`
    and `voice` (None: Twilio's defaults), greets with `greeting`, and hears with `hints`."""

    call_sid: str
    language: str
    greeting: str = ""
    hints: tuple[str, ...] = ()
    tts_provider: str | None = None
    voice: str | None = None
    # Every language the session may switch to (a flow with `languages`): code, ttsProvider
    # and voice (None: Twilio's defaults), drawn as <Language> elements.
    languages: tuple[tuple[str, str | None, str | None], ...] = ()


Spoken = SayWith | PlayAudio | Pause | Listen | Dial | Record | Hangup | Continue | ConnectRelay
"""What `render` draws: a step's actions, with each `Say` voiced."""


def clip(text: str, limit: int = MAX_SAY_CHARS) -> str:
    """Cut text to `limit` characters at a sentence or word boundary, dropping what XML
    cannot carry."""
    text = _NOT_XML.sub("", text)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    for mark in (". ", "? ", "! ", " "):
        at = cut.rfind(mark)
        if at > limit // 2:
            return cut[: at + 1].strip()
    return cut


def _speak(parent: VoiceResponse | Gather, spoken: SayWith | PlayAudio) -> None:
    if isinstance(spoken, PlayAudio):
        parent.play(spoken.url)
    else:
        parent.say(clip(spoken.text), voice=spoken.voice, language=spoken.language)


def _gather(listen: Listen, callbacks: Callbacks) -> Gather:
    options: dict[str, str | int] = {
        "input": " ".join(listen.input), "action": callbacks.input, "method": "POST",
        "timeout": listen.timeout, "language": listen.language,
        "actionOnEmptyResult": "true",
    }
    if "speech" in listen.input:
        options["speechTimeout"] = "auto"
    if listen.hints:
        options["hints"] = _NOT_XML.sub("", ", ".join(listen.hints))[:2000]
    if listen.num_digits:
        options["numDigits"] = listen.num_digits
    return Gather(**options)


def _relay(response: VoiceResponse, relay: ConnectRelay, callbacks: Callbacks) -> None:
    joiner = "&" if "?" in callbacks.relay else "?"
    options: dict[str, str] = {
        "url": f"{callbacks.relay}{joiner}{urlencode({'call': relay.call_sid})}",
        "language": relay.language, "dtmf_detection": "true", "interruptible": "any",
    }
    if relay.tts_provider and relay.voice:
        options.update(tts_provider=relay.tts_provider, voice=relay.voice)
    if relay.hints:
        options["hints"] = _NOT_XML.sub("", ", ".join(relay.hints))[:2000]
    if relay.greeting:
        options["welcome_greeting"] = clip(relay.greeting)
    connect = response.connect(action=callbacks.relay_done, method="POST")
    session = connect.conversation_relay(**options)
    for code, provider, voice in relay.languages:
        voiced = {"tts_provider": provider, "voice": voice} if provider and voice else {}
        session.language(code=code, **voiced)


def render(actions: Sequence[Spoken], callbacks: Callbacks) -> str:
    """The TwiML document for `actions`, posting back to `callbacks`. ValueError when it would
    exceed Twilio's size limit.

    Most answers depend on the flow alone (a greeting, a menu, a reprompt, at a given step), so
    the same actions come again call after call: each distinct answer is built once and then
    served from a bounded cache (the actions are frozen values, so equal actions are the same
    answer).
    """
    return _render(tuple(actions), callbacks)


@lru_cache(maxsize=RENDER_CACHE)
def _render(actions: tuple[Spoken, ...], callbacks: Callbacks) -> str:
    response = VoiceResponse()
    speech: list[SayWith | PlayAudio | Pause] = []

    def flush(into: VoiceResponse | Gather) -> None:
        for item in speech:
            if isinstance(item, Pause):
                into.pause(length=max(1, round(item.seconds)))
            else:
                _speak(into, item)
        speech.clear()

    for action in actions:
        if isinstance(action, SayWith | PlayAudio | Pause):
            speech.append(action)
        elif isinstance(action, Listen):
            gather = _gather(action, callbacks)
            flush(gather)
            response.append(gather)
            # Belt and braces: should the Gather fall through, treat it as silence.
            response.redirect(callbacks.silence, method="POST")
        elif isinstance(action, Dial):
            flush(response)
            dial = response.dial(action=callbacks.dial, method="POST", timeout=action.timeout,
                                 caller_id=action.caller_id)
            if action.target.startswith("sip:"):
                dial.sip(action.target)
            else:
                dial.number(action.target)
        elif isinstance(action, Record):
            flush(response)
            response.record(action=callbacks.recording, method="POST",
                            max_length=action.max_seconds, finish_on_key=action.finish_on_key,
                            play_beep=True, transcribe=True if action.transcribe else None)
            # Twilio skips the action URL for an empty recording; carry on all the same.
            response.redirect(callbacks.recording, method="POST")
        elif isinstance(action, Hangup):
            flush(response)
            response.hangup()
        elif isinstance(action, Continue):
            flush(response)
            response.redirect(callbacks.resume, method="POST")
        elif isinstance(action, ConnectRelay):
            flush(response)
            _relay(response, action, callbacks)
    flush(response)
    text = str(response)
    if len(text.encode()) > MAX_TWIML_BYTES:
        raise ValueError(f"TwiML answer is {len(text.encode())} bytes, over Twilio's limit")
    return text


def safe_answer(text: str, voice: str = "Polly.Joanna-Neural", language: str = "en-US",
                then: str | None = None) -> str:
    """An answer that can never fail: an apology, then a redirect or a hang-up."""
    response = VoiceResponse()
    response.say(clip(text), voice=voice, language=language)
    if then:
        response.redirect(then, method="POST")
    else:
        response.hangup()
    return str(response)
