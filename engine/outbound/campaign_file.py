"""A campaign's CSV file, read into rows to call, with every bad or repeated row reported.

The file has a header line; a `to` column (the number to call) is required, a `timezone` column
(IANA, such as America/Chicago) is optional, and every other column is a var of the call, named
by its header. Rows are checked as they are read: a number that is not a phone number, one
called by an earlier row (compared in E.164), one on the do-not-call list, and an unknown time
zone are each skipped with a line saying why; they are kept in the campaign as `skipped`, so
nothing in the file goes unaccounted for.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from engine.outbound.dial import VAR_NAME
from engine.outbound.numbers import BadNumber, DoNotCall, e164
from engine.outbound.quiet import zone

MAX_ROWS = 100_000
TO, TIMEZONE = "to", "timezone"


class CampaignFileError(ValueError):
    """A file no row of which can be called (no header, no `to` column, a bad column name)."""


@dataclass
class Row:
    """One line of the file and its progress: `state` is pending, calling, retry, done,
    failed or skipped; `why` says why a row was skipped or failed."""

    line: int
    to: str
    vars: dict[str, Any] = field(default_factory=dict)
    timezone: str = ""
    state: str = "pending"
    why: str = ""
    attempts: int = 0
    call_sid: str = ""
    outcome: str = ""  # Twilio's final status of the last call: completed, busy, no-answer...
    answered_by: str = ""
    next_at: float = 0.0  # a retry is not placed before this (epoch seconds)
    placed_at: list[float] = field(default_factory=list)  # when each attempt was placed

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        """The row `as_json` gave."""
        return cls(**data)

    def as_json(self) -> dict[str, Any]:
        """The row as JSON-ready values."""
        return dict(self.__dict__)


def read_rows(text: str, do_not_call: DoNotCall) -> list[Row]:
    """Every data row of the CSV `text`, checked; CampaignFileError when none can be."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header or not any(cell.strip() for cell in header):
        raise CampaignFileError("the file is empty: write a header line with a `to` column")
    names = [cell.strip().lower() if cell.strip().lower() in (TO, TIMEZONE) else cell.strip()
             for cell in header]
    if TO not in names:
        raise CampaignFileError(f"no `to` column in the header ({', '.join(names)}): name the "
                                f"column of numbers to call `to`")
    bad = [name for name in names if name not in (TO, TIMEZONE) and not VAR_NAME.fullmatch(name)]
    if bad:
        raise CampaignFileError(f"column {bad[0]!r} cannot be a var name: use letters, digits "
                                f"and _, starting with a letter")
    rows: list[Row] = []
    first_line: dict[str, int] = {}
    forbidden = do_not_call.numbers()
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(rows) >= MAX_ROWS:
            raise CampaignFileError(f"more than {MAX_ROWS} rows: split the file")
        values = {name: (cells[index].strip() if index < len(cells) else "")
                  for index, name in enumerate(names)}
        row = Row(line=line, to=values.get(TO, ""), timezone=values.get(TIMEZONE, ""),
                  vars={name: value for name, value in values.items()
                        if name not in (TO, TIMEZONE)})
        try:
            row.to = e164(row.to, "to")
            if row.timezone:
                zone(row.timezone)
        except (BadNumber, ValueError) as error:
            row.state, row.why = "skipped", str(error)
        else:
            if row.to in first_line:
                row.state, row.why = "skipped", f"{row.to} repeats line {first_line[row.to]}"
            elif row.to in forbidden:
                row.state, row.why = "skipped", f"{row.to} is on the do-not-call list"
            else:
                first_line[row.to] = line
        rows.append(row)
    return rows
