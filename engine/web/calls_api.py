"""The dashboard's call data: `GET /api/calls` and `GET /api/calls/<CallSid>` (login required).

`/api/calls?limit=N` (default 50, at most 200): the most recently updated calls, each with status,
flow, node, personality, caller, timings, `outcome`, `mood` and `summary`, and `last_event_id`,
read before the list, so a page that then subscribes with `?after=<last_event_id>` misses nothing
(it may see an event twice: ids tell). Filters (engine/web/call_filters.py): `since`, `until`
(dates of the start), `flow`, `outcome`, `q` (transcript search), `test=0` (leave test calls
out; they are listed, marked, otherwise); `next` is the URL of the next page
(`before=<cursor>`), null on the last.
`/api/calls.csv` (or `?format=csv`): the same calls as CSV with their analysis
(engine/web/calls_csv.py), up to 1000 a page, the next page's URL in a `Link` header.
`/overview` and `/api/overview`: calls per day, outcomes and AI latency (engine/web/overview.py).

`/api/calls/<CallSid>`: the same summary plus the transcript, the call's events and `analysis`
(its `call.analysis` event's data: status, summary, fields; null until there is one). The
transcript is built from the events: caller turns from `call.transcript` (speech, digits or a
silence, and the speech's `sentiment` when it was scored), agent lines from `call.say` (the
flow's text) and `call.response` (the model's replies, each spoken part), each with `at` (epoch
seconds) and `offset` (seconds since the call started). `relay` says whether the call held a
ConversationRelay session (`call.relay` events); an agent line spoken in one has
`transport: "relay"`, and a reply the caller talked over has `interrupted: true` and, when
Twilio said, `heard`: what they heard of it (`call.interrupt`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, render_template, request, url_for

from engine.calls.test_calls import source_of_test_call
from engine.events.analysis_sink import stored_analysis
from engine.events.payload import event_json
from engine.runtime.outcome import OUTCOMES, SUMMARY_CHARS
from engine.store import CallQuery, CallStore, CallSummary, StoredEvent
from engine.web.auth import login_required
from engine.web.call_filters import BadFilter, encode_cursor, parse_listing, parse_time
from engine.web.calls_csv import calls_csv
from engine.web.dashboard import PUSHER_JS, page_config
from engine.web.overview import LATENCY_CALLS, MAX_CALLS, latency, per_day, utc_day_start
from engine.web.services import services

calls_api = Blueprint("calls_api", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_EVENTS = 5000  # per call in one answer; `events_truncated` says when there were more
_PAGE = 500
CSV_LIMIT = 1000
OVERVIEW_DAYS = 30
MAX_OVERVIEW_DAYS = 366


def summary_json(call: CallSummary, test: str | None = None) -> dict[str, Any]:
    """One call's summary as the API gives it: ids, status, flow and version, node,
    personality, caller, called, `live` (not ended yet), timings (`elapsed`: seconds from
    the start to the end, or to the last update while live) and `test`: what made it when it
    is a test call (`flask call`, `scenario`; engine/calls/test_calls.py), else null;
    `outcome` (null while live), `mood` (average sentiment, null when unscored) and `summary`
    (the analysis', shortened; '' until there is one).
    """
    last = call.ended_at if call.ended_at is not None else call.updated_at
    return {
        "call_sid": call.call_sid, "status": call.status, "flow": call.flow_id,
        "flow_version": call.flow_version, "node": call.node, "personality": call.personality,
        "caller": call.caller, "called": call.called, "live": call.ended_at is None,
        "test": test, "outcome": call.outcome, "mood": call.mood,
        "summary": call.summary[:SUMMARY_CHARS],
        "timings": {"started_at": call.started_at, "updated_at": call.updated_at,
                    "ended_at": call.ended_at, "duration": call.duration,
                    "elapsed": round(max(last - call.started_at, 0.0), 3)},
    }


def transcript(events: Sequence[StoredEvent], started_at: float | None) -> list[dict[str, Any]]:
    """The transcript lines of `events`, in their order: caller turns (`call.transcript`) and
    agent lines (`call.say`, `call.response`); other events are skipped, but for what they
    say of those lines (a relay session, an interruption). `offset` is seconds since
    `started_at` (None when that is unknown).
    """
    lines: list[dict[str, Any]] = []
    relay = False  # inside a relay session
    reply: dict[str, Any] | None = None  # the last reply, until the caller's next turn
    for event in events:
        data = event.data
        if event.name == "call.relay":
            relay = data.get("status") == "connected"
            continue
        if event.name == "call.interrupt":
            if reply is not None:
                reply.update(interrupted=True, heard=str(data.get("heard") or ""))
            continue
        line: dict[str, Any] = {"event_id": event.id, "at": event.at,
                                "offset": (round(event.at - started_at, 3)
                                           if started_at is not None else None),
                                "node": data.get("node")}
        if event.name == "call.transcript":
            line.update(role="caller", text=str(data.get("speech") or ""),
                        digits=str(data.get("digits") or ""),
                        confidence=data.get("confidence"), silence=bool(data.get("silence")),
                        sentiment=data.get("sentiment"))
        elif event.name == "call.say":
            line.update(role="agent", kind="say", text=str(data.get("text") or ""),
                        personality=data.get("personality"))
        elif event.name == "call.response":
            timings = data.get("timings")
            line.update(role="agent", kind="response", text=str(data.get("text") or ""),
                        personality=data.get("personality"), offline=data.get("offline"),
                        final=data.get("final", True), timings=timings,
                        interrupted=isinstance(timings, dict)
                        and timings.get("interrupted") == 1.0)
            reply = line
        else:
            continue
        if line["role"] == "caller":
            reply = None
        elif relay:
            line["transport"] = "relay"
        lines.append(line)
    return lines


def _call_events(call_sid: str) -> tuple[list[StoredEvent], bool]:
    store = services().store
    found: list[StoredEvent] = []
    after = 0
    while len(found) < MAX_EVENTS:
        page = store.events_after(after, call_sid, limit=min(_PAGE, MAX_EVENTS - len(found)))
        found += page
        if len(page) < _PAGE:
            return found, False
        after = page[-1].id
    return found, bool(store.events_after(after, call_sid, limit=1))


@calls_api.get("/api/calls")
@calls_api.get("/api/calls.csv")
@login_required
def list_calls() -> Response | tuple[Response, int]:
    """GET /api/calls: the calls the filters admit (`limit` 1 to 200 a page), `next` and
    `last_event_id`; `/api/calls.csv` or `?format=csv`: the same as CSV; 400 for a bad filter."""
    as_csv = request.path.endswith(".csv") or request.args.get("format") == "csv"
    try:
        listing = parse_listing(request.args, max_limit=CSV_LIMIT if as_csv else MAX_LIMIT)
    except BadFilter as error:
        return jsonify(error=str(error)), 400
    store = services().store
    last_event_id = store.last_event_id()
    calls = store.list_calls(listing.limit, listing.query)
    next_url = None
    if len(calls) == listing.limit:
        args = {**request.args.to_dict(), "before": encode_cursor(calls[-1].cursor())}
        next_url = request.path + "?" + urlencode(args)
    if as_csv:
        rows = [(call, stored_analysis(_call_events(call.call_sid)[0])) for call in calls]
        response = Response(calls_csv(rows), mimetype="text/csv")
        response.headers["Content-Disposition"] = "attachment; filename=calls.csv"
        if next_url is not None:
            response.headers["Link"] = f'<{next_url}>; rel="next"'
        return response
    return jsonify(calls=[summary_json(call, _test_source(store, call)) for call in calls],
                   last_event_id=last_event_id, next=next_url)


def _test_source(store: CallStore, call: CallSummary) -> str | None:
    # Calls stored before the summary kept it have only the mark's blob.
    return call.test or source_of_test_call(store, call.call_sid)


@calls_api.get("/overview")
@login_required
def overview_page() -> str:
    """GET /overview: the owners' overview page (calls per day, outcomes, AI latency)."""
    config = page_config()
    return render_template("overview.html", config=config,
                           pusher_js=PUSHER_JS if config["transport"] == "pusher" else None)


@calls_api.get("/api/overview")
@login_required
def overview() -> Response | tuple[Response, int]:
    """GET /api/overview: calls per day and outcomes from `since` to `until` (default the last
    30 days, at most 366), in the day of `tz` (minutes east of UTC), test calls left out unless
    `test=1`, and p50/p90 of the AI's latency; 400 for a bad parameter."""
    args = request.args
    now = services().call_service.clock()
    try:
        until = parse_time("until", args["until"], end_of_day=True) if args.get("until") else now
        since = (parse_time("since", args["since"]) if args.get("since")
                 else utc_day_start(now) - (OVERVIEW_DAYS - 1) * 86400)
        tz = int(args.get("tz", "0"))
    except BadFilter as error:
        return jsonify(error=str(error)), 400
    except ValueError:
        return jsonify(error="tz: minutes east of UTC, e.g. -300"), 400
    if not -14 * 60 <= tz <= 14 * 60:
        return jsonify(error="tz: minutes east of UTC, between -840 and 840"), 400
    if until <= since or until - since > MAX_OVERVIEW_DAYS * 86400:
        return jsonify(error=f"since must come before until, at most {MAX_OVERVIEW_DAYS} "
                             f"days apart"), 400
    include_test = args.get("test", "") in ("1", "true", "yes")
    store = services().store
    last_event_id = store.last_event_id()
    calls = store.list_calls(MAX_CALLS + 1, CallQuery(since=since, until=until,
                                                      include_test=include_test))
    truncated = len(calls) > MAX_CALLS
    calls = calls[:MAX_CALLS]
    events: list[StoredEvent] = []
    for call in calls[:LATENCY_CALLS]:
        events += (event for event in _call_events(call.call_sid)[0]
                   if event.name == "call.timing")
    outcomes = {name: sum(1 for call in calls if call.outcome == name) for name in OUTCOMES}
    return jsonify(since=since, until=until, tz=tz, last_event_id=last_event_id,
                   calls=len(calls), truncated=truncated,
                   outcomes={**outcomes, "live": sum(1 for c in calls if c.outcome is None)},
                   days=per_day(calls, tz, since, until),
                   latency={**latency(events), "calls": min(len(calls), LATENCY_CALLS)},
                   calls_url=url_for("dashboard.index"))


@calls_api.get("/api/calls/<call_sid>")
@login_required
def get_call(call_sid: str) -> Response | tuple[Response, int]:
    """GET /api/calls/<call_sid>: one call's summary, transcript and events, with the language
    it speaks and what its personality blends (when it has stored state); 404 when unknown."""
    store = services().store
    summary = store.get_call(call_sid)
    events, truncated = _call_events(call_sid)
    if summary is None and not events:
        return jsonify(error=f"no call {call_sid}"), 404
    body: dict[str, Any] = (summary_json(summary, source_of_test_call(store, call_sid))
                            if summary is not None
                            else {"call_sid": call_sid, "status": "unknown"})
    state = store.get_state(call_sid)
    if state is not None:
        body.update(offline=state.offline, path=list(state.path), turn=state.turn)
        # The language the call speaks now: a route's switch, else its flow version's default.
        pinned = services().library.pinned(state.flow_id, state.flow_version)
        body["language"] = state.language or (pinned.flow.language if pinned else None)
        personality = pinned.registry.personalities.get(state.personality) if pinned else None
        # What a blended personality is made of (id -> weight), for the dashboard.
        body["personality_blend"] = dict(personality.blend) if personality else {}
    started_at = summary.started_at if summary is not None else (
        events[0].at if events else None)
    body["transcript"] = transcript(events, started_at)
    body["relay"] = any(event.name == "call.relay" for event in events)
    body["analysis"] = stored_analysis(events)  # null until the ended call is analysed
    body["events"] = [event_json(event) for event in events]
    body["events_truncated"] = truncated
    return jsonify(body)
