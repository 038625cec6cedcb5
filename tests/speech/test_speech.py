"""OpenAI speech: <Play> of cached audio in the personality's voice, served with caching headers
from the shared store; static prompts warmed ahead of calls (at start-up or by `flask speech
warm`); Twilio's <Say> with no key or on failure."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from flask import Flask

from tests.ai.conftest import (
    Phone,
    call_on,
    heard_text,
)
from tests.doubles.openai_server import OpenAIDouble, Status, Text, synthesise
from tests.support import Clock

REPLY = "Yes, we do whitening, and anything else you need."
STATIC = {
    "Thanks for calling Acme Dental.",
    "This is the virtual receptionist. How can I help you today?",
    "Are you still there?",
    "Sorry, I didn't catch that. How can I help you today?",
    "One moment please.",
    "Connecting you to the front desk now.",
    "Thanks for calling Acme Dental. Goodbye!",
}


def test_speech_plays_openai_audio_in_the_personalitys_voice(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Text(REPLY))
    c = phone().start()
    before = len(double.speech_requests)
    c.say("do you do whitening")

    reply = c.heard[-1]
    assert reply.audio_url and not reply.text
    assert urlsplit(reply.audio_url).path.startswith("/audio/")
    assert reply.audio_url.endswith(".mp3")
    (request,) = double.speech_requests[before:]
    assert request.get("input") == REPLY
    assert request.get("model") == "gpt-4o-mini-tts"
    assert request.get("voice") == "coral"  # friendly's OpenAI voice
    assert "Speak warmly" in request.get("instructions")
    assert request.get("response_format") == "mp3"
    assert heard_text(app, double, c)[-1] == REPLY


def test_audio_is_served_with_cache_headers_and_revalidated_by_etag(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    c = phone().start()
    path = urlsplit(c.heard[0].audio_url).path
    client = app.test_client()

    first = client.get(path)
    assert first.status_code == 200
    assert first.mimetype == "audio/mpeg"
    assert first.get_data() == synthesise("mp3", "Thanks for calling Acme Dental.")
    assert "max-age=" in first.headers["Cache-Control"]
    etag = first.headers["ETag"]
    assert etag

    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert client.get("/audio/" + "0" * 40 + ".mp3").status_code == 404
    assert client.get("/audio/not-a-key.mp3").status_code == 404


def test_a_second_app_instance_serves_audio_from_the_shared_store(
        app: Flask, make_app: Callable[..., Flask], phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Text(REPLY))
    c = phone().start()
    c.say("do you do whitening")
    path = urlsplit(c.heard[-1].audio_url).path

    other = make_app(SPEECH_WARMUP=False)
    served = other.test_client().get(path)
    assert served.status_code == 200
    assert served.get_data() == synthesise("mp3", REPLY)


def test_after_the_start_up_warm_up_a_call_makes_no_speech_request_for_static_prompts(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    warmed = {r.get("input") for r in double.speech_requests}
    assert warmed >= STATIC
    before = len(double.speech_requests)
    double.chat(Text(REPLY))

    c = phone().start()
    c.silence()
    c.say("do you do whitening")
    c.say("can I talk to a person")  # a route: the front desk's announcement is static
    assert c.waiting.kind == "dial"

    during = [r.get("input") for r in double.speech_requests[before:]]
    assert during == [REPLY]  # the model's reply, nothing static
    assert all(item.audio_url for item in c.heard)


def test_flask_speech_warm_fills_the_cache_so_calls_make_no_static_speech_requests(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    cold = make_app(SPEECH_WARMUP=False)
    assert cold.extensions["phoney"].warmup.wait(0)  # nothing running in the background
    assert double.speech_requests == []

    result = cold.test_cli_runner().invoke(args=["speech", "warm"])
    assert result.exit_code == 0, result.output
    warmed = [(r.get("input"), r.get("voice"), r.get("instructions"))
              for r in double.speech_requests]
    assert {text for text, _, _ in warmed} >= STATIC
    # Each text synthesised once in each voice (a voice for a language has its own
    # instructions: the bilingual flow's menu, the same text in both, is spoken twice).
    assert len(warmed) == len(set(warmed))
    assert f"{len(warmed)} synthesised" in result.output

    again = cold.test_cli_runner().invoke(args=["speech", "warm"])
    assert again.exit_code == 0 and "0 synthesised" in again.output
    assert len(double.speech_requests) == len(warmed)

    before = len(double.speech_requests)
    c = call_on(cold, clock).start()
    c.silence()
    c.say("operator")
    assert c.waiting.kind == "dial"
    assert len(double.speech_requests) == before
    assert all(item.audio_url for item in c.heard)


def test_flask_speech_warm_reports_failures(make_app: Callable[..., Flask],
                                            double: OpenAIDouble) -> None:
    cold = make_app(SPEECH_WARMUP=False)
    double.default_speech(Status(500))
    result = cold.test_cli_runner().invoke(args=["speech", "warm"])
    assert result.exit_code == 1
    assert "failed" in result.output


def test_with_no_key_every_prompt_is_said_with_the_twilio_voice(
        make_app: Callable[..., Flask], double: OpenAIDouble, clock: Clock) -> None:
    offline = make_app(OPENAI_API_KEY="")
    c = call_on(offline, clock).start()
    c.say("do you do whitening")
    assert all(item.text and not item.audio_url for item in c.heard)
    assert {item.voice for item in c.heard} == {"Polly.Joanna-Neural"}
    result = offline.test_cli_runner().invoke(args=["speech", "warm"])
    assert result.exit_code != 0 and "OPENAI_API_KEY" in result.output
    assert double.requests == []


@pytest.mark.parametrize("status", [500, 429, 400])
def test_on_speech_failure_the_twilio_voice_speaks_and_the_call_goes_on(
        app: Flask, phone: Phone, double: OpenAIDouble, status: int) -> None:
    double.chat(Text(REPLY), Text("We are on Elm Street, across from the library."))
    c = phone().start()
    double.speech(Status(status))
    c.say("do you do whitening")
    assert (c.heard[-1].text, c.heard[-1].voice) == (REPLY, "Polly.Joanna-Neural")
    c.say("where are you")  # speech is back
    assert c.heard[-1].audio_url
    assert heard_text(app, double, c)[-1] == "We are on Elm Street, across from the library."
