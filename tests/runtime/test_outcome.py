"""The outcome rule of engine/runtime/outcome.py, one case a line of its docstring."""

from __future__ import annotations

from typing import Any

import pytest

from engine.runtime.outcome import OUTCOMES, call_facts

SPOKE = [("call.say", {"text": "Hi."}), ("call.transcript", {"speech": "a question"}),
         ("call.response", {"text": "an answer"})]


def outcome(events: list[tuple[str, dict[str, Any]]], **known: Any) -> str | None:
    return call_facts(events, **known).outcome


def ended(*events: tuple[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [*events, ("call.end", {"status": "completed"})]


def test_a_live_call_has_no_outcome() -> None:
    assert outcome(SPOKE) is None
    assert outcome(SPOKE, ended=True) == "resolved"


@pytest.mark.parametrize(("events", "expected"), [
    (ended(*SPOKE, ("call.transfer", {"status": "dialing"}),
           ("call.transfer", {"status": "completed"})), "transferred"),
    (ended(*SPOKE, ("call.transfer", {"status": "busy"}),
           ("call.recording", {"duration": 12})), "voicemail"),
    (ended(*SPOKE, ("call.transfer", {"status": "no-answer"}),
           ("call.recording", {"duration": 0})), "resolved"),
    (ended(*SPOKE, ("call.error", {"kind": "flow"}), ("call.say", {"text": "Sorry."})),
     "failed"),
    (ended(*SPOKE, ("call.transcript", {"speech": "and?"}), ("call.error", {"kind": "network"})),
     "failed"),
    (ended(*SPOKE, ("call.error", {"kind": "network"}), ("call.response", {"text": "ok"})),
     "resolved"),
    (ended(*SPOKE, ("call.analysis", {"fields": {"resolved": False}})), "abandoned"),
    (ended(("call.transcript", {"speech": "hello?"}),
           ("call.analysis", {"fields": {"resolved": True}})), "resolved"),
    (ended(*SPOKE, ("call.analysis", {"fields": {"resolved": None}})), "resolved"),
    (ended(*SPOKE, ("call.transcript", {"speech": "one more thing"})), "abandoned"),
    (ended(("call.say", {"text": "Hi."}), ("call.transcript", {"silence": True})), "abandoned"),
    (ended(), "abandoned"),
])
def test_the_first_rule_that_applies_wins(events: list[tuple[str, dict[str, Any]]],
                                          expected: str) -> None:
    assert expected in OUTCOMES
    assert outcome(events) == expected


@pytest.mark.parametrize("status", ["failed", "busy", "no-answer", "canceled"])
def test_twilios_failures_are_failed(status: str) -> None:
    assert outcome(SPOKE, ended=True, status=status) == "failed"
    assert outcome([*SPOKE, ("call.end", {"status": status})]) == "failed"


def test_mood_summary_and_test_source() -> None:
    facts = call_facts([("call.test", {"source": "flask call"}),
                        ("call.transcript", {"speech": "a", "sentiment": 0.5}),
                        ("call.transcript", {"digits": "1"}),
                        ("call.transcript", {"speech": "b", "sentiment": -0.2}),
                        ("call.transcript", {"speech": "c", "sentiment": True}),
                        ("call.analysis", {"summary": "s" * 900})])
    # Whole: the list shortens it (a sealed summary cut short would not open).
    assert (facts.mood, len(facts.summary), facts.test) == (0.15, 900, "flask call")
    assert call_facts([]).mood is None


def test_bad_data_is_read_as_missing() -> None:
    facts = call_facts([("call.analysis", {"summary": 7, "fields": "yes"}),
                        ("call.recording", {"duration": "12"}), ("call.end", {})])
    assert (facts.outcome, facts.summary) == ("abandoned", "")
