"""Speech in the call's language (DESIGN.md 8.2), on the bundled bilingual flow: OpenAI speech
with the personality's voice for the language (the cache keyed by it), every language's static
texts warmed ahead of calls, the model told the language, and Twilio's voice for the language
when speech fails."""

from __future__ import annotations

from flask import Flask

from tests.ai.conftest import Phone, heard_text
from tests.doubles.openai_server import OpenAIDouble, Status, Text

CLINIC = "+15550005000"
SPANISH_OPENING = ("Habla la recepcionista virtual de la clínica. ¿En qué le puedo ayudar "
                   "hoy?")
REPLY = "Abrimos de lunes a viernes a las ocho de la mañana."


def test_every_languages_static_texts_are_warmed_with_that_languages_voice(
        app: Flask, double: OpenAIDouble) -> None:
    warmed = {r.get("input"): r.get("instructions") for r in double.speech_requests}
    assert "Latin American Spanish" in warmed[SPANISH_OPENING]
    assert "Latin American Spanish" in warmed["Gracias por llamar a Sunrise Family Clinic."]
    english = warmed["This is the clinic's virtual receptionist. How can I help you today?"]
    assert "Spanish" not in english and "Speak warmly" in english


def test_a_spanish_call_plays_cached_spanish_audio_and_the_model_answers_in_spanish(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Text(REPLY))
    c = phone(to=CLINIC).start()
    before = len(double.speech_requests)
    c.press("2")
    assert c.heard[-1].audio_url  # the Spanish opening, warmed: no request during the call
    assert double.speech_requests[before:] == []
    c.say("¿A qué hora abren mañana?")
    (request,) = double.speech_requests[before:]
    assert request.get("input") == REPLY
    assert "Latin American Spanish" in request.get("instructions")
    system = double.chat_requests[-1].get("messages")[0]["content"]
    assert "Speak Spanish (es-US) on this call" in system
    assert heard_text(app, double, c)[-2:] == [SPANISH_OPENING, REPLY]
    assert c.waiting.verb is not None and c.waiting.verb.get("language") == "es-US"


def test_when_speech_fails_a_spanish_reply_is_said_in_the_spanish_twilio_voice(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Text(REPLY))
    c = phone(to=CLINIC).start()
    c.press("2")
    double.speech(Status(500))
    c.say("¿A qué hora abren mañana?")
    assert (c.heard[-1].text, c.heard[-1].voice) == (REPLY, "Polly.Lupe-Neural")


def test_the_call_api_gives_the_calls_language_and_its_blended_personality(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    c = phone(to=CLINIC).start()
    client = app.test_client()
    assert client.post("/login", data={"password": "test-password"}).status_code == 302
    before = client.get(f"/api/calls/{c.call_sid}").get_json()
    assert (before["language"], before["personality"]) == ("en-US", "host")
    assert before["personality_blend"] == {"friendly": 0.7, "witty": 0.3}
    c.press("2")
    after = client.get(f"/api/calls/{c.call_sid}").get_json()
    assert after["language"] == "es-US"
    assert [e["data"]["language"] for e in after["events"] if e["name"] == "call.language"] \
        == ["es-US"]
