"""Post-call analysis: a flow's `analysis` (a summary and typed fields) filled from a transcript.

`ModelAnalyst` asks the model once for JSON in the shape of the fields (OpenAI structured
output, `response_format: json_schema`, strict), checks the answer against the same JSON Schema
(an OpenAI-compatible server may ignore the format: prose, wrong types and unknown enum values
all happen), asks again once with what was wrong, and otherwise gives up: the result is then
`failed`, with the reason, and null fields. `OfflineAnalyst` (no model key) writes a plain
summary from the call's facts and leaves every field null. Neither raises for what the model
does; a call the caller said nothing in is not sent to any model.

Nothing here runs on a call: engine/events/analysis_sink.py calls an analyst from a background
publisher lane once the call has ended.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import jsonschema
import openai

from engine.flows.model import Analysis

log = logging.getLogger(__name__)

Status = Literal["ok", "failed", "offline", "empty"]
ANALYSIS_TIMEOUT = 30.0
"""Seconds one analysis request may take: no caller waits, but a lane must not hang for good."""
MAX_TRANSCRIPT_CHARS = 24_000
"""Characters of transcript sent (the end kept): a bound on a very long call's request."""
ATTEMPTS = 2  # one try, and one retry with what was wrong


@dataclass(frozen=True)
class Line:
    """One line of a finished call: who spoke (`caller` or `agent`) and what."""

    role: Literal["caller", "agent"]
    text: str


@dataclass(frozen=True)
class CallFacts:
    """What the analysis knows of a call besides its words."""

    flow: str
    status: str = ""
    duration: int | None = None
    last_node: str = ""
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnalysisResult:
    """The analysis of one call, as the `call.analysis` event and the API carry it."""

    status: Status
    summary: str | None
    fields: Mapping[str, Any]
    reason: str = ""  # why it failed, or what the status means
    model: str = ""
    attempts: int = 0
    raw: str = field(default="", compare=False)  # the last answer, for a failure's reason

    def as_json(self) -> dict[str, Any]:
        """The event's data: status, summary, fields (every one, null when not known),
        reason, model and attempts."""
        return {"status": self.status, "summary": self.summary, "fields": dict(self.fields),
                "reason": self.reason, "model": self.model, "attempts": self.attempts}


class Analyst(Protocol):
    """Fills a flow's analysis for one call; never raises for what a model answers."""

    def analyse(self, spec: Analysis, lines: Sequence[Line], facts: CallFacts
                ) -> AnalysisResult:
        """The analysis of the call whose transcript is `lines`."""


def result_schema(spec: Analysis) -> dict[str, Any]:
    """The JSON Schema of an answer: `summary` (when asked for) and every field, each nullable
    (a call may not tell), all required and nothing else, as strict structured output wants."""
    properties: dict[str, Any] = {}
    if spec.summary:
        properties["summary"] = {"type": "string",
                                 "description": "Two or three sentences on the call."}
    for item in spec.fields:
        schema: dict[str, Any] = {"type": [item.type, "null"]}
        if item.enum:
            schema["enum"] = [*item.enum, None]
        if item.description:
            schema["description"] = item.description
        properties[item.name] = schema
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def null_fields(spec: Analysis) -> dict[str, Any]:
    """Every field of `spec`, null."""
    return {item.name: None for item in spec.fields}


def transcript_text(lines: Sequence[Line]) -> str:
    """`Caller: …` and `Agent: …` lines, the end kept within MAX_TRANSCRIPT_CHARS."""
    text = "\n".join(f"{'Caller' if line.role == 'caller' else 'Agent'}: {line.text}"
                     for line in lines if line.text.strip())
    return text[-MAX_TRANSCRIPT_CHARS:]


def problem_with(answer: str, schema: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The answer as a dict when it is JSON matching `schema`; else None and what is wrong,
    in a sentence the model is shown on its retry."""
    try:
        value = json.loads(answer)
    except ValueError:
        return None, f"the answer is not JSON: {answer[:80]!r}"
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda error: list(error.path))
    if errors:
        where = "/".join(str(part) for part in errors[0].path) or "the answer"
        return None, f"{where}: {errors[0].message}"[:300]
    return value, ""


def offline_summary(lines: Sequence[Line], facts: CallFacts) -> str:
    """A plain summary from the facts alone: how long, how many utterances, the first thing
    the caller said, and where the call ended."""
    said = [line.text for line in lines if line.role == "caller" and line.text.strip()]
    length = f"{facts.duration}-second " if facts.duration is not None else ""
    parts = [f"A {length}call on flow {facts.flow}"]
    if said:
        first = said[0] if len(said[0]) <= 120 else said[0][:117] + "..."
        parts.append(f"; the caller spoke {len(said)} time{'s' if len(said) != 1 else ''}, "
                     f"first saying \u201c{first}\u201d")
    else:
        parts.append("; the caller said nothing")
    if facts.last_node:
        parts.append(f"; it ended at {facts.last_node}")
    return "".join(parts) + "."


def _no_words(spec: Analysis, lines: Sequence[Line], facts: CallFacts) -> AnalysisResult | None:
    if any(line.role == "caller" and line.text.strip() for line in lines):
        return None
    return AnalysisResult("empty", offline_summary(lines, facts) if spec.summary else None,
                          null_fields(spec), reason="the caller said nothing")


class OfflineAnalyst:
    """Without a model: a plain summary (`offline_summary`) and every field null."""

    def analyse(self, spec: Analysis, lines: Sequence[Line], facts: CallFacts
                ) -> AnalysisResult:
        """The offline analysis (status `offline`, or `empty` when the caller said nothing)."""
        empty = _no_words(spec, lines, facts)
        if empty is not None:
            return empty
        return AnalysisResult("offline", offline_summary(lines, facts) if spec.summary else None,
                              null_fields(spec), reason="no model configured (OPENAI_API_KEY)")


SYSTEM = """You analyse a finished phone call of a business for its owner. Read the transcript \
and answer with one JSON object only, no prose, matching the JSON Schema given: every key \
present, null for what the call did not tell, string values only from the listed ones. \
The call ran on flow "{flow}"{how}."""


class ModelAnalyst:
    """The model fills the fields (see the module docstring). `client` is an `openai.OpenAI`;
    its own retries are left to this analyst's one retry."""

    def __init__(self, client: openai.OpenAI, model: str,
                 timeout: float = ANALYSIS_TIMEOUT) -> None:
        self.client = client.with_options(timeout=timeout, max_retries=0)
        self.model = model

    def analyse(self, spec: Analysis, lines: Sequence[Line], facts: CallFacts
                ) -> AnalysisResult:
        """The model's analysis, checked; `failed` after ATTEMPTS answers that do not fit."""
        empty = _no_words(spec, lines, facts)
        if empty is not None:
            return empty
        schema = result_schema(spec)
        how = f" and ended at node {facts.last_node} ({facts.status})" if facts.last_node else ""
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM.format(flow=facts.flow, how=how)},
            {"role": "user", "content": "Transcript:\n" + transcript_text(lines)}]
        reason, answer = "", ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                answer = self._ask(messages, schema)
            except (openai.OpenAIError, ValueError) as error:  # ValueError: a body not JSON
                reason = f"the model request failed: {type(error).__name__}: {error}"[:300]
                log.warning("analysis of a %s call, attempt %d: %s", facts.flow, attempt, reason)
                continue
            value, reason = problem_with(answer, schema)
            if value is not None:
                fields = {item.name: value.get(item.name) for item in spec.fields}
                return AnalysisResult("ok", value.get("summary") if spec.summary else None,
                                      fields, model=self.model, attempts=attempt, raw=answer)
            log.warning("analysis of a %s call, attempt %d: %s", facts.flow, attempt, reason)
            messages += [{"role": "assistant", "content": answer},
                         {"role": "user", "content": f"That answer does not fit: {reason}. "
                                                     "Answer again with the JSON object only."}]
        return AnalysisResult("failed", None, null_fields(spec), reason=reason,
                              model=self.model, attempts=ATTEMPTS, raw=answer)

    def _ask(self, messages: list[dict[str, Any]], schema: Mapping[str, Any]) -> str:
        """The model's answer text to `messages`, asked for in the shape of `schema`."""
        response_format: Any = {"type": "json_schema", "json_schema": {
            "name": "call_analysis", "strict": True, "schema": dict(schema)}}
        chat: Any = messages  # plain dicts, as the SDK sends them
        completion = self.client.chat.completions.create(
            model=self.model, messages=chat, response_format=response_format)
        choice = completion.choices[0] if completion.choices else None
        return (choice.message.content or "") if choice is not None else ""
