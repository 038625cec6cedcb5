"""A call's outcome for its owner (transferred, voicemail, resolved, abandoned, failed), and the
other facts the calls list shows (mood, summary, test source), read from the call's events.

The rule is written once, here, as plain functions of plain values: the stores keep its result in
each call's summary row (so the list filters on it in one query) and the docs
(docs/dashboard.md) describe it. The first that applies wins:

1. the call has not ended: no outcome yet (None);
2. `transferred`: a transfer was answered (`call.transfer` with status completed or answered);
3. `voicemail`: the caller left a recording (`call.recording` longer than 0 seconds);
4. `failed`: Twilio's final status is failed, busy, no-answer or canceled, or the engine could
   not go on (a `call.error` of kind `flow`), or the call's last event that spoke or failed was
   an error (the caller's last words were met by a failure, not an answer);
5. `resolved`: the analysis says `resolved: true`; or, with no such field (absent or null), the
   caller spoke and their last utterance was answered;
6. `abandoned`: anything else (the caller said nothing, hung up before an answer, or the
   analysis says `resolved: false`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OUTCOMES = ("transferred", "voicemail", "resolved", "abandoned", "failed")
"""Every outcome, in the order the dashboard lists them."""

FAILED_STATUSES = frozenset({"failed", "busy", "no-answer", "canceled"})
ANSWERED_TRANSFER = frozenset({"completed", "answered"})
SUMMARY_CHARS = 500
"""The analysis summary is shown in the list this long at most (the call page shows all of it)."""

FACT_EVENTS = ("call.transcript", "call.say", "call.response", "call.transfer",
               "call.recording", "call.error", "call.end", "call.analysis", "call.test")
"""The events `call_facts` reads; a store need read no others."""

REFRESH_EVENTS = frozenset({"call.end", "call.analysis", "call.test"})
"""Events after which a store computes the facts again: the call ended, was analysed or marked."""


@dataclass(frozen=True)
class CallFacts:
    """What the list shows of a call beyond its summary row."""

    outcome: str | None  # one of OUTCOMES; None while the call is live
    mood: float | None  # the average sentiment of the caller's utterances; None when unscored
    summary: str  # the analysis summary, '' until there is one (the list shortens it)
    test: str | None  # what made a test call (`flask call`, `scenario`, `editor`), else None


@dataclass
class _Seen:
    utterances: int = 0
    answered: bool = False  # an agent line came after the caller's last utterance
    scores: float = 0.0
    scored: int = 0
    transferred: bool = False
    recorded: bool = False
    engine_failed: bool = False
    last_was_error: bool = False
    ended: bool = False
    status: str = ""
    analysis: Mapping[str, Any] | None = None
    test: str | None = None


def _see(seen: _Seen, name: str, data: Mapping[str, Any]) -> None:
    if name == "call.transcript":
        if not data.get("silence") and (data.get("speech") or data.get("digits")):
            seen.utterances += 1
            seen.answered = False
        score = data.get("sentiment")
        if isinstance(score, int | float) and not isinstance(score, bool):
            seen.scores += float(score)
            seen.scored += 1
        seen.last_was_error = False
    elif name in ("call.say", "call.response"):
        seen.answered = seen.utterances > 0
        seen.last_was_error = False
    elif name == "call.transfer":
        seen.transferred |= data.get("status") in ANSWERED_TRANSFER
    elif name == "call.recording":
        duration = data.get("duration")
        seen.recorded |= isinstance(duration, int | float) and duration > 0
    elif name == "call.error":
        seen.engine_failed |= data.get("kind") == "flow"
        seen.last_was_error = True
    elif name == "call.end":
        seen.ended = True
        seen.status = str(data.get("status") or seen.status)
    elif name == "call.analysis":
        seen.analysis = data
    elif name == "call.test":
        seen.test = str(data.get("source") or "test")


def derive_outcome(seen: _Seen, ended: bool, status: str) -> str | None:
    """The rule of the module's docstring over what the events showed."""
    if not (ended or seen.ended):
        return None
    if seen.transferred:
        return "transferred"
    if seen.recorded:
        return "voicemail"
    if (status or seen.status) in FAILED_STATUSES or seen.engine_failed or seen.last_was_error:
        return "failed"
    fields = seen.analysis.get("fields") if seen.analysis is not None else None
    resolved = fields.get("resolved") if isinstance(fields, Mapping) else None
    if isinstance(resolved, bool):
        return "resolved" if resolved else "abandoned"
    return "resolved" if seen.utterances and seen.answered else "abandoned"


def call_facts(events: Iterable[tuple[str, Mapping[str, Any]]], *, ended: bool = False,
               status: str = "") -> CallFacts:
    """The facts of a call from its events (name and data, in order), `ended` when the store
    knows it ended without a `call.end` event, and its final Twilio `status` ('' when none)."""
    seen = _Seen()
    for name, data in events:
        _see(seen, name, data if isinstance(data, Mapping) else {})
    summary = seen.analysis.get("summary") if seen.analysis is not None else None
    return CallFacts(
        outcome=derive_outcome(seen, ended, status),
        mood=round(seen.scores / seen.scored, 3) if seen.scored else None,
        # Kept whole: an encrypted store hands a sealed summary here, which cut would not open.
        summary=summary if isinstance(summary, str) else "",
        test=seen.test)
