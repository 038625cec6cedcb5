"""Calls as CSV: one row a call, its analysis' fields as columns, safe to open in a spreadsheet.

A text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading
apostrophe, so a spreadsheet shows it as text instead of running it as a formula (CSV or
formula injection: a caller's words and a model's summary are not ours). Numbers we write
(duration, mood) are written as numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from engine.store import CallSummary

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

COLUMNS = ("call_sid", "started_at", "ended_at", "duration", "flow", "caller", "called",
           "status", "outcome", "mood", "test", "analysis_status", "summary")
"""The columns every export has, before the analysis fields (`field.<name>`, sorted)."""


def safe_cell(value: Any) -> str | int | float:
    """`value` as a CSV cell: text defused against formula injection, numbers as they are,
    None as empty, booleans as true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _time(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def calls_csv(rows: Sequence[tuple[CallSummary, Mapping[str, Any] | None]]) -> str:
    """The CSV of `rows` (each call with its analysis, or None), header first."""
    fields: set[str] = set()
    for _, analysis in rows:
        found = analysis.get("fields") if analysis else None
        if isinstance(found, Mapping):
            fields.update(str(name) for name in found)
    names = sorted(fields)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*COLUMNS, *(f"field.{name}" for name in names)])
    for call, analysis in rows:
        writer.writerow([safe_cell(value) for value in _row(call, analysis or {}, names)])
    return out.getvalue()


def _row(call: CallSummary, analysis: Mapping[str, Any], names: Iterable[str]) -> list[Any]:
    found = analysis.get("fields")
    values = found if isinstance(found, Mapping) else {}
    summary = analysis.get("summary")
    return [call.call_sid, _time(call.started_at), _time(call.ended_at), call.duration,
            call.flow_id, call.caller, call.called, call.status, call.outcome, call.mood,
            call.test, analysis.get("status"),
            summary if isinstance(summary, str) else call.summary,
            *(values.get(name) for name in names)]
