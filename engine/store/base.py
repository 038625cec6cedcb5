"""The `CallStore` port: where calls, their state, their events and answered webhooks live.

Every backend passes the one contract suite in `tests/store/test_contract.py`. A step is committed
atomically with the events it caused and the TwiML it answered (an outbox): either all of it is
stored or none, and a step made concurrently by another request is detected, not overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.runtime.state import CallState


@dataclass(frozen=True)
class NewEvent:
    """An event to store with a call: the store gives it its id and time (see `StoredEvent`)."""

    name: str  # e.g. "call.node", "call.error"
    data: Mapping[str, Any]


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored: of one call, at one time, with an id that orders all events."""

    id: int  # increases with every event in the store; SSE clients resume from it
    call_sid: str
    name: str
    data: Mapping[str, Any]
    at: float  # epoch seconds

    def as_json(self) -> dict[str, Any]:
        """The event as a JSON-ready dict of its five fields (`data` copied to a plain dict)."""
        return {"id": self.id, "call_sid": self.call_sid, "name": self.name,
                "data": dict(self.data), "at": self.at}


@dataclass(frozen=True)
class CallSummary:
    """One call as the dashboard lists it, kept by the store beside the call's state."""

    call_sid: str
    flow_id: str
    flow_version: str
    caller: str  # the caller's number
    called: str
    status: str  # Twilio's call status, the last one stored
    node: str  # where the call is (or ended)
    personality: str
    started_at: float  # epoch seconds
    updated_at: float
    ended_at: float | None  # None until the call ends
    duration: int | None  # seconds, from the status callback; None until it says
    # Kept by the store when the call ends, is analysed or is marked as a test call
    # (`engine.runtime.outcome.call_facts`), so the list filters on them in one query.
    outcome: str | None = None  # transferred, voicemail, resolved, abandoned, failed; None: live
    mood: float | None = None  # the average sentiment of the caller's utterances
    summary: str = ""  # the analysis summary, shortened
    test: str | None = None  # what made a test call, else None

    def as_json(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict of its fields."""
        return dict(self.__dict__)

    def cursor(self) -> Cursor:
        """Where a listing that ended with this call goes on from (`CallQuery.before`)."""
        return Cursor(self.updated_at, self.started_at, self.call_sid)


@dataclass(frozen=True)
class Cursor:
    """A place in `list_calls`' order: the calls listed after the call it was taken from."""

    updated_at: float
    started_at: float
    call_sid: str


TRANSCRIPT_EVENTS = frozenset({"call.transcript", "call.say", "call.response"})
"""The events a transcript search reads: the caller's `speech`, the agent's `text`."""

MAX_SEARCH = 200
"""Characters of a transcript search a store looks for at most (longer text is refused by the
API before it reaches the store)."""


@dataclass(frozen=True)
class CallQuery:
    """What `list_calls` lists: every field narrows the list; the defaults list every call that
    is not a test call. Dates are of the call's start (epoch seconds, `since` included, `until`
    excluded); `text` is a case-insensitive search of the transcript (the caller's and the
    agent's words); `before` continues a listing after its last call."""

    since: float | None = None
    until: float | None = None
    flow: str | None = None
    outcome: str | None = None
    text: str = ""
    include_test: bool = False
    before: Cursor | None = None

    def admits(self, call: CallSummary) -> bool:
        """True when `call` passes every filter but `text` and `before` (which need the store's
        events and order): for backends that filter in code."""
        return ((self.since is None or call.started_at >= self.since)
                and (self.until is None or call.started_at < self.until)
                and (self.flow is None or call.flow_id == self.flow)
                and (self.outcome is None or call.outcome == self.outcome)
                and (self.include_test or call.test is None))


ALL_CALLS = CallQuery(include_test=True)
"""The query of `list_calls` without one: every call, test calls included."""


@dataclass(frozen=True)
class Lookup:
    """What a webhook needs to know before it steps a call, read together by `lookup`."""

    response: str | None  # the TwiML already answered to this request, if it was answered
    # The call's stored state, when no answer is (None for a call not stored yet): a repeated
    # request needs only its answer, and decoding the state would cost it more than the read.
    state: CallState | None
    count: int = 0  # hits in the counter's current window (0: none, or no counter asked for)


@dataclass(frozen=True)
class Quota:
    """One hit for `commit_new_call` to count with a new call's first step, as `incr_window`
    counts it (`key`, `window_seconds`); the step is stored only if the count, this hit
    included, is at most `limit`."""

    key: str
    window_seconds: float
    limit: int


@dataclass(frozen=True)
class LiveCeiling:
    """At most `limit` calls live at once, all processes together, for `commit_new_call` to
    check with a new call's first step.

    A call stored by `commit_new_call` with a ceiling counts as live from then until it ends: a
    step whose state is over (ended, or a final status), or `close_call` with a final status.
    One whose end never came (no status callback) stops counting `stale_seconds` after it was
    counted (by the `at` of its commit), so lost ends cannot fill the lines for good.
    """

    limit: int
    stale_seconds: float


class LinesBusy(Exception):
    """`commit_new_call` stored nothing: `live` calls were live, `limit` or more."""

    def __init__(self, live: int, limit: int) -> None:
        super().__init__(f"{live} calls live (at most {limit})")
        self.live = live
        self.limit = limit


LIVE_AT_MOST = 24 * 3600.0
"""Seconds a call can stay live: Twilio ends every call within 24 hours (its longest time
limit). A call not ended and not updated for longer lost its end (no status callback came), so
`prune` may remove it; one updated more recently is never pruned, ended or not."""

PRUNED_BLOB_PREFIXES = ("audio:", "stream:")
"""The blobs `prune` removes by age: cached speech (made again when next needed) and streamed
replies. Flow snapshots, cursors, leases and secrets are kept."""


@dataclass(frozen=True)
class Pruned:
    """What `prune` removed (or, in a dry run, would remove)."""

    calls: int = 0  # calls with their state and summary
    events: int = 0
    responses: int = 0  # the answers kept for repeated webhooks
    blobs: int = 0  # cached speech and streamed replies
    audit: int = 0  # audit log entries (`prune_audit`)

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(self.calls + other.calls, self.events + other.events,
                      self.responses + other.responses, self.blobs + other.blobs,
                      self.audit + other.audit)

    def describe(self) -> str:
        """One line for people: `12 calls, 340 events, 80 stored answers, 5 cached audio and
        streamed replies, 9 audit entries`."""
        return (f"{self.calls} calls, {self.events} events, {self.responses} stored answers, "
                f"{self.blobs} cached audio and streamed replies, {self.audit} audit entries")


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log: who did what, when, from where, and how it ended.

    Kept in the call store, beside the calls it is about: every server process writes to the
    one log and reads the same one, it is pruned with the calls (RETENTION_DAYS,
    `prune_audit`), and no other service is needed. `what` holds identifiers and outcomes
    only (a CallSid, a flow id, a revision, a reason); never a password, token or code.
    """

    at: float  # epoch seconds
    who: str  # the signed-in user (e-mail or subject), or "" when nobody was
    role: str  # their role then ("" when none)
    where: str  # the client's address, as the app derives it behind TRUSTED_PROXIES
    action: str  # e.g. "sign-in", "sign-in.failed", "call.transfer", "request.refused"
    outcome: str  # "ok", "refused" or "failed"
    what: Mapping[str, Any]
    id: int = 0  # given by the store: increases with every entry

    def as_json(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict (`what` copied to a plain dict)."""
        return {"id": self.id, "at": self.at, "who": self.who, "role": self.role,
                "where": self.where, "action": self.action, "outcome": self.outcome,
                "what": dict(self.what)}


class StepConflict(Exception):
    """Another request advanced the call first (a concurrent duplicate webhook)."""


def check_same_call(previous: CallState | None, state: CallState) -> None:
    """`commit_step`'s precondition, the same for every backend."""
    if previous is not None and previous.call_sid != state.call_sid:
        raise ValueError(f"commit_step: previous state is of call {previous.call_sid!r}, "
                         f"the new one of {state.call_sid!r}")


class CallStore(Protocol):
    """Where calls live, shared by every server process: a backend is safe to use from many
    threads, and what it promises to be atomic is so across the processes that share it."""

    def commit_step(self, previous: CallState | None, state: CallState,
                    events: Sequence[NewEvent], request_key: str, response: str,
                    at: float) -> None:
        """Store `state`, its events and the answer to `request_key`, all or nothing.

        `previous` is the state the step started from (None for a new call). Raises
        StepConflict when the stored call is no longer at `previous.step` (or, for a new call,
        already exists).
        """

    def commit_new_call(self, state: CallState, events: Sequence[NewEvent], request_key: str,
                        response: str, at: float, quota: Quota | None,
                        live: LiveCeiling | None = None) -> int:
        """`commit_step(None, state, ...)` and `incr_window(quota.key, quota.window_seconds)`
        in one atomic write; returns the count, this hit included (0 when `quota` is None).

        The conflict checks of `commit_step` come first: a StepConflict (the call exists, or the
        request was already answered) stores nothing and counts nothing, so a duplicate of a
        call's first webhook does not count as another call. Then, with `live`, the calls live
        (see `LiveCeiling`): at its limit or over, LinesBusy, and nothing is stored or counted.
        Otherwise the hit is counted, and the step is stored only if the count is at most
        `quota.limit`; over it, only the hit is stored and the caller is to be refused
        (`record_events` for the refusal). A stored step counts the call as live (with `live`,
        unless its state is already over).
        """

    def get_state(self, call_sid: str) -> CallState | None:
        """The call's state as last stored (status and `ended` as `close_call` left them); None
        for a call not stored."""

    def lookup(self, call_sid: str, request_key: str, counter: str | None = None) -> Lookup:
        """`stored_response(call_sid, request_key)`, then (only if there is none)
        `get_state(call_sid)`, and, when `counter` is given, the hits in its current window (as
        `incr_window` counts them, without counting one): one read of one moment of the store."""

    def stored_response(self, call_sid: str, request_key: str) -> str | None:
        """The TwiML already answered to this request, if it was answered."""

    def record_events(self, call_sid: str, events: Sequence[NewEvent], at: float) -> None:
        """Events outside a step (errors of requests that could not step the call)."""

    def close_call(self, call_sid: str, status: str, duration: int | None, at: float) -> None:
        """The status callback's final word: status and duration, whatever the state says."""

    def list_calls(self, limit: int = 50, query: CallQuery = ALL_CALLS) -> list[CallSummary]:
        """The calls `query` admits, at most `limit`, most recently updated first (ties: the
        later started first, then the larger sid; Redis: the larger sid). Dates, flow, outcome
        and test are filtered by the store's own index or summary rows; `query.text` reads the
        calls' transcript events (cost: see docs/dashboard.md)."""

    def get_call(self, call_sid: str) -> CallSummary | None:
        """The call's summary; None for a call not stored (or expired)."""

    def events_after(self, after_id: int, call_sid: str | None = None,
                     limit: int = 500) -> list[StoredEvent]:
        """Events with id > after_id in id order, for one call or all."""

    def put_blob(self, key: str, value: bytes) -> None:
        """Small shared blobs (flow snapshots, cached audio) every server process can read."""

    def get_blob(self, key: str) -> bytes | None:
        """The blob last put under `key`; None when there is none (a backend may expire some
        kinds, as Redis does streamed replies)."""

    def has_blob(self, key: str) -> bool:
        """`get_blob(key) is not None`, without reading the blob where the backend can (cached
        audio is looked up for every line a call speaks, and a line's audio is tens of kB)."""

    def compare_and_set_blob(self, key: str, expected: bytes | None, new: bytes) -> bool:
        """Put `new` under `key` only if the blob is still `expected` (None: absent), atomically
        across threads and processes; True when written. Cursors and leases are built on it."""

    def last_event_id(self) -> int:
        """The id of the newest event (0 when there is none): where "from now on" starts."""

    def incr_window(self, key: str, window_seconds: float) -> int:
        """Count one hit on `key` and return the hits in its current window, this one included.

        A fixed window: it opens at the first hit (count 1) and closes `window_seconds` later
        (server time), when the count starts over. Atomic across threads and processes, so a
        limit built on it (calls per caller) holds for every server process at once.
        """

    def prune(self, before: float, dry_run: bool = False) -> Pruned:
        """Remove what is older than `before` (epoch seconds); what was removed.

        Removed: every call last updated before `before` that has ended (or has not been
        updated for LIVE_AT_MOST, whatever its state says), with its state, events and stored
        answers; events and answers older than that of calls not stored; and blobs of
        PRUNED_BLOB_PREFIXES put before it. A call updated in the last LIVE_AT_MOST seconds
        (store time) is never removed unless it has ended. Done in small batches, so webhooks
        meanwhile wait for none of it; the newest event is kept, so event ids never go back.
        `dry_run` counts what would go and removes nothing.
        """

    def record_audit(self, entry: AuditEntry) -> int:
        """Append `entry` to the audit log (its `id` is ignored); the id it was given, larger
        than every id given before."""

    def audit_entries(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        """The newest `limit` entries (with ids below `before_id`, when given), newest first."""

    def prune_audit(self, before: float, dry_run: bool = False) -> int:
        """Remove audit entries recorded before `before` (epoch seconds); how many (in a dry
        run: would be). The newest entry is kept, so ids never go back."""

    def ping(self) -> bool:
        """True when the store answers; False, rather than an exception, when it does not."""

    def close(self) -> None:
        """Release the store's connections; it stays usable (a later call opens new ones)."""
