"""Retention at the store: `prune(before)` removes finished calls last updated before `before`
with their state, events and stored answers, and the events of calls never stored; it never
removes a live call, and (on every backend, plain or encrypted) event ids keep growing after it.
Calls are made old by committing them with old time stamps."""

from __future__ import annotations

import dataclasses
import time

from engine.store import CallStore, NewEvent, Pruned
from engine.store.base import LIVE_AT_MOST
from engine.store.sqlite import PRUNE_BATCH
from tests.store.test_contract import new_call, open_again, store

__all__ = ["open_again", "store"]  # the contract's fixtures: every backend, plain and encrypted

DAY = 86400.0


def make_call(store: CallStore, sid: str, at: float, ended: bool, events: int = 2) -> None:
    state = dataclasses.replace(new_call(sid), started_at=at)
    store.commit_step(None, state, [NewEvent("call.say", {"text": f"{sid} {n}"})
                                    for n in range(events)], "start", "<Response/>", at=at)
    if ended:
        store.close_call(sid, "completed", 30, at=at + 60)


def test_old_finished_calls_go_and_live_ones_stay(store: CallStore) -> None:
    now = time.time()
    # Written in time order, as a server's clock would stamp them.
    make_call(store, "CAold", now - 40 * DAY, ended=True)
    make_call(store, "CAlost", now - 40 * DAY, ended=False)  # its end never came
    store.record_events("CAnever", [NewEvent("call.error", {"kind": "rate_limit_caller"})],
                        at=now - 40 * DAY)  # a refused call: events, no call
    make_call(store, "CArecent", now - 10 * DAY, ended=True)
    store.record_events("CAnever2", [NewEvent("call.error", {"kind": "rate_limit_caller"})],
                        at=now - DAY)
    make_call(store, "CAlive", now - 60, ended=False)
    newest = store.last_event_id()
    kept_events = store.events_after(0, "CArecent")

    cutoff = now - 30 * DAY
    would = store.prune(cutoff, dry_run=True)
    assert would == Pruned(calls=2, events=5, responses=2, blobs=0)
    assert store.get_call("CAold") is not None  # a dry run removes nothing

    assert store.prune(cutoff) == would
    for sid in ("CAold", "CAlost"):
        assert store.get_call(sid) is None and store.get_state(sid) is None
        assert store.stored_response(sid, "start") is None
        assert store.events_after(0, sid) == []
    assert store.events_after(0, "CAnever") == []
    assert [call.call_sid for call in store.list_calls()] == ["CAlive", "CArecent"]
    assert store.events_after(0, "CArecent") == kept_events
    assert len(store.events_after(0, "CAnever2")) == 1
    assert store.prune(cutoff) == Pruned()  # nothing left to do

    # Everything before now: the finished call goes, the live one stays whatever the cutoff.
    assert store.prune(time.time() + 1).calls == 1
    assert [call.call_sid for call in store.list_calls()] == ["CAlive"]
    assert store.get_state("CAlive") is not None and len(store.events_after(0, "CAlive")) == 2

    store.record_events("CAlive", [NewEvent("call.say", {"text": "after"})], at=time.time())
    assert store.last_event_id() > newest  # ids never go back, even after pruning the newest


def test_a_call_unended_for_longer_than_any_call_lasts_is_not_live(store: CallStore) -> None:
    now = time.time()
    make_call(store, "CAday", now - LIVE_AT_MOST + 600, ended=False)  # a long call, still on
    make_call(store, "CAgone", now - LIVE_AT_MOST - 600, ended=False)
    assert store.prune(now).calls == 1
    assert store.get_call("CAday") is not None and store.get_call("CAgone") is None


def test_cached_speech_and_streams_go_by_age_other_blobs_stay(store: CallStore) -> None:
    store.put_blob("audio:abc", b"mp3")
    store.put_blob("stream:CA1", b"{}")
    store.put_blob("flow:receptionist:v1", b"{}")
    store.put_blob("cursor:pusher", b"{}")
    pruned = store.prune(time.time() + 1)
    if "redis" in repr(store).lower():  # no time stamps there: audio kept, streams expire
        assert pruned.blobs == 0
        return
    assert pruned.blobs == 2
    assert store.get_blob("audio:abc") is None and store.get_blob("stream:CA1") is None
    assert store.get_blob("flow:receptionist:v1") == b"{}"
    assert store.get_blob("cursor:pusher") == b"{}"


def test_many_calls_are_pruned_in_batches(store: CallStore) -> None:
    old = time.time() - 40 * DAY
    count = PRUNE_BATCH * 2 + 5
    for n in range(count):
        make_call(store, f"CA{n:04d}", old + n, ended=n % 7 != 0, events=1)
    make_call(store, "CAlive", time.time(), ended=False, events=1)
    lost = sum(1 for n in range(count) if n % 7 == 0)  # unended for 40 days: lost, pruned
    assert store.prune(time.time() - 30 * DAY) == Pruned(calls=count, events=count,
                                                        responses=count)
    assert lost and [call.call_sid for call in store.list_calls()] == ["CAlive"]
