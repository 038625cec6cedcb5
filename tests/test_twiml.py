"""engine/twiml.py: voiced actions in, TwiML out, nothing else."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest

from engine.calls.urls import CallbackUrls
from engine.runtime.state import Continue, Dial, Hangup, Listen, Pause
from engine.twiml import PlayAudio, SayWith, _render, render

GREETING = SayWith("Thanks for calling.", "Polly.Joanna-Neural", "en-US")
LISTEN = Listen(("speech", "dtmf"), "en-US", ("billing",), 5, 1)


def test_speech_before_a_listen_is_inside_its_gather() -> None:
    twiml = render([GREETING, PlayAudio("/audio/abc.mp3"), LISTEN], CallbackUrls().for_step(3))
    root = ElementTree.fromstring(twiml)
    gather = root.find("Gather")
    assert gather is not None
    assert [child.tag for child in gather] == ["Say", "Play"]
    assert gather.get("action") == "/api/voice/input?step=3"
    assert (gather.get("input"), gather.get("hints"), gather.get("numDigits")) == \
        ("speech dtmf", "billing", "1")
    redirect = root.find("Redirect")
    assert redirect is not None and redirect.text == "/api/voice/silence?step=3"


def test_other_actions_render_in_order() -> None:
    twiml = render([GREETING, Pause(2.4), Dial("+15550001111", 20), Continue(), Hangup()],
                   CallbackUrls("https://a.example").for_step(1))
    tags = [child.tag for child in ElementTree.fromstring(twiml)]
    assert tags == ["Say", "Pause", "Dial", "Redirect", "Hangup"]
    assert 'action="https://a.example/api/voice/dial?step=1"' in twiml


def test_the_same_answer_is_built_once_and_steps_stay_apart() -> None:
    _render.cache_clear()
    first = render([GREETING, LISTEN], CallbackUrls().for_step(1))
    again = render([GREETING, LISTEN], CallbackUrls().for_step(1))
    later = render([GREETING, LISTEN], CallbackUrls().for_step(2))
    assert again == first
    assert "step=2" in later and "step=1" not in later
    info = _render.cache_info()
    assert (info.hits, info.misses) == (1, 2)


def test_an_answer_over_twilios_size_limit_is_refused_every_time() -> None:
    many = [SayWith("x" * 2900, "Polly.Joanna-Neural", "en-US")] * 30
    for _ in range(2):  # a failure is not cached as an answer
        with pytest.raises(ValueError, match="over Twilio's limit"):
            render(many, CallbackUrls().for_step(1))
