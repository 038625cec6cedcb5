"""What only the Redis backend promises: its URLs, key layout, expiry, scripts and isolation.

The shared behaviour is in test_contract.py; these tests need the server conftest.py finds.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from engine.runtime.state import Caller, CallState
from engine.store import NewEvent, RedisStore, StepConflict, open_store
from engine.store.redis_store import DEFAULT_ACTIVE_TTL, DEFAULT_ENDED_TTL
from tests.store.conftest import delete_prefix, require_redis, server_url

T0 = 1_700_000_000.0


def new_call(call_sid: str = "CA0001", step: int = 1, node: str = "greet",
             **changes: object) -> CallState:
    state = CallState(call_sid=call_sid, flow_id="receptionist", flow_version="v1", node=node,
                      caller=Caller(number="+15550002222"), called="+15550001000",
                      started_at=T0 + 0.123456789, personality="friendly", step=step)
    return dataclasses.replace(state, **changes)  # type: ignore[arg-type]


@pytest.fixture
def raw() -> Iterator[redis.Redis]:
    require_redis()
    client = redis.Redis.from_url(server_url())
    yield client
    client.close()


@pytest.fixture
def make_store(redis_prefix: str) -> Iterator[Callable[..., RedisStore]]:
    """RedisStores on this test's prefix, each with its own connection pool (a process each)."""
    made: list[RedisStore] = []

    def make(**options: object) -> RedisStore:
        made.append(RedisStore(server_url(), prefix=redis_prefix, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for store in made:
        store.close()


def keys(raw: redis.Redis, prefix: str) -> set[str]:
    return {key.decode().removeprefix(prefix) for key in raw.scan_iter(match=prefix + "*")}


def ttl(raw: redis.Redis, prefix: str, key: str) -> float:
    return float(raw.pttl(prefix + key)) / 1000


# URLs (no server needed: nothing connects before the first command)

@pytest.mark.parametrize(("url", "expected"), [
    ("redis://localhost:6379/0", {"host": "localhost", "port": 6379, "db": 0}),
    ("REDIS://cache.internal:6380/2", {"host": "cache.internal", "port": 6380, "db": 2}),
    ("rediss://:s3cret@cache.example:6380", {"host": "cache.example", "password": "s3cret"}),
    ("unix:///run/redis/redis.sock?db=3", {"path": "/run/redis/redis.sock", "db": 3}),
])
def test_open_store_reads_redis_urls(url: str, expected: dict[str, object]) -> None:
    store = open_store(url)
    assert isinstance(store, RedisStore)
    options = store.client.connection_pool.connection_kwargs
    assert {name: options.get(name) for name in expected} == expected
    assert (store.prefix, store.ended_ttl, store.active_ttl) == (
        "phoney:", DEFAULT_ENDED_TTL, DEFAULT_ACTIVE_TTL)
    assert options["socket_timeout"] <= 5 and options["health_check_interval"] > 0
    assert "s3cret" not in repr(store)


def test_redis_url_options_are_the_stores_not_redis_pys() -> None:
    store = open_store("redis://localhost/1?prefix=%7Bphoney%7D:&ended_ttl=60&active_ttl=none")
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.ended_ttl, store.active_ttl) == ("{phoney}:", 60.0, None)
    assert "prefix" not in store.client.connection_pool.connection_kwargs
    with pytest.raises(ValueError, match="ended_ttl"):
        open_store("redis://localhost/1?ended_ttl=soon")


def test_ping_is_false_and_commands_fail_fast_without_a_server() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    assert store.ping() is False
    with pytest.raises(redis.ConnectionError):
        store.get_state("CA1")
    assert time.monotonic() - started < 5
    store.close()


# Layout and expiry

def test_key_layout(make_store: Callable[..., RedisStore], raw: redis.Redis,
                    redis_prefix: str) -> None:
    store = make_store()
    store.commit_step(None, new_call(), [NewEvent("call.start", {})], "start", "<R/>", at=T0)
    store.record_events("CAother", [NewEvent("call.error", {})], at=T0)
    store.put_blob("flow:v1", b"{}")

    assert keys(raw, redis_prefix) == {
        "state:CA0001", "responses:CA0001", "call:CA0001", "calls", "events", "events:CA0001",
        "events:CAother", "event-id", "blob:flow:v1"}
    assert raw.type(redis_prefix + "calls") == b"zset"
    assert raw.type(redis_prefix + "events") == b"zset"
    assert raw.zscore(redis_prefix + "calls", "CA0001") == T0


def test_a_live_call_expires_after_the_active_ttl_and_history_is_kept(
        make_store: Callable[..., RedisStore], raw: redis.Redis, redis_prefix: str) -> None:
    store = make_store()
    store.commit_step(None, new_call(), [NewEvent("call.start", {})], "start", "<R/>", at=T0)

    for key in ("state:CA0001", "responses:CA0001"):
        assert DEFAULT_ACTIVE_TTL - 60 < ttl(raw, redis_prefix, key) <= DEFAULT_ACTIVE_TTL
    for key in ("call:CA0001", "calls", "events", "events:CA0001", "event-id"):
        assert raw.ttl(redis_prefix + key) == -1, key  # no TTL


def test_a_call_ended_by_a_step_keeps_its_hot_data_for_the_ended_ttl(
        make_store: Callable[..., RedisStore], raw: redis.Redis, redis_prefix: str) -> None:
    store = make_store()
    first = new_call()
    store.commit_step(None, first, [], "start", "<R/>", at=T0)
    store.commit_step(first, new_call(step=2, node="bye", ended=True), [NewEvent("call.end", {})],
                      "step-2", "<R><Hangup/></R>", at=T0 + 5)

    for key in ("state:CA0001", "responses:CA0001"):
        assert DEFAULT_ENDED_TTL - 60 < ttl(raw, redis_prefix, key) <= DEFAULT_ENDED_TTL
    for key in ("call:CA0001", "events:CA0001"):
        assert raw.ttl(redis_prefix + key) == -1


def test_close_call_sets_the_ended_ttl(make_store: Callable[..., RedisStore], raw: redis.Redis,
                                       redis_prefix: str) -> None:
    store = make_store(ended_ttl=600)
    store.commit_step(None, new_call(), [], "start", "<R/>", at=T0)
    store.close_call("CA0001", "in-progress", None, at=T0 + 1)  # not final: still live
    assert ttl(raw, redis_prefix, "state:CA0001") > 600

    store.close_call("CA0001", "completed", 30, at=T0 + 30)
    for key in ("state:CA0001", "responses:CA0001"):
        assert 590 < ttl(raw, redis_prefix, key) <= 600
    assert raw.ttl(redis_prefix + "call:CA0001") == -1


def test_no_ttl_when_turned_off(make_store: Callable[..., RedisStore], raw: redis.Redis,
                                redis_prefix: str) -> None:
    store = make_store(ended_ttl=None, active_ttl=None)
    store.commit_step(None, new_call(), [], "start", "<R/>", at=T0)
    assert raw.ttl(redis_prefix + "state:CA0001") == -1
    store.close_call("CA0001", "completed", 30, at=T0 + 30)
    assert raw.ttl(redis_prefix + "state:CA0001") == -1
    assert raw.ttl(redis_prefix + "responses:CA0001") == -1


def test_after_expiry_the_summary_and_events_remain_and_late_webhooks_conflict(
        make_store: Callable[..., RedisStore]) -> None:
    store = make_store(ended_ttl=0.05)
    first = new_call()
    store.commit_step(None, first, [NewEvent("call.start", {})], "start", "<R/>", at=T0)
    store.close_call("CA0001", "completed", 3, at=T0 + 3)
    time.sleep(0.2)

    assert store.get_state("CA0001") is None
    assert store.stored_response("CA0001", "start") is None
    summary = store.get_call("CA0001")
    assert summary is not None and (summary.status, summary.duration) == ("completed", 3)
    assert [c.call_sid for c in store.list_calls()] == ["CA0001"]
    assert [e.name for e in store.events_after(0, "CA0001")] == ["call.start"]

    with pytest.raises(StepConflict, match="not stored"):
        store.commit_step(first, new_call(step=2), [], "late", "<R/>", at=T0 + 4)
    with pytest.raises(StepConflict, match="already exists"):  # not revived as a new call
        store.commit_step(None, first, [], "start-again", "<R/>", at=T0 + 4)
    store.close_call("CA0001", "completed", 3, at=T0 + 5)  # Twilio's retry: still no state
    assert store.get_state("CA0001") is None


def test_stream_blobs_expire_after_an_hour_and_others_are_kept(
        make_store: Callable[..., RedisStore], raw: redis.Redis, redis_prefix: str) -> None:
    store = make_store()
    store.put_blob("stream:abc", b"{}")
    store.put_blob("audio:abc", b"mp3")
    assert store.compare_and_set_blob("cursor:pusher", None, b"1")
    assert store.compare_and_set_blob("stream:def", None, b"{}")

    assert 3590 < ttl(raw, redis_prefix, "blob:stream:abc") <= 3600
    assert 3590 < ttl(raw, redis_prefix, "blob:stream:def") <= 3600
    assert raw.ttl(redis_prefix + "blob:audio:abc") == -1
    assert raw.ttl(redis_prefix + "blob:cursor:pusher") == -1

    short = make_store(blob_ttls={"audio:": 0.05})
    short.put_blob("audio:x", b"mp3")
    short.put_blob("stream:x", b"{}")  # the mapping replaces the defaults
    time.sleep(0.2)
    assert short.get_blob("audio:x") is None
    assert short.get_blob("stream:x") == b"{}"


def test_floats_and_text_round_trip_exactly(make_store: Callable[..., RedisStore]) -> None:
    store = make_store()
    state = new_call(history=(), pending="¿mañana a las 9? 👋")
    at = T0 + 0.1 + 0.2  # not a short decimal
    store.commit_step(None, state, [NewEvent("call.start", {"x": 0.1 + 0.2, "t": "ü"})],
                      "start", "<R>é</R>", at=at)

    assert store.get_state("CA0001") == state
    summary = store.get_call("CA0001")
    assert summary is not None
    assert (summary.started_at, summary.updated_at) == (state.started_at, at)
    (event,) = store.events_after(0)
    assert (event.at, event.data) == (at, {"x": 0.1 + 0.2, "t": "ü"})
    assert store.stored_response("CA0001", "start") == "<R>é</R>"


# Concurrency, processes, scripts, prefixes

def test_racing_steps_from_many_clients_exactly_one_wins_each_time(
        make_store: Callable[..., RedisStore]) -> None:
    racers, rounds = 8, 15
    stores = [make_store() for _ in range(racers)]  # a connection pool each, as processes
    state = new_call()
    stores[0].commit_step(None, state, [], "start", "<R/>", at=T0)

    for round_ in range(rounds):
        barrier = threading.Barrier(racers)
        outcomes: dict[int, str] = {}

        def race(i: int, previous: CallState = state, round_: int = round_,
                 barrier: threading.Barrier = barrier,
                 outcomes: dict[int, str] = outcomes) -> None:
            nxt = new_call(step=previous.step + 1, node=f"node-{round_}-{i}")
            barrier.wait()
            try:
                stores[i].commit_step(previous, nxt, [NewEvent("call.node", {"racer": i})],
                                      f"request-{round_}-{i}", f"<R>{i}</R>", at=T0 + round_)
            except StepConflict:
                outcomes[i] = "conflict"
            except Exception as error:
                outcomes[i] = repr(error)
            else:
                outcomes[i] = "won"

        threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(outcomes.values()) == ["conflict"] * (racers - 1) + ["won"], outcomes
        (winner,) = [i for i, outcome in outcomes.items() if outcome == "won"]
        state = new_call(step=state.step + 1, node=f"node-{round_}-{winner}")
        assert stores[-1].get_state("CA0001") == state
        answered = [stores[0].stored_response("CA0001", f"request-{round_}-{i}")
                    for i in range(racers)]
        assert answered == [f"<R>{winner}</R>" if i == winner else None for i in range(racers)]

    assert len(stores[0].events_after(0, "CA0001")) == rounds  # only the winners' events


def test_concurrent_events_get_unique_increasing_ids(
        make_store: Callable[..., RedisStore]) -> None:
    writers, each = 8, 40
    stores = [make_store() for _ in range(writers)]
    barrier = threading.Barrier(writers)

    def write(i: int) -> None:
        barrier.wait()
        for n in range(each):
            stores[i].record_events(f"CA{i}", [NewEvent("call.error", {"n": n})], at=T0 + n)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    events = stores[0].events_after(0, limit=10_000)
    assert [e.id for e in events] == list(range(1, writers * each + 1))
    assert stores[0].last_event_id() == writers * each
    for i in range(writers):  # each writer's events in the order it wrote them
        assert [e.data["n"] for e in stores[1].events_after(0, f"CA{i}")] == list(range(each))


def test_two_stores_see_each_others_writes(make_store: Callable[..., RedisStore]) -> None:
    one, two = make_store(), make_store()
    assert one.client.connection_pool is not two.client.connection_pool
    first = new_call()
    one.commit_step(None, first, [NewEvent("call.start", {})], "start", "<R>1</R>", at=T0)
    assert two.get_state("CA0001") == first
    two.commit_step(first, new_call(step=2), [], "step-2", "<R>2</R>", at=T0 + 1)
    with pytest.raises(StepConflict, match="at step 2, not 1"):
        one.commit_step(first, new_call(step=2, node="other"), [], "step-2b", "<R/>", at=T0 + 2)
    assert two.compare_and_set_blob("lease", None, b"two")
    assert not one.compare_and_set_blob("lease", None, b"one")
    assert one.get_blob("lease") == b"two"
    one.close()  # closing one process's pool does not disturb the other
    assert two.last_event_id() == 1
    assert one.get_state("CA0001") == new_call(step=2)  # and a closed store reconnects


def test_scripts_survive_a_script_flush(make_store: Callable[..., RedisStore],
                                        raw: redis.Redis) -> None:
    store = make_store()
    first = new_call()
    store.commit_step(None, first, [NewEvent("call.start", {})], "start", "<R/>", at=T0)
    assert store.compare_and_set_blob("cursor:x", None, b"1")

    raw.script_flush()  # as after a restart or a failover to a replica without the scripts

    second = new_call(step=2)
    store.commit_step(first, second, [NewEvent("call.node", {})], "step-2", "<R/>", at=T0 + 1)
    store.record_events("CA0001", [NewEvent("call.error", {})], at=T0 + 2)
    assert store.compare_and_set_blob("cursor:x", b"1", b"2")
    store.close_call("CA0001", "completed", 2, at=T0 + 3)
    raw.script_flush()
    with pytest.raises(StepConflict):
        store.commit_step(first, second, [], "step-2", "<R/>", at=T0 + 4)

    assert [e.name for e in store.events_after(0)] == ["call.start", "call.node", "call.error"]
    summary = store.get_call("CA0001")
    assert summary is not None and summary.status == "completed"
    assert store.get_blob("cursor:x") == b"2"


@pytest.fixture
def other_prefix() -> Iterator[str]:
    require_redis()
    prefix = f"phoney-test-{uuid.uuid4().hex}:"
    yield prefix
    delete_prefix(prefix)


def test_prefixes_isolate_stores(make_store: Callable[..., RedisStore], raw: redis.Redis,
                                 redis_prefix: str, other_prefix: str) -> None:
    mine = make_store()
    theirs = RedisStore(f"{server_url()}?prefix={other_prefix}")
    try:
        mine.commit_step(None, new_call(), [NewEvent("call.start", {})], "start", "<R>a</R>",
                         at=T0)
        mine.put_blob("k", b"mine")
        assert theirs.get_state("CA0001") is None
        assert theirs.list_calls() == [] and theirs.events_after(0) == []
        assert theirs.get_blob("k") is None and theirs.last_event_id() == 0

        theirs.commit_step(None, new_call(node="other"), [NewEvent("call.start", {})],
                           "start", "<R>b</R>", at=T0)
        assert theirs.events_after(0)[0].id == 1  # ids are per prefix
        assert mine.get_state("CA0001") == new_call()
        assert mine.stored_response("CA0001", "start") == "<R>a</R>"
        assert keys(raw, other_prefix) == keys(raw, redis_prefix) - {"blob:k"}
    finally:
        theirs.close()

    delete_prefix(other_prefix)
    assert keys(raw, other_prefix) == set()
    assert mine.get_state("CA0001") == new_call()
