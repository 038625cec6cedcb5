"""What templates and conditions see during a call, and how their failures are contained."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.flows.model import Flow
from engine.runtime.state import CallState
from engine.runtime.templates import evaluate, make_helpers, render


@dataclass(frozen=True)
class CallerInput:
    """What the caller just said or pressed (empty outside a caller turn)."""

    speech: str = ""
    digits: str = ""
    confidence: float = 0.0


def local_time(flow: Flow, now: float) -> datetime:
    """The epoch time `now` as an aware datetime in the flow's timezone (UTC when the zone
    is unknown to this system).
    """
    try:
        zone = ZoneInfo(flow.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return datetime.fromtimestamp(now, zone)


NO_INPUT = CallerInput()

TREND_SPAN = 3
"""`sentiment_trend` is the change over this many of the caller's last utterances."""


def sentiment_values(scores: tuple[float, ...]) -> dict[str, float]:
    """`sentiment` (the last utterance's score), `sentiment_avg` (of every one scored) and
    `sentiment_trend` (the last score minus the first of the last three: negative when the
    caller's mood falls); each 0.0 until there is something to tell."""
    if not scores:
        return {"sentiment": 0.0, "sentiment_avg": 0.0, "sentiment_trend": 0.0}
    recent = scores[-TREND_SPAN:]
    return {"sentiment": scores[-1], "sentiment_avg": round(sum(scores) / len(scores), 3),
            "sentiment_trend": round(recent[-1] - recent[0], 3)}


def values(flow: Flow, state: CallState, now: float,
           heard: CallerInput = NO_INPUT) -> dict[str, Any]:
    """The names a template or condition of `flow` sees at `now` in `state`: what the caller
    just said or pressed (`heard`), the caller, the flow's vars (with what http nodes saved
    on top), the turn, local `now`, the
    node, the call's sid and number called, the caller's mood (`sentiment_values`), the
    call's `language` and the last utterance's `detected_language`, and the helpers
    (`said_any`, `open_between`, ...). A fresh dict each time; `vars` is a copy.
    """
    moment = local_time(flow, now)
    return {
        "speech": heard.speech, "digits": heard.digits, "confidence": heard.confidence,
        "caller": state.caller, "vars": {**flow.vars, **state.vars}, "turn": state.turn,
        "now": moment,
        "node": state.node, "call": {"sid": state.call_sid, "to": state.called},
        "language": state.language or flow.language,
        "detected_language": state.detected_language,
        **sentiment_values(state.sentiments), **make_helpers(heard.speech, moment),
    }


class TemplateFailure(Exception):
    """A template or condition failed at run time; `where` names the field."""

    def __init__(self, where: str, error: Exception) -> None:
        super().__init__(f"{where}: {type(error).__name__}: {error}")
        self.where = where


def render_text(text: str, context: dict[str, Any], where: str) -> str:
    """`text` rendered with `context`, stripped. Any failure (an unknown name included)
    raises TemplateFailure naming `where`.
    """
    try:
        return render(text, context).strip()
    except Exception as error:  # the sandbox raises many kinds; a flow must not crash a call
        raise TemplateFailure(where, error) from error


def holds(expression: str, context: dict[str, Any], where: str) -> bool:
    """Whether the condition `expression` holds in `context`. Any failure raises
    TemplateFailure naming `where`; the caller decides it counts as false.
    """
    try:
        return evaluate(expression, context)
    except Exception as error:
        raise TemplateFailure(where, error) from error
