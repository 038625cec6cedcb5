"""Campaigns: the rows of a CSV file called on one flow, paced, retried, resumable, stoppable.

A campaign is kept in the store (one JSON blob per campaign, and a list of them), and every
change to a row is written there as it happens, so a campaign run again after a restart (the
same flow and file: the same id) goes on where it stopped: rows done stay done, and calls that
were ringing are looked up again through the REST API.

`CampaignRunner.run` places at most `rate` calls a minute and at most `concurrency` at once;
a call that ends busy or unanswered (`no-answer`) is tried again after `retry_delay` seconds,
at most `retries` times; `failed` and `canceled` are not retried, nor are Twilio's refusals of
a number (21211 ...), which fail the row with Twilio's message. A row whose callee is in their
quiet hours waits for them to end. `request_stop` (the `flask calls campaign-stop` command)
or an interrupt stops placing calls; those in progress go on and are looked up on resume.

The runner's clock and sleep are handed in, so tests run a day of pacing in no time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from twilio.base.exceptions import TwilioException

from engine.outbound.campaign_file import Row
from engine.outbound.dial import Dialer, DialError
from engine.outbound.quiet import QuietHours, zone
from engine.store import CallStore

log = logging.getLogger(__name__)

INDEX = "outbound:campaigns"
PREFIX = "outbound:campaign:"
RETRY_STATUSES = frozenset({"busy", "no-answer"})
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
TERMINAL = frozenset({"done", "failed", "skipped"})
CAS_TRIES = 50


def campaign_id(flow: str, text: str) -> str:
    """The id of a campaign of `flow` over a file of `text`: the same file, the same id, so
    running it again resumes it."""
    return f"{flow}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass
class Campaign:
    """A campaign as the store keeps it: its settings, its rows and where it stands (`status`:
    running, stopped, done)."""

    id: str
    flow: str
    file: str
    rate: float  # calls placed a minute, at most
    concurrency: int
    retries: int
    retry_delay: float
    created_at: float
    status: str = "running"
    stop: bool = False  # asked to stop (campaign-stop); the runner stops at its next turn
    rows: list[Row] = field(default_factory=list)
    updated_at: float = 0.0

    def counts(self) -> dict[str, int]:
        """How many rows are in each state."""
        return dict(Counter(row.state for row in self.rows))

    def summary(self) -> dict[str, Any]:
        """What `GET /api/campaigns` and the dashboard show of it."""
        counts = self.counts()
        finished = sum(counts.get(state, 0) for state in TERMINAL)
        return {"id": self.id, "flow": self.flow, "file": self.file, "status": self.status,
                "stop_requested": self.stop, "rate_per_minute": self.rate,
                "concurrency": self.concurrency, "rows": len(self.rows), "counts": counts,
                "progress": round(100.0 * finished / len(self.rows), 1) if self.rows else 100.0,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "skipped": [{"line": r.line, "to": r.to, "why": r.why}
                            for r in self.rows if r.state == "skipped"][:50],
                "failed": [{"line": r.line, "to": r.to, "why": r.why}
                           for r in self.rows if r.state == "failed"][:50]}

    def as_json(self) -> dict[str, Any]:
        """The campaign as JSON-ready values."""
        data = {key: value for key, value in self.__dict__.items() if key != "rows"}
        data["rows"] = [row.as_json() for row in self.rows]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Campaign:
        """The campaign `as_json` gave."""
        rows = [Row.from_json(row) for row in data.get("rows", ())]
        return cls(**{**{k: v for k, v in data.items() if k != "rows"}, "rows": rows})


# -- the store ----------------------------------------------------------------------------------

def load(store: CallStore, campaign: str) -> Campaign | None:
    """The campaign with this id, as last written; None when there is none."""
    raw = store.get_blob(PREFIX + campaign)
    return Campaign.from_json(json.loads(raw)) if raw is not None else None


def save(store: CallStore, campaign: Campaign, now: float, *, resume: bool = False) -> None:
    """Write the campaign (its runner is its only writer of rows) and list it once; a stop
    asked for meanwhile is kept, unless this write `resume`s the campaign."""
    key = PREFIX + campaign.id
    for _ in range(CAS_TRIES):
        raw = store.get_blob(key)
        if raw is not None and json.loads(raw).get("stop") and not resume:
            campaign.stop = True
        campaign.updated_at = now
        if store.compare_and_set_blob(key, raw, json.dumps(campaign.as_json()).encode()):
            break
    else:
        raise RuntimeError(f"campaign {campaign.id}: could not write it (too many writers)")
    for _ in range(CAS_TRIES):
        index = store.get_blob(INDEX)
        ids = json.loads(index) if index else []
        if campaign.id in ids or store.compare_and_set_blob(
                INDEX, index, json.dumps([*ids, campaign.id]).encode()):
            return


def campaigns(store: CallStore) -> list[Campaign]:
    """Every campaign the store knows, newest first."""
    index = store.get_blob(INDEX)
    found = [load(store, name) for name in (json.loads(index) if index else [])]
    return sorted((c for c in found if c is not None), key=lambda c: -c.created_at)


def request_stop(store: CallStore, campaign: str) -> bool:
    """Ask the campaign's runner to stop placing calls; False for an unknown campaign."""
    key = PREFIX + campaign
    for _ in range(CAS_TRIES):
        raw = store.get_blob(key)
        if raw is None:
            return False
        data = json.loads(raw)
        # Its runner, if one is running, stops at its next turn and writes `stopped` too.
        data["stop"], data["status"] = True, "stopped" if data.get("status") == "running" \
            else data.get("status")
        if store.compare_and_set_blob(key, raw, json.dumps(data).encode()):
            return True
    return False


# -- the runner ---------------------------------------------------------------------------------

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class CampaignRunner:
    """Runs one campaign to its end or a stop, writing every change to the store."""

    def __init__(self, campaign: Campaign, dialer: Dialer, store: CallStore, *,
                 default_zone: str = "UTC", quiet: QuietHours | None = None,
                 clock: Clock = time.time, sleep: Sleep = time.sleep, poll: float = 2.0,
                 said: Callable[[str], None] = lambda line: None) -> None:
        self.campaign = campaign
        self.dialer = dialer
        self.store = store
        self.default_zone = default_zone
        self.quiet = quiet or QuietHours.parse("")
        self.clock = clock
        self.sleep = sleep
        self.poll = poll
        self.said = said
        self.next_slot = 0.0

    def save(self, resume: bool = False) -> None:
        """Write the campaign as it stands (`resume`: clearing a stop asked for before)."""
        save(self.store, self.campaign, self.clock(), resume=resume)

    def calling(self) -> list[Row]:
        """The rows whose call is under way."""
        return [row for row in self.campaign.rows if row.state == "calling"]

    def run(self) -> Campaign:
        """Place, poll and retry until every row is done, failed or skipped, or a stop is
        asked for; the campaign as it ended (status done or stopped)."""
        campaign = self.campaign
        campaign.status, campaign.stop = "running", False
        self.save(resume=True)
        try:
            while True:
                self.check_calls()
                if self.stopping():
                    campaign.status = "stopped"
                    break
                if all(row.state in TERMINAL for row in campaign.rows):
                    campaign.status = "done"
                    break
                placed = self.place_next()
                if not placed:
                    self.sleep(self.wait())
        except KeyboardInterrupt:
            campaign.status = "stopped"
            self.said(f"campaign {campaign.id}: stopped; calls under way go on")
        finally:
            self.save()
        return campaign

    def stopping(self) -> bool:
        """A stop was asked for in the store (or by this process)."""
        stored = load(self.store, self.campaign.id)
        if stored is not None and stored.stop:
            self.campaign.stop = True
        return self.campaign.stop

    def wait(self) -> float:
        """How long to sleep before there can be something to do: a poll while calls are
        under way, else until the next slot, retry or end of quiet hours (at most a poll)."""
        now = self.clock()
        if self.calling():
            return self.poll
        moments = [self.ready_at(row, now) for row in self.campaign.rows
                   if row.state in ("pending", "retry")]
        soonest = max(min(moments, default=now + self.poll), self.next_slot)
        return max(min(soonest - now, 60.0), 0.05)

    def ready_at(self, row: Row, now: float) -> float:
        """When `row` may be called, `now` or later: after its retry delay, outside its quiet
        hours."""
        at = max(row.next_at, now)
        return self.quiet.next_allowed(at, zone(row.timezone or self.default_zone))

    def place_next(self) -> bool:
        """Place the next call when a slot is free and a row is ready; True when one was
        placed (or refused), False when there is nothing to do yet."""
        now = self.clock()
        campaign = self.campaign
        if len(self.calling()) >= campaign.concurrency or now < self.next_slot:
            return False
        ready = [row for row in campaign.rows
                 if row.state in ("pending", "retry") and self.ready_at(row, now) <= now]
        if not ready:
            return False
        row = ready[0]
        row.attempts += 1
        row.placed_at.append(now)
        self.next_slot = now + 60.0 / campaign.rate
        try:
            placed = self.dialer.dial(campaign.flow, row.to, row.vars,
                                      by=f"campaign:{campaign.id}")
        except DialError as error:
            self.ended(row, "", error.message, retry=error.retry)
        else:
            row.state, row.call_sid, row.why = "calling", placed.call.call_sid, ""
            self.said(f"line {row.line}: calling {row.to} ({placed.call.call_sid})")
        self.save()
        return True

    def check_calls(self) -> None:
        """Look up each call under way; a final status ends its row (or retries it)."""
        changed = False
        for row in self.calling():
            try:
                call = self.dialer.client().calls(row.call_sid).fetch()
            except (TwilioException, requests.RequestException, OSError) as error:
                log.warning("campaign %s: could not look up %s: %s", self.campaign.id,
                            row.call_sid, error)
                continue
            status = str(call.status or "")
            if status not in FINAL_STATUSES:
                continue
            row.answered_by = str(getattr(call, "answered_by", "") or "")
            self.ended(row, status, f"the call ended {status}",
                       retry=status in RETRY_STATUSES)
            changed = True
        if changed:
            self.save()

    def ended(self, row: Row, status: str, why: str, *, retry: bool) -> None:
        """A row's attempt is over: done when answered, else retried or failed."""
        row.outcome = status
        if status == "completed":
            row.state, row.why = "done", ""
            self.said(f"line {row.line}: {row.to} answered")
        elif retry and row.attempts <= self.campaign.retries:
            row.state, row.why = "retry", why
            row.next_at = self.clock() + self.campaign.retry_delay
            self.said(f"line {row.line}: {row.to}: {why}; trying again later")
        else:
            row.state, row.why = "failed", why
            self.said(f"line {row.line}: {row.to}: {why}")
