"""The offline language detector behind `detected_language`: among the flow's languages only,
'' when unsure, and the same answer every time."""

from __future__ import annotations

import pytest

from engine.calls.language import detect, detectable
from engine.calls.service import scored
from engine.runtime.state import Heard

BOTH = ("en-US", "es-US")


@pytest.mark.parametrize(("text", "expected"), [
    ("quiero hacer una cita para mañana", "es-US"),
    ("gracias", "es-US"),
    ("I would like to book a cleaning", "en-US"),
    ("thanks", "en-US"),
])
def test_an_utterance_is_given_one_of_the_flows_languages(text: str, expected: str) -> None:
    assert detect(text, BOTH) == expected
    assert detect(text, BOTH) == expected  # seeded: the same answer again


@pytest.mark.parametrize("text", ["", "ok", "12345", "?!", "   "])
def test_too_little_to_judge_is_no_language(text: str) -> None:
    assert detect(text, BOTH) == ""


def test_a_flow_of_one_language_detects_nothing() -> None:
    assert not detectable(("en-US",))
    assert detect("quiero hacer una cita", ("en-US",)) == ""


def test_a_language_outside_the_flows_is_never_given() -> None:
    # French is weighed only against the flow's English and Spanish: one of them, or nothing.
    assert detect("je voudrais prendre un rendez-vous demain matin", BOTH) in ("", *BOTH)


def test_two_tags_of_one_language_give_the_first() -> None:
    assert detect("quiero hacer una cita para mañana", ("en-US", "es-MX", "es-US")) == "es-MX"


def test_the_call_service_detects_and_scores_in_the_language_heard() -> None:
    event = scored(Heard(1.0, "I am really happy with the service", 0.9), "es-US", BOTH)
    assert isinstance(event, Heard) and event.language == "en-US"
    # Scored as English although the call speaks Spanish: the caller switched mid-call.
    assert event.sentiment is not None and event.sentiment > 0.3
    spanish = scored(Heard(1.0, "estoy muy contento con el servicio", 0.9), "en-US", BOTH)
    assert isinstance(spanish, Heard) and spanish.language == "es-US"
    assert spanish.sentiment is None  # VADER reads English only
