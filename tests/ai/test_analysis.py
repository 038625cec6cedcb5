"""Post-call analysis with the real `openai` SDK against the local OpenAI double: structured
output asked for, the answer checked against the fields, one retry with what was wrong, then a
failed result with the reason; and the offline analyst's plain summary and nulls."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from engine.ai.analysis import (
    CallFacts,
    Line,
    ModelAnalyst,
    OfflineAnalyst,
    result_schema,
)
from engine.flows.model import Analysis, AnalysisField
from tests.doubles.openai_server import Malformed, OpenAIDouble, Status, Text

SPEC = Analysis(summary=True, fields=(
    AnalysisField("reason", "string", ("booking", "billing", "emergency", "other"),
                  "Why they called."),
    AnalysisField("pet_name", "string", (), "The pet's name, if given."),
    AnalysisField("callback_requested", "boolean"),
    AnalysisField("pets", "integer")))
LINES = [Line("agent", "Thanks for calling Acme Vets."),
         Line("caller", "Hi, I'd like to book a check-up for my dog Rex."),
         Line("agent", "Sure, when suits you?"),
         Line("caller", "Tuesday, and please call me back to confirm.")]
FACTS = CallFacts(flow="clinic", status="completed", duration=64, last_node="goodbye")
GOOD = {"summary": "A caller booked a check-up for their dog Rex on Tuesday.",
        "reason": "booking", "pet_name": "Rex", "callback_requested": True, "pets": 1}


def analyst(double: OpenAIDouble) -> ModelAnalyst:
    client = openai.OpenAI(api_key=double.api_key, base_url=double.base_url, max_retries=0)
    return ModelAnalyst(client, "gpt-4o-mini", timeout=5.0)


def answer(value: Any) -> Text:
    return Text(value if isinstance(value, str) else json.dumps(value))


def test_a_good_answer_fills_the_fields_from_structured_output(double: OpenAIDouble) -> None:
    double.chat(answer(GOOD))
    result = analyst(double).analyse(SPEC, LINES, FACTS)
    assert result.status == "ok" and result.attempts == 1
    assert result.summary == GOOD["summary"]
    assert result.fields == {key: GOOD[key] for key in
                             ("reason", "pet_name", "callback_requested", "pets")}
    [request] = double.chat_requests
    response_format = request.get("response_format")
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema == result_schema(SPEC)
    assert schema["properties"]["reason"]["enum"] == ["booking", "billing", "emergency", "other",
                                                      None]
    assert schema["required"] == ["summary", "reason", "pet_name", "callback_requested", "pets"]
    assert "Caller: Tuesday, and please call me back" in request.get("messages")[-1]["content"]


def test_null_is_an_answer_for_what_the_call_did_not_tell(double: OpenAIDouble) -> None:
    double.chat(answer({**GOOD, "pet_name": None, "pets": None}))
    result = analyst(double).analyse(SPEC, LINES, FACTS)
    assert result.status == "ok"
    assert result.fields["pet_name"] is None and result.fields["pets"] is None


def test_wrong_types_are_retried_once_with_what_was_wrong(double: OpenAIDouble) -> None:
    double.chat(answer({**GOOD, "callback_requested": "yes", "pets": "one"}), answer(GOOD))
    result = analyst(double).analyse(SPEC, LINES, FACTS)
    assert result.status == "ok" and result.attempts == 2
    retry = double.chat_requests[1].get("messages")
    assert retry[-2]["role"] == "assistant"
    assert "does not fit" in retry[-1]["content"] and "callback_requested" in retry[-1]["content"]


def test_an_unknown_enum_value_twice_is_stored_as_failed_with_the_reason(
        double: OpenAIDouble) -> None:
    double.chat(answer({**GOOD, "reason": "grooming"}), answer({**GOOD, "reason": "spa"}))
    result = analyst(double).analyse(SPEC, LINES, FACTS)
    assert result.status == "failed" and result.attempts == 2
    assert "reason" in result.reason and "'spa' is not one of" in result.reason
    assert result.summary is None
    assert result.fields == {"reason": None, "pet_name": None, "callback_requested": None,
                             "pets": None}


def test_prose_instead_of_json_fails_after_the_retry(double: OpenAIDouble) -> None:
    double.chat(answer("The caller wanted to book a check-up."),
                answer("Sure! Here it is: reason is booking."))
    result = analyst(double).analyse(SPEC, LINES, FACTS)
    assert result.status == "failed"
    assert result.reason.startswith("the answer is not JSON")


def test_missing_and_extra_keys_do_not_fit(double: OpenAIDouble) -> None:
    partial = {key: value for key, value in GOOD.items() if key != "pets"}
    double.chat(answer(partial), answer({**GOOD, "mood": "happy"}))
    result = analyst(double).analyse(SPEC, LINES, FACTS)
    assert result.status == "failed"
    assert "mood" in result.reason


@pytest.mark.parametrize("fault", [Status(500), Malformed(b"{not json")],
                         ids=["server error", "malformed body"])
def test_a_failed_request_counts_as_an_attempt(double: OpenAIDouble, fault: Any) -> None:
    double.chat(fault, answer(GOOD))
    result = analyst(double).analyse(SPEC, LINES, FACTS)
    assert result.status == "ok" and result.attempts == 2


def test_a_model_down_for_both_attempts_fails_with_the_error(double: OpenAIDouble) -> None:
    double.chat(Status(503), Status(503))
    result = analyst(double).analyse(SPEC, LINES, FACTS)
    assert result.status == "failed" and "InternalServerError" in result.reason


def test_a_call_the_caller_said_nothing_in_is_not_sent_to_the_model(
        double: OpenAIDouble) -> None:
    result = analyst(double).analyse(SPEC, [Line("agent", "Hello?")], FACTS)
    assert result.status == "empty" and double.chat_requests == []
    assert result.summary == "A 64-second call on flow clinic; the caller said nothing; it " \
                             "ended at goodbye."


def test_offline_a_plain_summary_and_null_fields() -> None:
    result = OfflineAnalyst().analyse(SPEC, LINES, FACTS)
    assert result.status == "offline"
    assert result.summary == ("A 64-second call on flow clinic; the caller spoke 2 times, first "
                              "saying \u201cHi, I'd like to book a check-up for my dog Rex.\u201d; "
                              "it ended at goodbye.")
    assert set(result.fields.values()) == {None}


def test_two_thousand_emoji_are_analysed_like_any_words(double: OpenAIDouble) -> None:
    double.chat(answer({**GOOD, "reason": "other", "pet_name": None}))
    result = analyst(double).analyse(SPEC, [Line("caller", "🐶" * 2000)], FACTS)
    assert result.status == "ok"
    sent = double.chat_requests[0].get("messages")[-1]["content"]
    assert "🐶" * 2000 in sent
