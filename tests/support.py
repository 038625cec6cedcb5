"""Test helpers shared by the suites: a settable clock, and transports for the call simulator.

`engine.simulator.SimulatedCall` posts through a `Transport` (url, form, headers) -> HttpAnswer.
`client_transport` answers from a Flask test client in-process; `requests_transport` goes over
real HTTP, as Twilio does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

import requests

from engine.authoring.transports import client_transport
from engine.simulator import HttpAnswer, Transport

__all__ = ["AUTH_TOKEN", "Clock", "Transport", "client_transport", "epoch", "requests_transport"]

AUTH_TOKEN = "test-token"


def epoch(text: str, zone: str = "UTC") -> float:
    """`epoch('2025-01-15 10:00', 'America/New_York')`: that wall-clock moment in `zone`."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


# Wednesday 15 January 2025, 10:00 in New York and 09:00 in Chicago: every bundled flow is open.
WEEKDAY_MORNING = epoch("2025-01-15 10:00", "America/New_York")


class Clock:
    """A `now` that tests set: `clock.now = ...` or `clock.advance(seconds)`."""

    def __init__(self, now: float = WEEKDAY_MORNING) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, text: str, zone: str) -> None:
        self.now = epoch(text, zone)


def requests_transport(url: str, params: Mapping[str, str],
                       headers: Mapping[str, str]) -> HttpAnswer:
    """Post over real HTTP, following no redirects (Twilio does not follow HTTP redirects on a
    webhook's POST either)."""
    started = time.perf_counter()
    answer = requests.post(url, data=dict(params), headers=dict(headers),
                           allow_redirects=False, timeout=10)
    return HttpAnswer(answer.status_code, answer.text, answer.headers.get("Content-Type", ""),
                      time.perf_counter() - started)
