"""The Pusher sink and `/pusher/auth` against the Pusher double, with real signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import nacl.secret
import pusher.errors
import pytest
import requests
from flask import Flask
from pusher.http import POST, Request

from engine.events import ChannelNames, Publisher, PusherSink, make_client, master_key
from engine.events.pusher_sink import ErrorInBody
from engine.store import CallStore, NewEvent
from tests.doubles.pusher_server import PusherDouble
from tests.events.conftest import (
    OTHER_SID,
    SID,
    live_of,
    logged_in,
    pusher_config,
    record,
    simulated_call,
    store_of,
    wait_until,
)

SECRET_WORDS = "my card number is 4111 1111 1111 1111"
ENCRYPTION_KEY = "correct horse battery staple"


def sink_for(double: PusherDouble, mode: str = "private", encryption_key: str = "",
             secret: str | None = None) -> PusherSink:
    channels = ChannelNames.choose(mode, encryption_key)
    client = make_client(double.app_id, double.key, secret or double.secret, host=double.url,
                         encryption_key=encryption_key if channels.encrypted else "")
    return PusherSink(client, channels, encryption_key if channels.encrypted else "")


def decrypt(shared_secret_b64: str, data: str) -> Any:
    """What pusher-js does with an encrypted channel's event and the auth answer's secret."""
    sealed = json.loads(data)
    box = nacl.secret.SecretBox(base64.b64decode(shared_secret_b64))
    plain = box.decrypt(base64.b64decode(sealed["ciphertext"]), base64.b64decode(sealed["nonce"]))
    return json.loads(plain)


# -- the sink ------------------------------------------------------------------------------------

def test_private_channels_get_each_event_on_both_channels(store: CallStore,
                                                          pusher_double: PusherDouble) -> None:
    sink = sink_for(pusher_double)
    events = record(store, 2) + record(store, 1, OTHER_SID, name="call.end", status="completed")

    sink.deliver(events)

    assert [(r.channel, r.name, r.json()["id"]) for r in pusher_double.events] == [
        ("private-calls", "call.say", events[0].id),
        (f"private-call-{SID}", "call.say", events[0].id),
        ("private-calls", "call.say", events[1].id),
        (f"private-call-{SID}", "call.say", events[1].id),
        ("private-calls", "call.end", events[2].id),
        (f"private-call-{OTHER_SID}", "call.end", events[2].id),
    ]
    assert pusher_double.events[5].json() == {
        "id": events[2].id, "call_sid": OTHER_SID, "name": "call.end",
        "data": {"n": 0, "status": "completed"}, "at": events[2].at}
    assert [(r.path, r.status) for r in pusher_double.requests] == [
        (f"/apps/{pusher_double.app_id}/batch_events", 200)]  # one signed request


def test_the_publisher_batches_at_most_ten_pusher_events_a_request(
        store: CallStore, pusher_double: PusherDouble) -> None:
    publisher = Publisher(store, [sink_for(pusher_double)], owner="one")
    publisher.prepare()
    events = record(store, 12)

    while publisher.run_once():
        pass

    sizes = [len(json.loads(r.body)["batch"]) for r in pusher_double.requests]
    assert sizes == [10, 10, 4]  # 5 + 5 + 2 events, two channels each
    assert [r.json()["id"] for r in pusher_double.on("private-calls")] == [e.id for e in events]
    assert publisher.stats()["pusher"].delivered == 12


def test_a_call_id_that_cannot_name_a_channel_still_reaches_the_all_calls_channel(
        store: CallStore, pusher_double: PusherDouble) -> None:
    store.record_events("not a sid!", [NewEvent("call.error", {"kind": "flow"})], at=1.0)

    sink_for(pusher_double).deliver(store.events_after(0))

    assert [r.channel for r in pusher_double.events] == ["private-calls"]


def test_public_channels_when_asked_for(store: CallStore, pusher_double: PusherDouble) -> None:
    sink_for(pusher_double, "public").deliver(record(store, 1))

    assert [r.channel for r in pusher_double.events] == ["calls", f"call-{SID}"]


def test_encrypted_channels_pusher_never_sees_the_transcript(
        store: CallStore, pusher_double: PusherDouble) -> None:
    sink = sink_for(pusher_double, "", ENCRYPTION_KEY)  # the key alone chooses encryption
    assert sink.channels.mode == "encrypted"
    (said,) = record(store, 1, name="call.transcript", speech=SECRET_WORDS)
    (long,) = record(store, 1, name="call.response", text="ü" * 9000)

    sink.deliver([said, long])

    assert [r.channel for r in pusher_double.events] == [
        "private-encrypted-calls", f"private-encrypted-call-{SID}"] * 2
    for request in pusher_double.requests:  # nothing readable went over the wire
        assert b"4111" not in request.body and b"card number" not in request.body
    key = master_key(ENCRYPTION_KEY)
    for received in pusher_double.events:
        assert set(received.json()) == {"nonce", "ciphertext"}
        assert len(received.data.encode()) <= 10_240
        secret = base64.b64encode(
            hashlib.sha256(received.channel.encode() + key).digest()).decode()
        assert decrypt(secret, received.data)["call_sid"] == SID
    first = decrypt(base64.b64encode(hashlib.sha256(
        b"private-encrypted-calls" + key).digest()).decode(), pusher_double.events[0].data)
    assert first["data"]["speech"] == SECRET_WORDS
    third = decrypt(base64.b64encode(hashlib.sha256(
        b"private-encrypted-calls" + key).digest()).decode(), pusher_double.events[2].data)
    assert third["trimmed"] is True and third["data"]["text"].startswith("üüü")


def test_encrypted_without_a_key_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="ENCRYPTION_KEY"):
        ChannelNames.choose("encrypted", "")
    with pytest.raises(ValueError, match="PUSHER_CHANNELS"):
        ChannelNames.choose("secret", "")


def test_a_wrong_secret_is_refused_401_and_retried_not_dropped(
        store: CallStore, pusher_double: PusherDouble) -> None:
    sink = sink_for(pusher_double, secret="not-the-secret")
    publisher = Publisher(store, [sink], owner="one", backoff=60)
    publisher.prepare()
    record(store, 1)

    with pytest.raises(pusher.errors.PusherBadAuth, match="Invalid signature"):
        sink.deliver(store.events_after(0))
    publisher.run_once()

    assert pusher_double.statuses() == [401, 401]
    assert pusher_double.events == []
    stats = publisher.stats()["pusher"]
    assert stats.failed_attempts == 1 and stats.retries_pending == 1 and stats.rejected == 0
    assert publisher.cursor("pusher") == 0  # still to deliver


def test_the_double_checks_what_pusher_checks(pusher_double: PusherDouble) -> None:
    client = make_client(pusher_double.app_id, pusher_double.key, pusher_double.secret,
                         host=pusher_double.url)
    client.trigger(["private-calls", "calls"], "call.start", "{}")
    assert [r.channel for r in pusher_double.events] == ["private-calls", "calls"]

    def refused(status: int, batch: list[dict[str, str]]) -> None:
        with pytest.raises(pusher.errors.PusherError, match=r"^413" if status == 413 else None):
            client.trigger_batch(batch, already_encoded=True)
        assert pusher_double.statuses()[-1] == status

    refused(413, [{"channel": "calls", "name": "e", "data": "é" * 5121}])  # 10 242 bytes
    refused(400, [{"channel": "calls", "name": "e", "data": "{}"}] * 11)
    refused(400, [{"channel": "bad channel!", "name": "e", "data": "{}"}])
    refused(400, [{"channel": "c" * 165, "name": "e", "data": "{}"}])
    refused(400, [{"channel": "calls", "name": "e", "data": {"not": "a string"}}])  # type: ignore[dict-item]
    client.trigger_batch([{"channel": "calls", "name": "e", "data": "é" * 5120}],
                         already_encoded=True)  # exactly 10 240 bytes
    assert pusher_double.statuses()[-1] == 200
    # What the SDK refuses before sending, sent signed all the same: the double refuses it too.
    too_many = Request(client._pusher_client, POST, f"/apps/{pusher_double.app_id}/events",
                       {"name": "e", "channels": [f"c{i}" for i in range(101)], "data": "{}"})
    answer = requests.post(too_many.url, data=too_many.body, headers=too_many.headers,
                           timeout=5)
    assert answer.status_code == 400 and "Too many channels" in answer.text
    stale = PusherDouble(pusher_double.app_id, pusher_double.key, pusher_double.secret,
                         now=lambda: 10_000.0)  # its clock is far from ours
    with stale:
        old = make_client(stale.app_id, stale.key, stale.secret, host=stale.url)
        with pytest.raises(pusher.errors.PusherBadAuth, match="Timestamp"):
            old.trigger(["calls"], "e", "{}")


def test_a_pusher_that_is_down_for_a_while_gets_every_event_when_it_is_back(
        store: CallStore, pusher_double: PusherDouble) -> None:
    publisher = Publisher(store, [sink_for(pusher_double)], owner="one", poll_interval=0.01,
                          backoff=0.05, max_backoff=0.2)
    publisher.start()
    try:
        pusher_double.down()
        events = record(store, 3)
        assert wait_until(lambda: publisher.stats()["pusher"].failed_attempts >= 3)
        events += record(store, 4)  # more keep coming while it is down
        assert pusher_double.events == []
        pusher_double.fail(2, status=503)  # and it comes back shaky
        pusher_double.up()
        assert wait_until(lambda: publisher.caught_up())
    finally:
        publisher.stop()

    ids = [r.json()["id"] for r in pusher_double.on("private-calls")]
    assert ids == [event.id for event in events]  # all of them, once each, in order
    stats = publisher.stats()["pusher"]
    assert stats.delivered == 7 and stats.retries_pending == 0 and stats.failed_attempts >= 5
    assert 503 in pusher_double.statuses()


def test_a_slow_pusher_times_out_and_is_retried(store: CallStore,
                                                pusher_double: PusherDouble) -> None:
    channels = ChannelNames("private")
    client = make_client(pusher_double.app_id, pusher_double.key, pusher_double.secret,
                         host=pusher_double.url, timeout=0.2)
    publisher = Publisher(store, [PusherSink(client, channels)], owner="one",
                          poll_interval=0.01, backoff=0.05)
    publisher.start()
    try:
        pusher_double.slow_for(0.5, delay=0.4)
        (event,) = record(store, 1)
        assert wait_until(lambda: publisher.caught_up(), timeout=5)
    finally:
        publisher.stop()
    assert publisher.stats()["pusher"].failed_attempts >= 1
    assert "Timeout" in publisher.stats()["pusher"].last_error
    # The slow answers may have been accepted after the client gave up: at least once.
    assert event.id in {r.json()["id"] for r in pusher_double.on("private-calls")}


def test_create_app_publishes_a_calls_events_to_pusher(
        new_app: Callable[..., Flask], pusher_double: PusherDouble) -> None:
    app = new_app(**pusher_config(pusher_double))
    live = live_of(app)
    assert live.publisher is not None and live.publisher.running

    call = simulated_call(app).start()
    call.say("Do you take walk-ins?")

    assert wait_until(lambda: live.publisher is not None and live.publisher.caught_up())
    stored = store_of(app).events_after(0, call.call_sid)
    on_call = [r.json() for r in pusher_double.on(f"private-call-{call.call_sid}")]
    assert [e["id"] for e in on_call] == [e.id for e in stored]
    assert [e["name"] for e in on_call][:2] == ["call.start", "call.say"]
    info = logged_in(app).get("/api/live").get_json()
    assert info["transport"] == "pusher"
    assert info["pusher"]["all_calls_channel"] == "private-calls"
    assert info["publisher"]["sinks"]["pusher"]["delivered"] == len(stored)


def test_a_second_server_process_does_not_publish_the_same_events_again(
        new_app: Callable[..., Flask], pusher_double: PusherDouble) -> None:
    config = pusher_config(pusher_double, PUBLISHER_OPTIONS={"poll_interval": 0.01,
                                                              "standby_interval": 0.01})
    first, second = new_app(**config), new_app(**config)

    calls = [simulated_call(app).start() for app in (first, second, first)]

    publishers = [live_of(app).publisher for app in (first, second)]
    assert wait_until(lambda: all(p is not None and p.caught_up() for p in publishers))
    ids = [r.json()["id"] for r in pusher_double.on("private-calls")]
    assert ids == [e.id for e in store_of(first).events_after(0)]  # each once, in order
    assert len({c.call_sid for c in calls}) == 3


# -- /pusher/auth --------------------------------------------------------------------------------

def signature(secret: str, socket_id: str, channel: str) -> str:
    return hmac.new(secret.encode(), f"{socket_id}:{channel}".encode(),
                    hashlib.sha256).hexdigest()


def test_auth_needs_a_dashboard_login(new_app: Callable[..., Flask],
                                      pusher_double: PusherDouble) -> None:
    app = new_app(**pusher_config(pusher_double), PUBLISHER=False)

    answer = app.test_client().post("/pusher/auth", data={"socket_id": "123.456",
                                                          "channel_name": "private-calls"})

    assert answer.status_code == 401 and "auth" not in answer.get_json()


def test_auth_signs_our_private_channels_for_a_logged_in_user(
        new_app: Callable[..., Flask], pusher_double: PusherDouble) -> None:
    app = new_app(**pusher_config(pusher_double), PUBLISHER=False)
    client = logged_in(app)

    for channel in ("private-calls", f"private-call-{SID}"):
        answer = client.post("/pusher/auth", data={"socket_id": "1234.5678",
                                                   "channel_name": channel})
        assert answer.status_code == 200
        assert answer.get_json() == {
            "auth": f"{pusher_double.key}:"
                    f"{signature(pusher_double.secret, '1234.5678', channel)}"}

    for channel in ("private-other", "calls", "private-call-CA123", "private-encrypted-calls",
                    f"private-call-{SID}-x", "presence-calls"):
        answer = client.post("/pusher/auth", data={"socket_id": "1234.5678",
                                                   "channel_name": channel})
        assert answer.status_code == 403, channel
    bad_socket = client.post("/pusher/auth", data={"socket_id": "x",
                                                   "channel_name": "private-calls"})
    assert bad_socket.status_code == 400
    assert client.post("/pusher/auth", data={}).status_code == 400


def test_auth_on_encrypted_channels_gives_the_channels_key_that_opens_its_events(
        new_app: Callable[..., Flask], pusher_double: PusherDouble) -> None:
    app = new_app(**pusher_config(pusher_double, ENCRYPTION_KEY=ENCRYPTION_KEY))
    client = logged_in(app)
    channel = "private-encrypted-calls"

    answer = client.post("/pusher/auth", data={"socket_id": "99.1", "channel_name": channel})

    body = answer.get_json()
    assert answer.status_code == 200 and set(body) == {"auth", "shared_secret"}
    assert body["auth"] == f"{pusher_double.key}:" \
                           f"{signature(pusher_double.secret, '99.1', channel)}"
    call = simulated_call(app).start()
    publisher = live_of(app).publisher
    assert publisher is not None and wait_until(publisher.caught_up)
    opened = [decrypt(body["shared_secret"], r.data) for r in pusher_double.on(channel)]
    assert [e["name"] for e in opened][:2] == ["call.start", "call.say"]
    assert all(e["call_sid"] == call.call_sid for e in opened)
    assert client.post("/pusher/auth", data={"socket_id": "99.1",
                                              "channel_name": "private-calls"}).status_code == 403


def test_auth_without_pusher_is_not_found(new_app: Callable[..., Flask]) -> None:
    client = logged_in(new_app())

    answer = client.post("/pusher/auth", data={"socket_id": "1.2",
                                               "channel_name": "private-calls"})

    assert answer.status_code == 404


# -- soketi: errors answered with 200 --------------------------------------------------------------

def test_a_200_answer_with_an_error_body_is_a_failed_delivery_retried(store: CallStore) -> None:
    with PusherDouble(errors_in_body=True) as soketi:
        sink = sink_for(soketi, secret="not-the-secret")
        publisher = Publisher(store, [sink], owner="one", backoff=60)
        publisher.prepare()
        record(store, 2)

        with pytest.raises(ErrorInBody, match=r"code 401.*Invalid signature"):
            sink.deliver(store.events_after(0))
        publisher.run_once()

        assert soketi.statuses() == [200, 200]  # what soketi answers a wrong secret
        assert soketi.events == []
    stats = publisher.stats()["pusher"]
    assert stats.delivered == 0 and stats.failed_attempts == 1 and stats.retries_pending == 2
    assert stats.rejected == 0 and "code 401" in stats.last_error
    assert publisher.cursor("pusher") == 0  # still to deliver


def test_a_200_answer_with_a_413_error_body_is_refused_for_good(store: CallStore) -> None:
    with PusherDouble(errors_in_body=True) as soketi:
        sink = sink_for(soketi, mode="public")
        sink.limit = 20_000  # lets through what the double's 10 kB limit refuses
        publisher = Publisher(store, [sink], owner="one")
        publisher.prepare()
        record(store, 1, text="é" * 6000)
        (fine,) = record(store, 1)

        while publisher.run_once():
            pass

        assert set(soketi.statuses()) == {200}
        assert [r.json()["id"] for r in soketi.on("calls")] == [fine.id]
    stats = publisher.stats()["pusher"]
    assert stats.rejected == 1 and stats.delivered == 1 and publisher.caught_up()


def test_a_wrong_secret_on_soketi_shows_as_failed_not_delivered(
        new_app: Callable[..., Flask]) -> None:
    with PusherDouble(errors_in_body=True) as soketi:
        app = new_app(**pusher_config(soketi, PUSHER_SECRET="not-the-secret",
                                      PUBLISHER_OPTIONS={"poll_interval": 0.01, "backoff": 0.02,
                                                         "max_backoff": 0.05}))
        live = live_of(app)
        assert live.publisher is not None
        simulated_call(app).start()

        assert wait_until(lambda: live.publisher is not None
                          and live.publisher.stats()["pusher"].failed_attempts >= 2)
        sinks = logged_in(app).get("/api/live").get_json()["publisher"]["sinks"]
        assert soketi.events == [] and set(soketi.statuses()) == {200}
    assert sinks["pusher"]["delivered"] == 0 and sinks["pusher"]["failed_attempts"] >= 2
    assert sinks["pusher"]["retries_pending"] >= 1
