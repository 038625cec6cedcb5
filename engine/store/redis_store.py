"""The Redis `CallStore`: for several server processes (or machines) behind one load balancer.

Every write that must be atomic is one Lua script (EVALSHA through redis-py's `register_script`,
which loads the script again after a `SCRIPT FLUSH` or a failover), so the server runs it with no
other command in between. A script checks everything first and writes only after every check
passed: Redis does not roll a script back, so nothing may fail once it has started writing.
Values are serialised (JSON) in Python before the script is called, so an unserialisable event
fails before anything is sent.

Keys, all under a configurable prefix P (default `phoney:`; URL `?prefix=`):

| key | type | holds | expires |
| --- | --- | --- | --- |
| `P state:<sid>` | hash | `state` (JSON without status/ended), `step`, `status`, `ended` | hot |
| `P responses:<sid>` | hash | request key -> TwiML answered to it | hot |
| `P call:<sid>` | hash | the summary (`CallSummary` fields) and `closed` | kept |
| `P calls` | sorted set | call sids, score `updated_at` (`list_calls`; ties: sid) | kept |
| `P events` | sorted set | every event as its JSON, score its id | kept |
| `P events:<sid>` | sorted set | the same members, for one call | kept |
| `P event-id` | string | the last event id given (INCR in the script that adds the event) | kept |
| `P blob:<key>` | string | `put_blob` values | by key prefix |
| `P window:<key>` | string | `incr_window` count | when its window closes |
| `P live` | sorted set | live calls (`LiveCeiling`), score when counted | ended: removed |
| `P audit` | sorted set | audit entries as JSON (id included), score the id | by `prune_audit` |
| `P audit-id` | string | the last audit id given (INCR in the script that adds the entry) | kept |

Expiry ("hot" above): the state and the answered requests are what the webhooks of a live call
need. When a call ends (a step whose state is ended or has a final status, or `close_call` with a
final status) both get a TTL of `ended_ttl` (default 7 days: long enough for Twilio's retries and
for support to look at a call's raw state); while a call is live they get `active_ttl` (default
2 days, renewed by every step), so a call whose end never arrived does not stay forever. After
they expire a late webhook conflicts (StepConflict, "not stored") instead of reviving the call.
The summary and the events are the call's history (dashboard, transcripts, SSE resume): they are
kept without TTL, as the SQLite backend keeps them, until `prune` removes the finished calls older
than RETENTION_DAYS (engine/retention.py, off the request path). Blobs get a TTL by key prefix
(`blob_ttls`): `stream:` (streamed replies) one hour; flow snapshots, cached audio, cursors and
secrets are kept.

Status and `ended` live in their own fields of the state hash rather than in the JSON, so that
`close_call` changes them without decoding and encoding the JSON in Lua (whose cjson would round
the floats).

Event ids come from INCR inside the script that stores the events, so ids increase across all
calls in the order the events become visible: a reader that has seen id N never sees a smaller id
appear later. Each event is stored as its JSON (id included) as the member of both sorted sets.

Connections: one pool per store (redis-py's, reset after a fork), socket timeouts of a few
seconds, a health check of idle connections and at most two quick retries of a failed command, so
a Redis outage fails a webhook well within Twilio's 15 s instead of hanging it. A retried
`commit_step` whose first attempt did reach the server is answered StepConflict (its request is
already answered), like any duplicate; a retried `record_events` may store its events twice.

With Redis Cluster every key a script touches must hash to one slot: use a prefix with a hash tag,
such as `{phoney}:`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlencode

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from engine.runtime.outcome import FACT_EVENTS, REFRESH_EVENTS, call_facts
from engine.runtime.state import FINAL_STATUSES, CallState, state_from_dict, state_to_dict
from engine.store.base import (
    ALL_CALLS,
    LIVE_AT_MOST,
    MAX_SEARCH,
    TRANSCRIPT_EVENTS,
    AuditEntry,
    CallQuery,
    CallSummary,
    LinesBusy,
    LiveCeiling,
    Lookup,
    NewEvent,
    Pruned,
    Quota,
    StepConflict,
    StoredEvent,
    check_same_call,
)

DEFAULT_PREFIX = "phoney:"
DAY = 24 * 3600.0
DEFAULT_ENDED_TTL = 7 * DAY
DEFAULT_ACTIVE_TTL = 2 * DAY
DEFAULT_BLOB_TTLS: Mapping[str, float] = {"stream:": 3600.0}
SOCKET_TIMEOUT = 3.0
CONNECT_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 30
RETRIES = 2

# Query parameters this store reads itself; every other one goes to redis-py.
_OWN_PARAMS = ("prefix", "ended_ttl", "active_ttl")


class _From(enum.Enum):
    URL = "the URL's query parameter, else the default"


FROM_URL: Literal[_From.URL] = _From.URL

# The events' shared part: ARGV[first..] are JSON objects without an id; each gets the next id.
_ADD_EVENTS = """
local function add_events(first, all_events, call_events, counter)
  for i = first, #ARGV do
    local id = string.format('%d', redis.call('INCR', counter))
    local member = '{"id":' .. id .. ',' .. string.sub(ARGV[i], 2)
    redis.call('ZADD', all_events, id, member)
    redis.call('ZADD', call_events, id, member)
  end
end
"""

# The steps' shared part. KEYS: state, responses, summary, calls, events, call events, event id,
#       live calls
# ARGV: sid, previous step ('' for a new call), request key, response, state JSON, step, status,
#       ended ('1'/'0'), over ('1'/'0'), at, ended TTL ms, active TTL ms ('' for none),
#       flow_id, flow_version, caller, called, node, personality, started_at, then the
#       script's own arguments, then the events from `first_event`.
# `check_step` only reads; `write_step` writes and cannot fail once it has started.
_STEP = _ADD_EVENTS + """
local state, responses, summary = KEYS[1], KEYS[2], KEYS[3]
local function check_step()
  local stored = redis.call('HGET', state, 'step')
  if ARGV[2] == '' then
    if stored or redis.call('EXISTS', summary) == 1 then
      return 'call ' .. ARGV[1] .. ' already exists'
    end
  elseif not stored then
    return 'call ' .. ARGV[1] .. ' is not stored'
  elseif stored ~= ARGV[2] then
    return 'call ' .. ARGV[1] .. ' is at step ' .. stored .. ', not ' .. ARGV[2]
  end
  if redis.call('HEXISTS', responses, ARGV[3]) == 1 then
    return 'call ' .. ARGV[1] .. ': request ' .. ARGV[3] .. ' was already answered'
  end
  return nil
end
local function write_step(first_event)
  local status, ended, over = ARGV[7], ARGV[8], ARGV[9] == '1'
  if redis.call('HGET', summary, 'closed') == '1' then
    -- The status callback had the final word: a step racing it cannot reopen the call.
    status, ended, over = redis.call('HGET', summary, 'status'), '1', true
  end
  local at = ARGV[10]
  redis.call('HSET', state, 'state', ARGV[5], 'step', ARGV[6], 'status', status,
             'ended', ended)
  redis.call('HSET', responses, ARGV[3], ARGV[4])
  redis.call('HSET', summary, 'call_sid', ARGV[1], 'flow_id', ARGV[13],
             'flow_version', ARGV[14], 'caller', ARGV[15], 'called', ARGV[16],
             'status', status, 'node', ARGV[17], 'personality', ARGV[18],
             'started_at', ARGV[19], 'updated_at', at)
  if not over then
    redis.call('HDEL', summary, 'ended_at')
  elseif redis.call('HEXISTS', summary, 'ended_at') == 0 then
    redis.call('HSET', summary, 'ended_at', at)
  end
  redis.call('ZADD', KEYS[4], at, ARGV[1])
  if over then redis.call('ZREM', KEYS[8], ARGV[1]) end  -- its line is free
  add_events(first_event, KEYS[5], KEYS[6], KEYS[7])
  local ttl = ARGV[12]
  if over then ttl = ARGV[11] end
  for _, key in ipairs({state, responses}) do
    if ttl == '' then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ttl) end
  end
end
"""

# The counter's shared part (incr_window). The TTL is set by the hit that opens the window, in
# the same script, so no counter can be left without one.
_COUNT_HIT = """
local function count_hit(key, window_ms)
  local count = redis.call('INCR', key)
  if count == 1 or redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, window_ms)
  end
  return count
end
"""

# _STEP's KEYS and ARGV; events from ARGV[20].
_COMMIT_STEP = _STEP + """
local conflict = check_step()
if conflict then return conflict end
write_step(20)
return 'ok'
"""

# _STEP's KEYS, then KEYS[9]: the counter. _STEP's ARGV, then ARGV[20]: the window in ms ('' for
# no quota), ARGV[21]: the limit, ARGV[22]: the most calls live ('' for no ceiling), ARGV[23]:
# when a live call counted is stale (at or before); events from ARGV[24]. Returns a conflict's
# text, {calls live} when the lines are busy, or the count (0 without a quota).
_COMMIT_NEW_CALL = _STEP + _COUNT_HIT + """
local conflict = check_step()
if conflict then return conflict end
if ARGV[22] ~= '' then
  local live = redis.call('ZCOUNT', KEYS[8], '(' .. ARGV[23], '+inf')
  if live >= tonumber(ARGV[22]) then return {live} end
end
local count = 0
if ARGV[20] ~= '' then
  count = count_hit(KEYS[9], ARGV[20])
  if count > tonumber(ARGV[21]) then return count end
end
write_step(24)
if ARGV[22] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', ARGV[23])
  if ARGV[9] ~= '1' then redis.call('ZADD', KEYS[8], ARGV[10], ARGV[1]) end
end
return count
"""

# KEYS: events, call events, event id.  ARGV: events (from 1).
_RECORD_EVENTS = _ADD_EVENTS + """
add_events(1, KEYS[1], KEYS[2], KEYS[3])
return 'ok'
"""

# KEYS: state, responses, summary, calls, live calls
# ARGV: sid, status, final ('1'/'0'), duration ('' for none), at, ended TTL ms ('' for none)
_CLOSE_CALL = """
local state, responses, summary = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', summary) == 0 then return 0 end
local closed = redis.call('HGET', summary, 'closed') == '1'
local final = ARGV[3] == '1'
if closed and not final then return 0 end  -- a late 'ringing' must not undo 'completed'
local at = ARGV[5]
redis.call('HSET', summary, 'status', ARGV[2], 'updated_at', at)
if ARGV[4] ~= '' then redis.call('HSET', summary, 'duration', ARGV[4]) end
if redis.call('EXISTS', state) == 1 then
  redis.call('HSET', state, 'status', ARGV[2])
  if final then redis.call('HSET', state, 'ended', '1') end
end
if final then
  if not closed then redis.call('HSET', summary, 'ended_at', at, 'closed', '1') end
  for _, key in ipairs({state, responses}) do
    if ARGV[6] == '' then redis.call('PERSIST', key) else redis.call('PEXPIRE', key, ARGV[6]) end
  end
  redis.call('ZREM', KEYS[5], ARGV[1])
end
redis.call('ZADD', KEYS[4], at, ARGV[1])
return 1
"""

# KEYS: the blob.  ARGV: '1' if a value is expected ('0': absent), expected, new, TTL ms or ''.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""

# KEYS: the counter.  ARGV: the window in ms.
_INCR_WINDOW = _COUNT_HIT + """
return count_hit(KEYS[1], ARGV[1])
"""

# prune, one call. KEYS: state, responses, summary, calls, events, call events.
# ARGV: sid, before, stale (not ended, yet prunable: updated before this), dry run ('1'/'0').
# Returns {1 (pruned) | 0 (no summary) | -1 (kept: recent or live), events, stored answers}.
_PRUNE_CALL = """
local state, responses, summary, dry = KEYS[1], KEYS[2], KEYS[3], ARGV[4] == '1'
local updated = redis.call('HGET', summary, 'updated_at')
if not updated then
  if not dry then redis.call('ZREM', KEYS[4], ARGV[1]) end
  return {0, 0, 0}
end
updated = tonumber(updated)
local over = redis.call('HEXISTS', summary, 'ended_at') == 1
if updated >= tonumber(ARGV[2]) or (not over and updated >= tonumber(ARGV[3])) then
  return {-1, 0, 0}
end
local events, answers = redis.call('ZCARD', KEYS[6]), redis.call('HLEN', responses)
if not dry then
  local members = redis.call('ZRANGE', KEYS[6], 0, -1)
  for i = 1, #members, 1000 do
    redis.call('ZREM', KEYS[5], unpack(members, i, math.min(i + 999, #members)))
  end
  redis.call('DEL', state, responses, summary, KEYS[6])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
return {1, events, answers}
"""

# prune, events of a call not stored. KEYS: events, call events, summary.
# ARGV: dry run ('1'/'0'), then the events' members. Returns how many went (would go).
_PRUNE_ORPHANS = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if ARGV[1] ~= '1' then
  for i = 2, #ARGV, 1000 do
    local last = math.min(i + 999, #ARGV)
    redis.call('ZREM', KEYS[1], unpack(ARGV, i, last))
    redis.call('ZREM', KEYS[2], unpack(ARGV, i, last))
  end
end
return #ARGV - 1
"""
_SET_FACTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'outcome', ARGV[1], 'mood', ARGV[2], 'summary', ARGV[3],
           'test', ARGV[4])
return 1
"""
# Only on a summary still stored: a refresh racing `prune` must not leave half a summary.

_RECORD_AUDIT = """
local id = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], id, string.sub(ARGV[1], 1, -2) .. ',"id":' .. id .. '}')
return id
"""
# The entry's JSON gets its id appended as text, not by cjson (which would round `at`).

PRUNE_BATCH = 100
"""Calls one round trip of `prune` looks at (events: five times as many)."""
CLOCK_SLACK = 3600.0
"""Seconds by which an event's time may lag behind one with a smaller id (servers' clocks
differ): `prune` looks for events of calls not stored until one this much after its cutoff."""


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""One encoder for every write: json.dumps with options builds a new one at every call."""


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _text(value: bytes | str | None) -> str:
    """redis-py's replies are bytes here (decode_responses=False); its types also allow str."""
    return "" if value is None else value if isinstance(value, str) else value.decode()


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _number(value: float) -> str:
    """A float as the exact decimal Redis and Python both read back to the same value."""
    return repr(float(value))


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else max(1, round(seconds * 1000))


def _ms_arg(seconds: float | None) -> str:
    """A TTL as a script argument: milliseconds, or '' for none."""
    ms = _ms(seconds)
    return "" if ms is None else str(ms)


def _window_ms(seconds: float) -> str:
    """A counter's window as a script argument: whole milliseconds, at least one."""
    return str(max(1, round(float(seconds) * 1000)))


def _state(body: bytes | str | None, status: bytes | str | None,
           ended: bytes | str | None) -> CallState | None:
    """The state from the fields of its hash (status and `ended` are kept beside the JSON)."""
    if body is None:
        return None
    values = json.loads(body)
    values["status"] = _text(status) or "in-progress"
    values["ended"] = _text(ended) == "1"
    return state_from_dict(values)


def _ttl_param(name: str, value: str) -> float | None:
    if value.lower() in ("", "none", "0"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"Redis URL: {name}={value!r} is not a number of seconds") from None
    if seconds < 0:
        raise ValueError(f"Redis URL: {name}={value!r} is negative")
    return seconds


def _summary(raw: Mapping[bytes | str, bytes | str]) -> CallSummary:
    fields = {_text(name): _text(value) for name, value in raw.items()}

    def get(name: str) -> str:
        return fields[name]

    ended_at = fields.get("ended_at")
    duration = fields.get("duration")
    return CallSummary(
        call_sid=get("call_sid"), flow_id=get("flow_id"), flow_version=get("flow_version"),
        caller=get("caller"), called=get("called"), status=get("status"), node=get("node"),
        personality=get("personality"), started_at=float(get("started_at")),
        updated_at=float(get("updated_at")),
        ended_at=None if ended_at is None else float(ended_at),
        duration=None if duration is None else int(duration),
        outcome=fields.get("outcome") or None,
        mood=float(fields["mood"]) if fields.get("mood") else None,
        summary=fields.get("summary", ""), test=fields.get("test") or None)


def _refreshes(events: Sequence[NewEvent]) -> bool:
    return any(event.name in REFRESH_EVENTS for event in events)


LIST_BATCH = 200
"""Summaries one round trip of a filtered `list_calls` reads."""


def _transcript_has(events: Sequence[StoredEvent], text: str) -> bool:
    """True when a transcript line of `events` contains `text`, case-insensitively."""
    needle = text.casefold()
    for event in events:
        if event.name in TRANSCRIPT_EVENTS:
            spoken = event.data.get("speech") or event.data.get("text") or ""
            if isinstance(spoken, str) and needle in spoken.casefold():
                return True
    return False


def _event(member: bytes | str) -> StoredEvent:
    data = json.loads(member)
    return StoredEvent(id=int(data["id"]), call_sid=data["call_sid"], name=data["name"],
                       data=data["data"], at=data["at"])


def _audit(member: bytes | str) -> AuditEntry:
    found = json.loads(member)
    return AuditEntry(id=int(found["id"]), at=float(found["at"]), who=found["who"],
                      role=found["role"], where=found["where"], action=found["action"],
                      outcome=found["outcome"], what=found["what"])


def _redacted(url: str) -> str:
    """`url` without its password (in the authority or as a query parameter)."""
    url = re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


class RedisStore:
    """`CallStore` on a Redis server; `url` is a redis://, rediss:// or unix:// URL.

    The URL may carry `prefix`, `ended_ttl` and `active_ttl` (seconds; `none` for no TTL) query
    parameters; the keyword arguments, when given, win over them. Other query parameters are
    redis-py's (`db`, `ssl_cert_reqs`, ...). Nothing connects before the first command.
    """

    def __init__(self, url: str, *, prefix: str | None = None,
                 ended_ttl: float | Literal[_From.URL] | None = FROM_URL,
                 active_ttl: float | Literal[_From.URL] | None = FROM_URL,
                 blob_ttls: Mapping[str, float] | None = None) -> None:
        # Not urlunsplit: it would turn unix:///path into unix:/path.
        base, _, query_string = url.partition("?")
        query = parse_qsl(query_string, keep_blank_values=True)
        own = {name: value for name, value in query if name in _OWN_PARAMS}
        rest = [(name, value) for name, value in query if name not in _OWN_PARAMS]
        self.url = _redacted(url)
        self.prefix = prefix if prefix is not None else own.get("prefix", DEFAULT_PREFIX)
        self.ended_ttl = self._ttl(ended_ttl, own, "ended_ttl", DEFAULT_ENDED_TTL)
        self.active_ttl = self._ttl(active_ttl, own, "active_ttl", DEFAULT_ACTIVE_TTL)
        self.blob_ttls = dict(DEFAULT_BLOB_TTLS if blob_ttls is None else blob_ttls)
        self.client: redis.Redis = redis.Redis.from_url(
            f"{base}?{urlencode(rest)}" if rest else base,
            decode_responses=False, socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT, socket_keepalive=True,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), RETRIES))
        self._commit_step = self.client.register_script(_COMMIT_STEP)
        self._commit_new_call = self.client.register_script(_COMMIT_NEW_CALL)
        self._record_events = self.client.register_script(_RECORD_EVENTS)
        self._close_call = self.client.register_script(_CLOSE_CALL)
        self._compare_and_set = self.client.register_script(_COMPARE_AND_SET)
        self._incr_window = self.client.register_script(_INCR_WINDOW)
        self._prune_call = self.client.register_script(_PRUNE_CALL)
        self._prune_orphans = self.client.register_script(_PRUNE_ORPHANS)
        self._record_audit = self.client.register_script(_RECORD_AUDIT)
        self._set_facts = self.client.register_script(_SET_FACTS)

    @staticmethod
    def _ttl(given: float | Literal[_From.URL] | None, own: Mapping[str, str], name: str,
             default: float) -> float | None:
        if given is not FROM_URL:
            return given
        return _ttl_param(name, own[name]) if name in own else default

    # Keys

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _call_keys(self, call_sid: str) -> tuple[str, str, str]:
        return (self._key("state", call_sid), self._key("responses", call_sid),
                self._key("call", call_sid))

    def _event_keys(self, call_sid: str) -> list[str]:
        return [self._key("events"), self._key("events", call_sid), self._key("event-id")]

    def _blob_ttl(self, key: str) -> float | None:
        matches = [prefix for prefix in self.blob_ttls if key.startswith(prefix)]
        return self.blob_ttls[max(matches, key=len)] if matches else None

    @staticmethod
    def _event_bodies(call_sid: str, events: Sequence[NewEvent], at: float) -> list[str]:
        # Serialised here, before any script runs: an unserialisable event stores nothing.
        return [_dumps({"call_sid": call_sid, "name": event.name, "data": dict(event.data),
                        "at": float(at)}) for event in events]

    # CallStore

    def _step_args(self, previous: CallState | None, state: CallState, request_key: str,
                   response: str, at: float) -> tuple[list[str], list[str]]:
        """_STEP's KEYS and ARGV for storing `state`."""
        check_same_call(previous, state)
        sid = state.call_sid
        body = state_to_dict(state)
        status, ended = body.pop("status"), body.pop("ended")
        over = state.ended or state.status in FINAL_STATUSES
        keys = [*self._call_keys(sid), self._key("calls"), *self._event_keys(sid),
                self._key("live")]
        args = [sid, "" if previous is None else str(previous.step), request_key, response,
                _dumps(body), str(state.step), status, "1" if ended else "0",
                "1" if over else "0", _number(at), _ms_arg(self.ended_ttl),
                _ms_arg(self.active_ttl),
                state.flow_id, state.flow_version, state.caller.number, state.called,
                state.node, state.personality, _number(state.started_at)]
        return keys, args

    def commit_step(self, previous: CallState | None, state: CallState,
                    events: Sequence[NewEvent], request_key: str, response: str,
                    at: float) -> None:
        keys, args = self._step_args(previous, state, request_key, response, at)
        outcome = self._commit_step(
            keys=keys, args=[*args, *self._event_bodies(state.call_sid, events, at)])
        if outcome != b"ok":
            raise StepConflict(_text(outcome))
        if state.ended or state.status in FINAL_STATUSES or _refreshes(events):
            self._refresh_facts(state.call_sid)

    def commit_new_call(self, state: CallState, events: Sequence[NewEvent], request_key: str,
                        response: str, at: float, quota: Quota | None,
                        live: LiveCeiling | None = None) -> int:
        keys, args = self._step_args(None, state, request_key, response, at)
        counter = self._key("window", quota.key if quota is not None else "-")
        outcome = self._commit_new_call(
            keys=[*keys, counter],
            args=[*args, "" if quota is None else _window_ms(quota.window_seconds),
                  "" if quota is None else str(int(quota.limit)),
                  "" if live is None else str(int(live.limit)),
                  "" if live is None else _number(at - live.stale_seconds),
                  *self._event_bodies(state.call_sid, events, at)])
        if isinstance(outcome, list):
            raise LinesBusy(int(outcome[0]), live.limit if live is not None else 0)
        if not isinstance(outcome, int):
            raise StepConflict(_text(outcome))
        return outcome

    def get_state(self, call_sid: str) -> CallState | None:
        return _state(*self.client.hmget(self._key("state", call_sid),
                                          ["state", "status", "ended"]))

    def lookup(self, call_sid: str, request_key: str, counter: str | None = None) -> Lookup:
        # MULTI/EXEC: one round trip, and no other client's command runs between the reads.
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(self._key("state", call_sid), ["state", "status", "ended"])
        pipe.hget(self._key("responses", call_sid), request_key)
        if counter is not None:
            pipe.get(self._key("window", counter))
        found = pipe.execute()
        response = found[1]
        return Lookup(response=None if response is None else _text(response),
                      state=_state(*found[0]) if response is None else None,
                      count=int(found[2] or 0) if counter is not None else 0)

    def stored_response(self, call_sid: str, request_key: str) -> str | None:
        found = self.client.hget(self._key("responses", call_sid), request_key)
        return None if found is None else _text(found)

    def record_events(self, call_sid: str, events: Sequence[NewEvent], at: float) -> None:
        if not events:
            return
        self._record_events(keys=self._event_keys(call_sid),
                            args=self._event_bodies(call_sid, events, at))
        if _refreshes(events):
            self._refresh_facts(call_sid)

    def close_call(self, call_sid: str, status: str, duration: int | None, at: float) -> None:
        """Final statuses end the call for good; any other status only updates the status."""
        self._close_call(
            keys=[*self._call_keys(call_sid), self._key("calls"), self._key("live")],
            args=[call_sid, status, "1" if status in FINAL_STATUSES else "0",
                  "" if duration is None else str(int(duration)), _number(at),
                  _ms_arg(self.ended_ttl)])
        if status in FINAL_STATUSES:
            self._refresh_facts(call_sid)

    def _refresh_facts(self, call_sid: str) -> None:
        """Compute the call's facts again from its events and keep them in its summary.

        After the write that changed them, not in its script (Lua would need the rule twice):
        a refresh reads every event stored before it, so the last refresh of a call is right."""
        summary = self.get_call(call_sid)
        if summary is None:
            return
        events = self._events_of(call_sid)
        final = summary.status if summary.status in FINAL_STATUSES else ""
        facts = call_facts(((event.name, event.data) for event in events
                            if event.name in FACT_EVENTS),
                           ended=summary.ended_at is not None, status=final)
        self._set_facts(keys=[self._key("call", call_sid)],
                        args=[facts.outcome or "", "" if facts.mood is None else repr(facts.mood),
                              facts.summary, facts.test or ""])

    def list_calls(self, limit: int = 50, query: CallQuery = ALL_CALLS) -> list[CallSummary]:
        """The filters are applied here, to the summaries read from the `calls` index newest
        first, LIST_BATCH a round trip: the read stops at `query.since` (a call is updated at or
        after it started), so its cost is the calls updated since then (every call without
        `since`); `query.text` also reads each such call's events."""
        if limit <= 0:
            return []
        found: list[CallSummary] = []
        top: float | str = "+inf"
        if query.before is not None:
            top = query.before.updated_at
        bottom: float | str = "-inf" if query.since is None else query.since
        offset = 0
        # Unfiltered, a page reads only the summaries it lists, as it did before filters.
        filtering = query.text != "" or dataclasses.replace(query, before=None) != ALL_CALLS
        while len(found) < limit:
            wanted = LIST_BATCH if filtering else limit - len(found) + 1  # +1: a sid at `before`
            batch = cast("list[tuple[bytes, float]]", self.client.zrevrangebyscore(
                self._key("calls"), top, bottom, start=offset, num=wanted,
                withscores=True))
            if not batch:
                break
            offset += len(batch)
            pipe = self.client.pipeline(transaction=False)
            for sid, _ in batch:
                pipe.hgetall(self._key("call", _text(sid)))
            for (sid, score), fields in zip(batch, pipe.execute(), strict=True):
                if not fields or not self._after(query, score, _text(sid)):
                    continue
                call = _summary(fields)
                if query.admits(call) and (not query.text or _transcript_has(
                        self._events_of(call.call_sid), query.text[:MAX_SEARCH])):
                    found.append(call)
                    if len(found) == limit:
                        break
            if len(batch) < wanted:
                break
        return found

    @staticmethod
    def _after(query: CallQuery, score: float, sid: str) -> bool:
        """True when the call comes after `query.before` in the index's order (score, then
        sid, both descending)."""
        before = query.before
        return before is None or score < before.updated_at or (
            score == before.updated_at and sid < before.call_sid)

    def _events_of(self, call_sid: str) -> list[StoredEvent]:
        members = cast("list[bytes]", self.client.zrange(self._key("events", call_sid), 0, -1))
        return [_event(member) for member in members]

    def get_call(self, call_sid: str) -> CallSummary | None:
        fields = self.client.hgetall(self._key("call", call_sid))
        return _summary(fields) if fields else None

    def events_after(self, after_id: int, call_sid: str | None = None,
                     limit: int = 500) -> list[StoredEvent]:
        if limit <= 0:
            return []
        key = self._key("events") if call_sid is None else self._key("events", call_sid)
        members = cast("list[bytes]", self.client.zrangebyscore(
            key, f"({int(after_id)}", "+inf", start=0, num=limit))
        return [_event(member) for member in members]

    def put_blob(self, key: str, value: bytes) -> None:
        self.client.set(self._key("blob", key), bytes(value), px=_ms(self._blob_ttl(key)))

    def get_blob(self, key: str) -> bytes | None:
        return _bytes(self.client.get(self._key("blob", key)))

    def has_blob(self, key: str) -> bool:
        return bool(self.client.exists(self._key("blob", key)))

    def compare_and_set_blob(self, key: str, expected: bytes | None, new: bytes) -> bool:
        written = self._compare_and_set(
            keys=[self._key("blob", key)],
            args=["0" if expected is None else "1", b"" if expected is None else bytes(expected),
                  bytes(new), _ms_arg(self._blob_ttl(key))])
        return bool(written == 1)

    def last_event_id(self) -> int:
        found = self.client.get(self._key("event-id"))
        return 0 if found is None else int(found)

    def incr_window(self, key: str, window_seconds: float) -> int:
        count = self._incr_window(keys=[self._key("window", key)],
                                  args=[_window_ms(window_seconds)])
        return int(count)

    def prune(self, before: float, dry_run: bool = False) -> Pruned:
        """See `CallStore.prune`. Each call goes in one script (checked again there); events of
        calls not stored are looked for from the oldest id until one at or after `before`.
        Cached speech has no time stamp here and is kept: bound it with Redis's memory limit
        (`maxmemory` and `volatile-*` eviction would not reach it; see the README)."""
        stale = time.time() - LIVE_AT_MOST
        calls = events = responses = 0
        kept = 0  # candidates still in the sorted set, in front of the ones to look at
        while True:
            sids = cast("list[bytes]", self.client.zrangebyscore(
                self._key("calls"), "-inf", f"({_number(before)}", start=kept,
                num=PRUNE_BATCH))
            if not sids:
                break
            for raw in sids:
                sid = _text(raw)
                outcome, call_events, answers = self._prune_call(
                    keys=[*self._call_keys(sid), self._key("calls"), *self._event_keys(sid)[:2]],
                    args=[sid, _number(before), _number(stale), "1" if dry_run else "0"])
                if outcome == 1:
                    calls, events, responses = calls + 1, events + call_events, \
                        responses + answers
                if outcome == -1 or dry_run:
                    kept += 1
        return Pruned(calls=calls, events=events + self._prune_orphan_events(before, dry_run),
                      responses=responses)

    def _prune_orphan_events(self, before: float, dry_run: bool) -> int:
        removed = kept = 0
        while True:
            members = cast("list[bytes]", self.client.zrange(
                self._key("events"), kept, kept + PRUNE_BATCH * 5 - 1))
            by_call: dict[str, list[bytes]] = {}
            done = not members
            for member in members:
                event = json.loads(member)
                if float(event["at"]) >= before + CLOCK_SLACK:
                    done = True  # ids follow time (give or take servers' clocks): all newer
                    break
                by_call.setdefault(str(event["call_sid"]), []).append(member)
            looked_at = sum(len(group) for group in by_call.values())
            went = 0
            for sid, group in by_call.items():
                went += int(self._prune_orphans(
                    keys=[*self._event_keys(sid)[:2], self._key("call", sid)],
                    args=["1" if dry_run else "0", *group]))
            removed += went
            kept += looked_at - (0 if dry_run else went)
            if done:
                return removed

    def record_audit(self, entry: AuditEntry) -> int:
        body = _ENCODER.encode({"at": entry.at, "who": entry.who, "role": entry.role,
                                "where": entry.where, "action": entry.action,
                                "outcome": entry.outcome, "what": dict(entry.what)})
        return int(self._record_audit(keys=[self._key("audit"), self._key("audit-id")],
                                      args=[body]))

    def audit_entries(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        if limit <= 0:
            return []
        top = "+inf" if before_id is None else f"({before_id}"
        members = cast("list[bytes]", self.client.zrevrangebyscore(
            self._key("audit"), top, "-inf", start=0, num=limit))
        return [_audit(member) for member in members]

    def prune_audit(self, before: float, dry_run: bool = False) -> int:
        """Oldest first, a batch at a time, until an entry at or after `before` (ids follow
        time, give or take the servers' clocks); the newest entry is kept."""
        key, removed, start = self._key("audit"), 0, 0
        while True:
            batch = cast("list[bytes]", self.client.zrange(key, start, start + PRUNE_BATCH - 1))
            newest = cast("list[bytes]", self.client.zrevrange(key, 0, 0))
            old = [member for member in batch
                   if member not in newest and _audit(member).at < before]
            if old:
                removed += len(old)
                if dry_run:
                    start += len(old)
                else:
                    self.client.zrem(key, *old)
            if len(old) < len(batch) or len(batch) < PRUNE_BATCH:
                return removed

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        """Close the pool's connections; a later command opens new ones."""
        self.client.close()

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"
