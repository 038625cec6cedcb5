"""The alert sink: `call.error` events of chosen kinds, posted to a Slack-compatible webhook.

`ALERT_WEBHOOK_URL` is a Slack incoming webhook, or anything that takes Slack's JSON (Mattermost,
Rocket.Chat, Discord's `/slack` endpoint): each post is `{"text": ..., "blocks": [...]}`, the
text holding the whole message for receivers that ignore blocks. `ALERT_KINDS` picks the error
kinds (comma separated; `all` for every kind); empty means `DEFAULT_KINDS`, the errors an
operator has to act on: `network`, `rate_limit` (the model's 429s), `ai_failure`, `tts_failure`,
`flow` (a flow that dead-ends or is missing: the caller hears an apology) and `internal`. Left
out by default: `template` and `condition` (authoring slips the call survives), `control` (a
dashboard action that failed, already shown to whoever tried it) and the refusals of denial of
wallet, `rate_limit_caller` (a caller over their quota), `rate_limit_live_calls` and
`model_budget` (abuse, not an outage; a request refused for the budget is an `ai_failure` too,
which is alerted).

The sink is one more sink of the publisher (engine/events/publisher.py), so alerts are sent off
the request path, by one server process at a time, at least once, from a cursor kept in the
store: a restart resumes where the last one stopped, and an alert whose post failed is retried
with the publisher's backoff. One `deliver` is at most one post (the batch's alerts together, up
to `shown` of them in full), so a retried batch is not posted twice.

Rate limit: at most `limit` posts (10) a `window` (60 s). Alerts beyond it are held back, counted
by kind in the store (`alerts:window`, so a restart keeps them), and summarised in the next post:
"…and 12 more since 2026-12-07 16:02:11 UTC (alerts are limited to 10 posts in 60 s): network 7,
internal 5". When no new alert comes, the summary is posted alone as soon as the window allows
(the publisher's `flush` rounds).

An alert carries the call's id (a link to its dashboard page when PUBLIC_BASE_URL is set), flow,
node, error kind, attempt, time and detail, and the caller's number masked as the logs mask it
(`+1555***4567`). Numbers in the detail are masked too, and the detail goes through `clean` (the
log redaction, which masks configured secrets and speech). Errors the sink raises name the
webhook's host only: the URL of a Slack webhook is its secret.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from engine.calls.limits import mask_number
from engine.events.publisher import Rejected
from engine.store import CallStore, StoredEvent

log = logging.getLogger(__name__)

DEFAULT_KINDS: tuple[str, ...] = ("network", "rate_limit", "ai_failure", "tts_failure", "flow",
                                  "internal")
EVERY_KIND = "*"
STATE_KEY = "alerts:window"
MAX_DETAIL = 300
_NUMBER = re.compile(r"(?<![\w+])\+\d{7,15}(?!\d)")


class AlertFailed(Exception):
    """The webhook did not take the post (retried by the publisher); names its host only."""


def parse_kinds(setting: str) -> frozenset[str]:
    """`ALERT_KINDS`: comma-separated `call.error` kinds; empty: `DEFAULT_KINDS`; `all` or `*`:
    every kind (as `{"*"}`)."""
    kinds = {item.strip().lower() for item in (setting or "").split(",") if item.strip()}
    if not kinds:
        return frozenset(DEFAULT_KINDS)
    if kinds & {"all", EVERY_KIND}:
        return frozenset({EVERY_KIND})
    return frozenset(kinds)


def check_url(url: str) -> str:
    """The webhook URL, stripped; ValueError unless it is http(s) with a host."""
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("ALERT_WEBHOOK_URL must be an http(s) URL, such as a Slack incoming "
                         "webhook's https://hooks.slack.com/services/...")
    return url


def mask_numbers(text: str) -> str:
    """`text` with every E.164 number masked as `mask_number` masks a caller's."""
    return _NUMBER.sub(lambda match: mask_number(match.group(0)), text)


def _escape(text: object) -> str:
    """Slack mrkdwn's three control characters, escaped as Slack asks."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: object) -> str:
    return "`" + _escape(text).replace("`", "'") + "`"


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Alert:
    """One `call.error` event as an alert shows it: nothing secret, the caller masked."""

    call_sid: str
    kind: str
    at: float  # epoch seconds, when the error was recorded
    detail: str = ""
    node: str = ""
    flow: str = ""
    caller: str = ""  # masked
    attempt: int | None = None
    link: str = ""  # the call's dashboard page, when PUBLIC_BASE_URL is set

    def lines(self) -> str:
        """The alert in Slack mrkdwn: what, where and when, then the detail quoted."""
        call = f"<{self.link}|{_escape(self.call_sid)}>" if self.link else _code(self.call_sid)
        where = [f"flow {_code(self.flow)}" if self.flow else "",
                 f"node {_code(self.node)}" if self.node else "",
                 f"caller {_escape(self.caller)}" if self.caller else "",
                 f"attempt {self.attempt}" if self.attempt else ""]
        text = f"*{_escape(self.kind)}* error on call {call} at {_utc(self.at)}"
        facts = " · ".join(part for part in where if part)
        if facts:
            text += f"\n{facts}"
        if self.detail:
            text += f"\n> {_escape(self.detail)}"
        return text


@dataclass(frozen=True)
class Window:
    """The rate limit's state, kept in the store's `alerts:window` blob."""

    started: float = 0.0  # epoch seconds: when the current window began
    posts: int = 0  # posts sent in it
    held: int = 0  # alerts held back since the last post
    held_kinds: Mapping[str, int] = field(default_factory=dict)
    held_since: float | None = None  # epoch seconds: the first alert held back

    def encode(self) -> bytes:
        """The state as compact JSON bytes."""
        return json.dumps({"started": self.started, "posts": self.posts, "held": self.held,
                           "held_kinds": dict(self.held_kinds), "held_since": self.held_since},
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Window:
        """The state `encode` wrote; a fresh one for nothing or anything unreadable."""
        if raw is None:
            return cls()
        try:
            value = json.loads(raw)
            since = value.get("held_since")
            return cls(float(value["started"]), int(value["posts"]), int(value["held"]),
                       {str(kind): int(count) for kind, count in value["held_kinds"].items()},
                       None if since is None else float(since))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.error("alerts: %s is unreadable; starting the rate limit again", STATE_KEY)
            return cls()

    def hold(self, alerts: Sequence[Alert]) -> Window:
        """The state with `alerts` held back as well."""
        kinds = Counter(dict(self.held_kinds))
        kinds.update(alert.kind for alert in alerts)
        since = self.held_since if self.held_since is not None else alerts[0].at
        return replace(self, held=self.held + len(alerts), held_kinds=dict(kinds),
                       held_since=since)


def _tally(kinds: Mapping[str, int]) -> str:
    ordered = sorted(kinds.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{_escape(kind)} {count}" for kind, count in ordered)


class AlertSink:
    """Posts alerts for the publisher; see the module docstring.

    `store` is the store the publisher reads (for the call's flow and caller, and the rate
    limit's state); `clean` masks secrets in a detail (the log redaction's `clean`); `clock`
    gives epoch seconds for the rate limit's window.
    """

    name = "alerts"

    def __init__(self, url: str, store: CallStore, *, kinds: Iterable[str] = DEFAULT_KINDS,
                 public_base_url: str = "", limit: int = 10, window: float = 60.0,
                 shown: int = 5, max_batch: int = 50, timeout: float = 5.0,
                 recheck: float = 5.0, clean: Callable[[str], str] | None = None,
                 clock: Callable[[], float] = time.time,
                 session: requests.Session | None = None) -> None:
        self.url = check_url(url)
        self.host = urlsplit(self.url).hostname or "?"
        self.store = store
        self.kinds = frozenset(kinds)
        self.public_base_url = public_base_url.strip().rstrip("/")
        self.limit = max(limit, 1)
        self.window = window
        self.shown = max(shown, 1)
        self.max_batch = max_batch
        self.timeout = timeout
        self.recheck = recheck  # seconds between looks at the store for held-back alerts
        self.clean = clean or (lambda text: text)
        self.clock = clock
        self.session = session or requests.Session()
        self._state: Window | None = None
        self._read_at = 0.0

    # -- the publisher's side ------------------------------------------------------------------

    def wanted(self, event: StoredEvent) -> bool:
        """A `call.error` event of one of the alert kinds."""
        if event.name != "call.error":
            return False
        return EVERY_KIND in self.kinds or str(event.data.get("kind", "")) in self.kinds

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        """Post the batch's alerts in one post, or hold them back over the rate limit; with no
        alert, post the held-back summary when it is due. Raises to be retried."""
        alerts = [self.alert(event) for event in events if self.wanted(event)]
        if not alerts:
            self._summary_if_due()
            return
        now = self.clock()
        state = self._roll(self._read(), now)
        if state.posts >= self.limit:
            self._save(state.hold(alerts))
            log.info("alerts: %d held back (at most %d posts in %g s)", len(alerts), self.limit,
                     self.window)
            return
        self.post(self.message(alerts, state))
        self._save(replace(state, posts=state.posts + 1, held=0, held_kinds={},
                           held_since=None))

    def flush(self) -> bool:
        """The publisher's idle round: post the summary of held-back alerts when the rate limit
        allows again. True when it posted."""
        try:
            return self._summary_if_due()
        except Rejected as error:  # a summary refused for good: never retried, so dropped
            state = self._read()
            log.error("alerts: the summary of %d held-back alerts was refused: %s", state.held,
                      error)
            self._save(replace(state, held=0, held_kinds={}, held_since=None))
            return False

    # -- building --------------------------------------------------------------------------------

    def alert(self, event: StoredEvent) -> Alert:
        """What the alert shows of `event`, with the call's flow and (masked) caller."""
        data = event.data
        call = self.store.get_call(event.call_sid)
        caller = call.caller if call is not None and call.caller else str(data.get("caller", ""))
        detail = " ".join(mask_numbers(self.clean(str(data.get("detail", "")))).split())
        if len(detail) > MAX_DETAIL:
            detail = detail[:MAX_DETAIL - 1] + "…"
        attempt = data.get("attempt")
        link = (f"{self.public_base_url}/calls/{quote(event.call_sid, safe='')}"
                if self.public_base_url and event.call_sid else "")
        return Alert(call_sid=event.call_sid, kind=str(data.get("kind", "")) or "unknown",
                     at=event.at, detail=detail, node=str(data.get("node", "") or ""),
                     flow=call.flow_id if call is not None else "",
                     caller=mask_number(caller) if caller else "",
                     attempt=attempt if isinstance(attempt, int) else None, link=link)

    def message(self, alerts: Sequence[Alert], state: Window) -> dict[str, Any]:
        """The Slack post: up to `shown` alerts in full, the rest (of the batch and held back
        before it) summarised as "…and N more"."""
        shown, rest = alerts[:self.shown], alerts[self.shown:]
        more = state.hold(rest) if rest else state
        sections = [alert.lines() for alert in shown]
        blocks: list[dict[str, Any]] = [{"type": "section",
                                         "text": {"type": "mrkdwn", "text": text}}
                                        for text in sections]
        lines = list(sections)
        if more.held:
            summary = self.summary(more)
            lines.append(summary)
            blocks.append({"type": "context",
                           "elements": [{"type": "mrkdwn", "text": summary}]})
        heading = (f"Phoney: {alerts[0].kind} error on call {alerts[0].call_sid}"
                   + (f" and {len(alerts) - 1 + state.held} more" if len(alerts) > 1 or state.held
                      else ""))
        return {"text": "\n\n".join([_escape(heading), *lines]), "blocks": blocks}

    def summary(self, state: Window) -> str:
        """"…and 12 more since <time>: network 7, internal 5" for what `state` holds back."""
        since = f" since {_utc(state.held_since)}" if state.held_since is not None else ""
        return (f"…and {state.held} more{since} (alerts are limited to {self.limit} posts in "
                f"{self.window:g} s): {_tally(state.held_kinds)}")

    # -- sending ---------------------------------------------------------------------------------

    def post(self, body: Mapping[str, Any]) -> None:
        """POST `body` as JSON; `Rejected` for 400 and 413 (this post never will do),
        `AlertFailed` (retried) for anything else but 2xx."""
        try:
            answer = self.session.post(self.url, json=body, timeout=self.timeout)
        except requests.RequestException as error:
            # The requests error holds the URL, the webhook's secret: name the host only.
            raise AlertFailed(f"POST to {self.host} failed: {type(error).__name__}") from None
        if 200 <= answer.status_code < 300:
            return
        said = " ".join(answer.text.split())[:120]
        message = f"{self.host} answered {answer.status_code}: {said}"
        if answer.status_code in (400, 413):
            raise Rejected(message)
        raise AlertFailed(message)

    # -- the rate limit's state ------------------------------------------------------------------

    def _summary_if_due(self) -> bool:
        now = self.clock()
        cached = self._state
        if cached is None or now - self._read_at >= self.recheck:
            cached = self._read()
        if not cached.held or self._roll(cached, now).posts >= self.limit:
            return False
        state = self._roll(self._read(), now)  # read again: about to post
        if not state.held or state.posts >= self.limit:
            return False
        summary = self.summary(state)
        self.post({"text": f"Phoney: {summary}",
                   "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": summary}}]})
        self._save(replace(state, posts=state.posts + 1, held=0, held_kinds={},
                           held_since=None))
        return True

    def _roll(self, state: Window, now: float) -> Window:
        """`state` with a new window when its own is over (or lies in the future)."""
        if not state.started <= now < state.started + self.window:
            return replace(state, started=now, posts=0)
        return state

    def _read(self) -> Window:
        self._state = Window.decode(self.store.get_blob(STATE_KEY))
        self._read_at = self.clock()
        return self._state

    def _save(self, state: Window) -> None:
        self.store.put_blob(STATE_KEY, state.encode())
        self._state = state
        self._read_at = self.clock()
