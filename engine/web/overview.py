"""The owners' overview: calls per day, outcomes, and the AI's latency over a date range.

Counts come from the calls' summary rows (outcomes are kept there, engine/runtime/outcome.py);
latency from the `call.timing` events (one a model turn: `first_token`, seconds from the
webhook to the model's first token, and `answer`, to the webhook's answer) of the newest
LATENCY_CALLS calls of the range, so the page costs a bounded read however long the range.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from engine.runtime.outcome import OUTCOMES
from engine.store import CallSummary, StoredEvent

LATENCY_CALLS = 300
MAX_CALLS = 5000
"""Calls an overview counts at most; `truncated` says when the range held more."""
LATENCY_KEYS = ("first_token", "answer")


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of `values` (0 < fraction <= 1); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil without floats drifting
    return round(ordered[int(rank) - 1], 3)


def per_day(calls: Iterable[CallSummary], offset_minutes: int, since: float,
            until: float) -> list[dict[str, Any]]:
    """Calls and outcomes per local day (UTC + `offset_minutes`) from `since` to `until`,
    every day listed, the empty ones too."""
    zone = timezone(timedelta(minutes=offset_minutes))
    days: dict[str, Counter[str]] = {}
    day = datetime.fromtimestamp(since, zone).date()
    last = datetime.fromtimestamp(max(until - 1, since), zone).date()
    while day <= last and len(days) < 400:
        days[day.isoformat()] = Counter()
        day += timedelta(days=1)
    for call in calls:
        key = datetime.fromtimestamp(call.started_at, zone).date().isoformat()
        counter = days.setdefault(key, Counter())
        counter["calls"] += 1
        counter[call.outcome or "live"] += 1
    return [{"day": key, "calls": counts["calls"],
             "outcomes": {name: counts[name] for name in (*OUTCOMES, "live")}}
            for key, counts in sorted(days.items())]


def latency(events: Iterable[StoredEvent]) -> dict[str, Any]:
    """p50 and p90 (seconds) of each of LATENCY_KEYS over the `call.timing` events, and the
    number of model turns they cover."""
    found: dict[str, list[float]] = {key: [] for key in LATENCY_KEYS}
    turns = 0
    for event in events:
        if event.name != "call.timing":
            continue
        turns += 1
        for key in LATENCY_KEYS:
            value = event.data.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                found[key].append(float(value))
    return {"turns": turns, **{key: {"p50": percentile(values, 0.5),
                                     "p90": percentile(values, 0.9)}
                               for key, values in found.items()}}


def utc_day_start(epoch: float) -> float:
    """The start of the UTC day of `epoch`."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC).timestamp()
