"""The publisher: in order, retried with backoff and counted, never lost, once across processes."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence

from engine.events import Lease, Publisher, Rejected
from engine.store import CallStore, StoredEvent
from tests.events.conftest import OTHER_SID, FakeSink, record, wait_until


def drain(publisher: Publisher, rounds: int = 100) -> None:
    for _ in range(rounds):
        if not publisher.run_once():
            return


def test_delivers_new_events_in_order_in_batches(store: CallStore) -> None:
    sink = FakeSink(max_batch=3)
    publisher = Publisher(store, [sink], owner="one")
    publisher.prepare()
    events = record(store, 4) + record(store, 3, OTHER_SID)

    drain(publisher)

    assert sink.ids == [event.id for event in events]
    assert [len(ids) for _, ids in sink.attempts] == [3, 3, 1]
    stats = publisher.stats()["fake"]
    assert (stats.delivered, stats.failed_attempts, stats.retries_pending) == (7, 0, 0)
    assert stats.leader and stats.cursor == events[-1].id
    assert publisher.cursor("fake") == events[-1].id and publisher.caught_up()


def test_a_new_cursor_starts_at_the_end_history_is_not_replayed(store: CallStore) -> None:
    old = record(store, 5)
    sink = FakeSink()
    publisher = Publisher(store, [sink], owner="one")
    publisher.prepare()
    new = record(store, 2)

    drain(publisher)

    assert publisher.cursor("fake") == new[-1].id
    assert sink.ids == [event.id for event in new]
    assert not set(sink.ids) & {event.id for event in old}


def test_a_failing_sink_is_retried_with_growing_backoff_and_counted(store: CallStore) -> None:
    sink = FakeSink(max_batch=10)
    sink.fail(4)
    publisher = Publisher(store, [sink], owner="one", poll_interval=0.01, backoff=0.04,
                          max_backoff=1.0)
    publisher.start()
    try:
        events = record(store, 3)
        assert wait_until(lambda: sink.failing == 3)  # the first failure happened
        stats = publisher.stats()["fake"]
        assert stats.retries_pending == 3 and stats.delivered == 0
        assert stats.next_retry_at is not None
        assert "the sink is down" in stats.last_error
        assert wait_until(lambda: len(sink.delivered) == 3)
    finally:
        publisher.stop()

    assert sink.ids == [event.id for event in events]  # nothing dropped, nothing doubled
    stats = publisher.stats()["fake"]
    assert (stats.delivered, stats.failed_attempts, stats.retries_pending) == (3, 4, 0)
    times = [at for at, _ in sink.attempts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 4
    # Backoff 0.04 × 2^n with jitter in [0.5, 1]: each gap is at least the jittered floor...
    for n, gap in enumerate(gaps):
        assert gap >= 0.04 * 2 ** n * 0.5 - 0.005, gaps
    assert gaps[3] > gaps[0]  # ...and they grow (0.16–0.32 s against 0.02–0.04 s)


def test_backoff_is_capped(store: CallStore) -> None:
    sink = FakeSink()
    sink.fail(1000)
    publisher = Publisher(store, [sink], owner="one", poll_interval=0.005, backoff=0.01,
                          max_backoff=0.03)
    publisher.start()
    try:
        record(store, 1)
        assert wait_until(lambda: len(sink.attempts) >= 12, timeout=5)
    finally:
        publisher.stop()
    times = [at for at, _ in sink.attempts]
    assert max(b - a for a, b in itertools.pairwise(times)) < 0.2
    assert publisher.stats()["fake"].failed_attempts == len(sink.attempts)


def test_a_restarted_publisher_resumes_from_the_stored_cursor(
        open_store_again: Callable[[], CallStore]) -> None:
    first_store = open_store_again()
    sink = FakeSink()
    first = Publisher(first_store, [sink], owner="before-restart")
    first.prepare()
    early = record(first_store, 3)
    drain(first)
    first.stop()  # hands the lease back
    while_down = record(first_store, 4)  # written while no publisher runs

    second_store = open_store_again()
    again = FakeSink()
    second = Publisher(second_store, [again], owner="after-restart")
    second.prepare()  # a cursor exists: it is not moved to the end
    drain(second)

    assert sink.ids == [event.id for event in early]
    assert again.ids == [event.id for event in while_down]


def test_events_a_crashed_publisher_failed_to_deliver_are_taken_over(
        open_store_again: Callable[[], CallStore]) -> None:
    first_store = open_store_again()
    broken = FakeSink()
    broken.fail(1000)
    crashed = Publisher(first_store, [broken], owner="crashed", lease_seconds=0.3,
                        backoff=10)
    crashed.prepare()
    events = record(first_store, 5)
    drain(crashed)
    assert broken.ids == [] and crashed.stats()["fake"].retries_pending == 3
    # It dies holding the lease (no stop()): the other process waits out the lease.

    second_store = open_store_again()
    sink = FakeSink()
    survivor = Publisher(second_store, [sink], owner="survivor", lease_seconds=0.3,
                         standby_interval=0.02)
    drain(survivor)
    assert sink.ids == []  # the lease is still the crashed one's
    assert wait_until(lambda: (drain(survivor), sink.ids)[1] == [e.id for e in events],
                      timeout=3)
    raw = second_store.get_blob("cursor:fake")
    assert raw is not None and Lease.decode(raw).owner == "survivor"


def test_two_processes_deliver_each_event_exactly_once(
        open_store_again: Callable[[], CallStore]) -> None:
    delivered: list[int] = []
    lock = threading.Lock()

    class SharedSink(FakeSink):
        """Two processes' sinks reaching one Pusher: what they deliver lands in one list."""

        def deliver(self, events: Sequence[StoredEvent]) -> None:
            super().deliver(events)
            with lock:
                delivered.extend(event.id for event in events)

    writer = open_store_again()
    sinks = [SharedSink(name="pusher", max_batch=2) for _ in range(3)]
    publishers = [Publisher(open_store_again(), [sink], owner=f"process-{i}",
                            poll_interval=0.005, standby_interval=0.01, lease_seconds=0.5)
                  for i, sink in enumerate(sinks)]
    for publisher in publishers:
        publisher.start()
    try:
        written: list[int] = []
        for batch in range(20):
            written += [e.id for e in record(writer, 3, name=f"call.batch{batch}")]
            if batch == 10:  # the holder goes away mid-stream; another takes over
                assert wait_until(lambda: len(delivered) >= 6)
                holder = next(p for p in publishers if p.stats()["pusher"].leader)
                holder.stop()
        assert wait_until(lambda: len(delivered) >= len(written), timeout=10)
    finally:
        for publisher in publishers:
            publisher.stop()

    assert delivered == written  # in order, none twice, none lost
    assert sum(1 for sink in sinks if sink.delivered) >= 2  # the lease did change hands


class PoisonSink(FakeSink):
    """Refuses, for good, any batch holding an event with data `poison`."""

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        self.attempts.append((0.0, [event.id for event in events]))
        if any(event.data.get("poison") for event in events):
            raise Rejected("400: invalid event")
        self.delivered += events


def test_an_event_refused_for_good_is_isolated_counted_and_skipped(store: CallStore) -> None:
    sink = PoisonSink(max_batch=4)
    publisher = Publisher(store, [sink], owner="one")
    publisher.prepare()
    before = record(store, 2)
    (poison,) = record(store, 1, poison=True)
    after = record(store, 3)

    drain(publisher)

    assert sink.ids == [e.id for e in before + after]
    assert sink.attempts[0][1] == [e.id for e in before] + [poison.id, after[0].id]
    stats = publisher.stats()["fake"]
    assert stats.rejected == 1 and stats.delivered == 5
    assert "invalid event" in stats.last_error
    assert publisher.caught_up()
