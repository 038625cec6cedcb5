"""A route that switches the call's language inside a ConversationRelay session: Twilio is sent
a `language` message (ttsLanguage and transcriptionLanguage) before the node's opening in the
new language, and the session goes on (DESIGN.md 8.2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from engine.simulator import SimulatedCall
from tests.ai.conftest import events

BILINGUAL_NUMBER = "+15550002003"
BILINGUAL_FLOW = """\
flow: relay_bilingual
personality: friendly
numbers: ["+15550002003"]
languages: [en-US, es-US]
vars: {business: Acme Dental}
start: assist
nodes:
  assist:
    type: ai
    conversation: relay
    opening: {en-US: "Hi, Acme here.", es-US: "Hola, habla Acme."}
    instructions: Help callers of {{ vars.business }}.
    input: [speech, dtmf]
    timeout: 60
    routes:
      - when: digits == '2' or (detected_language == 'es-US' and language != 'es-US')
        language: es-US
        to: assist
    no_input:
      retries: 1
      reprompt: [{en-US: "Still there?", es-US: "¿Sigue ahí?"}]
      then: goodbye
    on_error:
      network: {retry: 1, then: goodbye}
      rate_limit: {retry: 1, then: goodbye}
      ai_failure: {then: goodbye}
      tts_failure: {voice: twilio}
    exits:
      goodbye: The caller has what they need.
  goodbye:
    type: hangup
    text: {en-US: Goodbye!, es-US: ¡Adiós!}
"""


@pytest.fixture
def project(project: Path) -> Path:
    (project / "flows" / "relay_bilingual.yaml").write_text(BILINGUAL_FLOW, encoding="utf-8")
    return project


def test_a_route_that_switches_language_sends_the_language_message(
        app: Flask, relay_call: Callable[..., SimulatedCall]) -> None:
    c = relay_call(to=BILINGUAL_NUMBER).start()
    relay = c.waiting.verb
    assert relay is not None and relay.get("language") == "en-US"
    assert [(e.get("code"), e.get("voice")) for e in relay.findall("Language")] == [
        ("en-US", "Joanna-Neural"), ("es-US", "Lupe-Neural")]
    line = c.relay()
    greeting = line.press("2")
    assert greeting.text == "Hola, habla Acme."
    switch = [m for m in line.received if m["type"] == "language"]
    assert switch == [{"type": "language", "ttsLanguage": "es-US",
                       "transcriptionLanguage": "es-US"}]
    spoken = next(i for i, m in enumerate(line.received)
                  if m["type"] == "text" and m.get("token") == "Hola, habla Acme.")
    assert line.received.index(switch[0]) < spoken  # Twilio switches before it speaks
    assert [e["language"] for e in events(app, c.call_sid, "call.language")] == ["es-US"]
    line.close()


def test_a_caller_who_speaks_spanish_in_the_session_is_switched_to_spanish(
        app: Flask, relay_call: Callable[..., SimulatedCall]) -> None:
    c = relay_call(to=BILINGUAL_NUMBER).start()
    line = c.relay()
    greeting = line.say("Hola, quisiera hacer una cita para mañana por la tarde.")
    assert greeting.text == "Hola, habla Acme."
    assert {"type": "language", "ttsLanguage": "es-US",
            "transcriptionLanguage": "es-US"} in line.received
    transcript = events(app, c.call_sid, "call.transcript")
    assert transcript[-1]["speech"].startswith("Hola, quisiera")
