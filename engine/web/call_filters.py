"""The calls list's query string read into a `CallQuery`: `since`, `until`, `flow`, `outcome`,
`q`, `test`, `before` and `limit`, each checked, with a message naming the bad one.

Dates are ISO 8601 (`2026-12-08`, `2026-12-08T09:30`, with an offset or `Z`; without one UTC)
or epoch seconds; a date alone as `until` includes that whole day. `before` is the opaque cursor
a page's `next` link carries.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from engine.runtime.outcome import OUTCOMES
from engine.store import MAX_SEARCH, CallQuery, Cursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_FLOW_ID = 100
LAST_TIME = 95_617_584_000.0  # 5000-01-01: dates past it are typos, and overflow date arithmetic
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"", "0", "false", "no", "off"})


class BadFilter(ValueError):
    """A query parameter that cannot be read; the message says which and why."""


@dataclass(frozen=True)
class Listing:
    """A listing asked for: the store's query and how many calls a page holds."""

    query: CallQuery
    limit: int


def parse_time(name: str, text: str, *, end_of_day: bool = False) -> float:
    """Epoch seconds of `text` (ISO 8601 or epoch seconds); BadFilter naming `name` otherwise."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return _in_range(name, text, number)
        raise BadFilter(f"{name}: {text[:40]!r} is not a time")
    if len(text) > 40:
        raise BadFilter(f"{name}: not a date (write 2026-12-08 or 2026-12-08T09:30Z)")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            moment = start + timedelta(days=1) if end_of_day else start
        else:
            moment = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise BadFilter(f"{name}: {text!r} is not a date (write 2026-12-08 or "
                        f"2026-12-08T09:30Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _in_range(name, text, moment.timestamp())


def _in_range(name: str, text: str, epoch: float) -> float:
    if not 0 <= epoch < LAST_TIME:
        raise BadFilter(f"{name}: {text[:40]!r} is out of range (1970 to 5000)")
    return epoch


def encode_cursor(cursor: Cursor) -> str:
    """The `before` value that continues a listing after `cursor`."""
    raw = json.dumps([cursor.updated_at, cursor.started_at, cursor.call_sid],
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """The cursor `encode_cursor` made; BadFilter for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        updated, started, sid = json.loads(raw)
        if not (isinstance(sid, str) and len(sid) <= 64):
            raise TypeError
        return Cursor(float(updated), float(started), sid)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadFilter("before: not a cursor of this list (use the `next` link)") from None


def parse_listing(args: Mapping[str, str], *, max_limit: int = MAX_LIMIT) -> Listing:
    """The listing `args` (a request's query string) ask for; BadFilter when one is bad.

    `limit` is at least 1 and at most `max_limit` (more is read as the most)."""
    try:
        limit = int(args.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise BadFilter("limit must be a number") from None
    since = parse_time("since", args["since"]) if args.get("since") else None
    until = parse_time("until", args["until"], end_of_day=True) if args.get("until") else None
    flow = args.get("flow") or None
    if flow is not None and len(flow) > MAX_FLOW_ID:
        raise BadFilter("flow: not a flow id")
    outcome = args.get("outcome") or None
    if outcome is not None and outcome not in OUTCOMES:
        raise BadFilter(f"outcome: {outcome[:40]!r} is not one of {', '.join(OUTCOMES)}")
    text = args.get("q", "").strip()
    if len(text) > MAX_SEARCH:
        raise BadFilter(f"q: a search is at most {MAX_SEARCH} characters")
    # Test calls are listed (and marked) unless left out: GET /api/calls lists every call, as
    # it did before the filters (DESIGN.md section 4); the dashboard's list asks for test=0.
    test = args.get("test", "1").strip().lower() or "1"
    if test not in TRUE | FALSE:
        raise BadFilter("test: write test=0 to leave test calls out, test=1 to list them")
    before = decode_cursor(args["before"]) if args.get("before") else None
    return Listing(CallQuery(since=since, until=until, flow=flow, outcome=outcome, text=text,
                             include_test=test in TRUE, before=before),
                   min(max(limit, 1), max_limit))
