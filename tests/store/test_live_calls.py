"""The live-call ceiling of `commit_new_call` (MAX_LIVE_CALLS), on every backend.

Part of the store contract: the same tests run on SQLite and Redis, plain and encrypted, with
the fixtures of tests/store/test_contract.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from engine.store import CallStore, LinesBusy, LiveCeiling, Quota, StepConflict
from tests.store.test_contract import T0, advance, ev, new_call, open_again, store

__all__ = ["open_again", "store"]  # the contract's fixtures: every backend, plain and encrypted

TWO = LiveCeiling(limit=2, stale_seconds=3600)


def busy(store: CallStore, sid: str, at: float = T0, ceiling: LiveCeiling = TWO) -> LinesBusy:
    with pytest.raises(LinesBusy) as refused:
        store.commit_new_call(new_call(sid), [ev("call.start")], "start", "<R/>", at, None,
                              ceiling)
    return refused.value


def take(store: CallStore, sid: str, at: float = T0, ceiling: LiveCeiling | None = TWO,
         quota: Quota | None = None) -> int:
    return store.commit_new_call(new_call(sid), [ev("call.start")], "start", "<R/>", at, quota,
                                 ceiling)


def test_a_call_over_the_ceiling_stores_nothing(store: CallStore) -> None:
    assert take(store, "CA0001") == 0  # no quota: no count
    take(store, "CA0002", T0 + 1)

    refused = busy(store, "CA0003", T0 + 2)

    assert (refused.live, refused.limit) == (2, 2)
    assert store.get_call("CA0003") is None and store.get_state("CA0003") is None
    assert [event.call_sid for event in store.events_after(0)] == ["CA0001", "CA0002"]


def test_a_call_that_ends_frees_its_line(store: CallStore) -> None:
    first = new_call("CA0001")
    store.commit_new_call(first, [], "start", "<R/>", T0, None, TWO)
    take(store, "CA0002")
    busy(store, "CA0003")

    store.commit_step(first, advance(first, ended=True), [], "bye", "<R/>", T0 + 5)  # hung up
    take(store, "CA0003", T0 + 6)
    busy(store, "CA0004", T0 + 7)

    store.close_call("CA0002", "completed", 10, T0 + 10)  # the status callback's end
    take(store, "CA0004", T0 + 11)
    busy(store, "CA0005", T0 + 12)


def test_a_status_that_is_not_final_keeps_the_line(store: CallStore) -> None:
    take(store, "CA0001")
    take(store, "CA0002")
    store.close_call("CA0001", "in-progress", None, T0 + 1)
    busy(store, "CA0003", T0 + 2)


def test_a_step_of_a_live_call_keeps_its_line(store: CallStore) -> None:
    first = new_call("CA0001")
    store.commit_new_call(first, [], "start", "<R/>", T0, None, TWO)
    take(store, "CA0002")
    store.commit_step(first, advance(first.at("ask")), [], "step-2", "<R/>", T0 + 5)
    busy(store, "CA0003", T0 + 6)


def test_a_call_whose_end_never_came_stops_counting_when_stale(store: CallStore) -> None:
    short = LiveCeiling(limit=2, stale_seconds=600)
    take(store, "CA0001", T0, short)
    take(store, "CA0002", T0 + 100, short)
    busy(store, "CA0003", T0 + 599, short)

    take(store, "CA0003", T0 + 601, short)  # CA0001 started over 600 s ago

    busy(store, "CA0004", T0 + 650, short)


def test_a_new_call_already_over_takes_no_line(store: CallStore) -> None:
    one = LiveCeiling(limit=1, stale_seconds=3600)
    store.commit_new_call(new_call("CA0001", ended=True), [], "start", "<R/>", T0, None, one)
    take(store, "CA0002", T0 + 1, one)
    busy(store, "CA0003", T0 + 2, one)


def test_without_a_ceiling_nothing_is_counted_live(store: CallStore) -> None:
    for i in range(3):
        take(store, f"CA000{i}", T0, None, Quota("q", 60, limit=5))
    take(store, "CA0009", T0, LiveCeiling(limit=1, stale_seconds=3600))


def test_busy_lines_count_no_hit_of_the_caller(store: CallStore) -> None:
    quota = Quota("caller:+15550002222", 60, limit=5)
    one = LiveCeiling(limit=1, stale_seconds=3600)
    assert take(store, "CA0001", T0, one, quota) == 1
    with pytest.raises(LinesBusy):
        take(store, "CA0002", T0, one, quota)
    assert store.lookup("CA0002", "start", counter=quota.key).count == 1


def test_a_caller_over_their_quota_takes_no_line(store: CallStore) -> None:
    quota = Quota("caller:+15550002222", 60, limit=1)
    assert take(store, "CA0001", T0, TWO, quota) == 1
    assert take(store, "CA0002", T0, TWO, quota) == 2  # refused: not stored, no line taken
    assert store.get_state("CA0002") is None
    take(store, "CA0003", T0, TWO, None)
    busy(store, "CA0004")


def test_a_duplicate_first_webhook_conflicts_before_the_ceiling(store: CallStore) -> None:
    one = LiveCeiling(limit=1, stale_seconds=3600)
    take(store, "CA0001", T0, one)
    with pytest.raises(StepConflict):  # Twilio's retry: the call is known, the line its own
        take(store, "CA0001", T0 + 1, one)


def test_a_second_process_sees_the_same_lines(open_again: Callable[[], CallStore]) -> None:
    one, two = open_again(), open_again()
    take(one, "CA0001")
    take(two, "CA0002")
    busy(one, "CA0003")
    two.close_call("CA0001", "completed", 3, T0 + 3)
    take(one, "CA0003", T0 + 4)


def test_racing_new_calls_never_take_more_lines_than_the_ceiling(
        open_again: Callable[[], CallStore]) -> None:
    handles = [open_again() for _ in range(2)]  # as two server processes would
    racers, limit = 12, 4
    ceiling = LiveCeiling(limit=limit, stale_seconds=3600)
    barrier = threading.Barrier(racers)
    taken: list[str] = []
    refused: list[int] = []

    def race(i: int) -> None:
        barrier.wait()
        try:
            take(handles[i % 2], f"CA{i:04d}", T0, ceiling)
            taken.append(f"CA{i:04d}")
        except LinesBusy as error:
            refused.append(error.live)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(taken) == limit and len(refused) == racers - limit
    assert set(refused) == {limit}
    assert sorted(summary.call_sid for summary in handles[0].list_calls()) == sorted(taken)
    assert len(handles[1].events_after(0)) == limit
