"""CSV cells defused against formula injection (engine/web/calls_csv.py)."""

from __future__ import annotations

import csv
import io

import pytest

from engine.store import CallSummary
from engine.web.calls_csv import COLUMNS, calls_csv, safe_cell


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+2", "'=1+2"), ("+15551234", "'+15551234"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tcmd", "'\tcmd"), ("\r=x", "'\r=x"), ("plain", "plain"), ("a=b", "a=b"), ("", ""),
    (None, ""), (True, "true"), (False, "false"), (-0.25, -0.25), (42, 42),
])
def test_cells(value: object, cell: object) -> None:
    assert safe_cell(value) == cell


def test_rows_keep_their_columns_and_quote_what_needs_it() -> None:
    call = CallSummary("CA1", "clinic", "v1", "+15550001", "+15550002", "completed", "bye",
                       "friendly", 0.0, 10.0, 10.0, 10, outcome="resolved", mood=-0.1,
                       summary='He said "hi",\nthen =HYPERLINK("x")')
    rows = list(csv.reader(io.StringIO(calls_csv([
        (call, {"status": "ok", "summary": call.summary,
                "fields": {"pet": "=cmd|' /C calc'!A0", "ok": None}}),
        (call, None)]))))
    assert rows[0] == [*COLUMNS, "field.ok", "field.pet"]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["summary"] == call.summary  # a newline and quotes survive, quoted
    assert first["field.pet"] == "'=cmd|' /C calc'!A0"
    assert first["caller"] == "'+15550001"
    assert (first["field.ok"], first["mood"], first["started_at"]) == (
        "", "-0.1", "1970-01-01T00:00:00Z")
    second = dict(zip(rows[0], rows[2], strict=True))
    assert (second["analysis_status"], second["field.pet"]) == ("", "")
