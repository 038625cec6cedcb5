"""QUIET_HOURS: a span of local time, across midnight or not, or off; and when it ends."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from engine.outbound.quiet import QuietHours, zone

NEW_YORK = ZoneInfo("America/New_York")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 4, hour, minute, tzinfo=NEW_YORK)


def test_the_default_crosses_midnight() -> None:
    quiet = QuietHours.parse("")
    assert [quiet.quiet_at(at(h)) for h in (7, 8, 12, 20, 21, 23, 0)] == [
        True, False, False, False, True, True, True]


def test_a_span_within_the_day_and_off() -> None:
    lunch = QuietHours.parse("12:00-13:30")
    assert (lunch.quiet_at(at(12, 15)), lunch.quiet_at(at(13, 30)), lunch.quiet_at(at(9))) == (
        True, False, False)
    assert not QuietHours.parse("off").quiet_at(at(3))


def test_the_next_allowed_moment_is_when_the_quiet_ends_locally() -> None:
    quiet = QuietHours.parse("21:00-08:00")
    ten_pm = at(22).timestamp()
    assert datetime.fromtimestamp(quiet.next_allowed(ten_pm, NEW_YORK), NEW_YORK) == \
        datetime(2026, 3, 5, 8, 0, tzinfo=NEW_YORK)
    assert quiet.next_allowed(at(10).timestamp(), NEW_YORK) == at(10).timestamp()
    # the same moment is afternoon in Tokyo: no wait there
    assert quiet.next_allowed(ten_pm, ZoneInfo("Asia/Tokyo")) == ten_pm


@pytest.mark.parametrize("text", ["night", "25:00-08:00", "9-17", "08:00-08:00"])
def test_bad_spans_say_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match="QUIET_HOURS="):
        QuietHours.parse(text)


def test_an_unknown_zone_is_named() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        zone("Mars/Olympus")
