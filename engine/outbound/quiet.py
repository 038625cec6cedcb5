"""Quiet hours: the local times at which nobody is called, in the callee's own time zone.

QUIET_HOURS is a span of the clock, `21:00-08:00` by default (it may cross midnight), or `off`.
A campaign row's `timezone` column gives the callee's IANA time zone; a row without one is
taken to live in the flow's `timezone`. A row in its quiet hours waits until they end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_QUIET_HOURS = "21:00-08:00"
_SPAN = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


@dataclass(frozen=True)
class QuietHours:
    """From `start` to `end` local time nobody is called; `None` start: never quiet."""

    start: time | None
    end: time | None

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """`21:00-08:00`, `off`, or '' (the default); ValueError saying what to write."""
        text = (text or DEFAULT_QUIET_HOURS).strip()
        if text.lower() in ("off", "none", "0"):
            return cls(None, None)
        match = _SPAN.fullmatch(text)
        if match is None:
            raise ValueError(f"QUIET_HOURS={text!r}: write a span of local time such as "
                             f"{DEFAULT_QUIET_HOURS}, or off")
        start = time(int(match[1]), int(match[2]))
        end = time(int(match[3]), int(match[4]))
        if start == end:
            raise ValueError(f"QUIET_HOURS={text!r}: the span is empty; write off instead")
        return cls(start, end)

    def quiet_at(self, local: datetime) -> bool:
        """Whether `local` (a wall-clock time) falls in the quiet hours."""
        if self.start is None or self.end is None:
            return False
        now = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def next_allowed(self, at: float, zone: ZoneInfo) -> float:
        """`at` (epoch seconds) when it is not quiet in `zone`, else when the quiet ends."""
        local = datetime.fromtimestamp(at, zone)
        if not self.quiet_at(local) or self.end is None:
            return at
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0,
                            microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.timestamp()


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError naming it when there is none such."""
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name[:40]!r}: write an IANA name such as "
                         f"America/New_York") from None
