"""The calls list's facts and filters, on every backend (the contract suite's `store`)."""

from __future__ import annotations

import pytest

from engine.store import CallQuery, CallStore, NewEvent
from tests.store.test_contract import BACKENDS, T0, advance, new_call  # noqa: F401
from tests.store.test_contract import open_again, store  # noqa: F401  (fixtures)


def ev(name: str, **data: object) -> NewEvent:
    return NewEvent(name, data)


def _call(store: CallStore, sid: str, started: float, events: list[NewEvent], *,
          flow: str = "receptionist", end: bool = True) -> None:
    state = new_call(sid, started_at=started, flow_id=flow)
    store.commit_step(None, state, events, "start", "<R/>", at=started + 1)
    if end:
        store.close_call(sid, "completed", 30, at=started + 30)


def _sids(store: CallStore, limit: int = 50, **query: object) -> list[str]:
    return [call.call_sid for call in store.list_calls(limit, CallQuery(**query))]  # type: ignore[arg-type]


def test_an_ended_call_keeps_its_outcome_mood_and_summary(store: CallStore) -> None:
    _call(store, "CA1", T0, [ev("call.say", text="Hello."),
                             ev("call.transcript", speech="I want to book", sentiment=0.5),
                             ev("call.response", text="Sure, Tuesday?"),
                             ev("call.transcript", speech="great", sentiment=0.1)], end=False)
    live = store.get_call("CA1")
    assert live is not None and live.outcome is None  # live: no outcome yet

    store.close_call("CA1", "completed", 30, at=T0 + 30)
    ended = store.get_call("CA1")
    assert ended is not None
    assert (ended.outcome, ended.mood, ended.summary, ended.test) == (
        "abandoned", 0.3, "", None)  # the last words were not answered

    store.record_events("CA1", [ev("call.analysis", status="ok", summary="Booked Tuesday.",
                                   fields={"resolved": True})], at=T0 + 40)
    analysed = store.get_call("CA1")
    assert analysed is not None
    assert (analysed.outcome, analysed.summary) == ("resolved", "Booked Tuesday.")


def test_filters_by_date_flow_outcome_and_test(store: CallStore) -> None:
    _call(store, "CA1", T0, [ev("call.transfer", to="+1555", status="completed")])
    _call(store, "CA2", T0 + 100, [ev("call.recording", url="https://x/r", duration=9)],
          flow="clinic")
    _call(store, "CA3", T0 + 200, [ev("call.error", kind="flow", detail="no edge")])
    _call(store, "CA4", T0 + 300, [])
    store.record_events("CA4", [ev("call.test", source="scenario")], at=T0 + 301)

    assert _sids(store) == ["CA3", "CA2", "CA1"]  # test calls hidden
    assert _sids(store, include_test=True) == ["CA4", "CA3", "CA2", "CA1"]
    assert _sids(store, since=T0 + 100, until=T0 + 200) == ["CA2"]
    assert _sids(store, since=T0 + 100) == ["CA3", "CA2"]
    assert _sids(store, flow="clinic") == ["CA2"]
    assert _sids(store, outcome="transferred") == ["CA1"]
    assert _sids(store, outcome="voicemail") == ["CA2"]
    assert _sids(store, outcome="failed") == ["CA3"]
    assert _sids(store, outcome="abandoned", include_test=True) == ["CA4"]
    assert _sids(store, outcome="resolved") == []
    test = store.get_call("CA4")
    assert test is not None and test.test == "scenario"


def test_search_reads_the_transcript_only(store: CallStore) -> None:
    _call(store, "CA1", T0, [ev("call.transcript", speech="My Invoice is wrong")])
    _call(store, "CA2", T0 + 10, [ev("call.response", text="Your 100% refund_ is on its way")])
    _call(store, "CA3", T0 + 20, [ev("call.node", node="invoice")])

    assert _sids(store, text="invoice") == ["CA1"]  # any case; not other events
    assert _sids(store, text="100%") == ["CA2"]  # LIKE's wildcards are plain text
    assert _sids(store, text="d_ is") == ["CA2"]
    assert _sids(store, text="0% r") == ["CA2"]
    assert _sids(store, text="speech") == []  # not the stored JSON's keys
    assert _sids(store, text="nothing like it") == []
    assert _sids(store, text="x" * 10_000) == []


def test_pages_follow_the_lists_order(store: CallStore) -> None:
    for n in range(7):
        _call(store, f"CA{n}", T0 + n, [ev("call.transcript", speech=f"call {n}")])
    everything = _sids(store)
    assert everything == [f"CA{n}" for n in reversed(range(7))]

    seen: list[str] = []
    query = CallQuery()
    while True:
        page = store.list_calls(3, query)
        seen += [call.call_sid for call in page]
        if len(page) < 3:
            break
        query = CallQuery(before=page[-1].cursor())
    assert seen == everything

    first = store.list_calls(2, CallQuery(text="call"))
    rest = store.list_calls(50, CallQuery(text="call", before=first[-1].cursor()))
    assert [c.call_sid for c in first + rest] == everything


def test_a_call_that_ended_before_anyone_spoke(store: CallStore) -> None:
    _call(store, "CA1", T0, [])
    summary = store.get_call("CA1")
    assert summary is not None
    assert (summary.outcome, summary.mood, summary.summary) == ("abandoned", None, "")


@pytest.mark.parametrize("status", ["busy", "no-answer", "failed", "canceled"])
def test_a_failed_status_is_a_failed_call(store: CallStore, status: str) -> None:
    store.commit_step(None, new_call("CA1"), [], "start", "<R/>", at=T0 + 1)
    store.close_call("CA1", status, 0, at=T0 + 2)
    summary = store.get_call("CA1")
    assert summary is not None and summary.outcome == "failed"
