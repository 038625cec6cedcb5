"""`payload`: the event as JSON, at most 10 240 bytes of UTF-8, long text trimmed and marked.

The `pusher` SDK's own size check uses `sys.getsizeof`, which is not the UTF-8 size: these tests
show it letting through data Pusher refuses and refusing data Pusher accepts, and show ours right
on both, against the Pusher double that counts as Pusher does.
"""

from __future__ import annotations

import json
import sys

import pusher
import pusher.crypto
import pusher.errors
import pytest

from engine.events import MAX_DATA_BYTES, TRIM_MARKER, PusherSink, payload, utf8_size
from engine.events.payload import encrypted_budget, event_json
from engine.events.pusher_sink import ChannelNames, make_client, master_key
from engine.store import StoredEvent
from tests.doubles.pusher_server import PusherDouble

SID = "CA" + "0123456789abcdef" * 2


def event(event_id: int = 7, name: str = "call.response", **data: object) -> StoredEvent:
    return StoredEvent(id=event_id, call_sid=SID, name=name, data=data, at=1_736_953_200.25)


def test_a_small_event_is_its_json_untouched() -> None:
    small = event(text="Hello there, ¿qué tal? 👋", node="assist", timings={"first_token": 0.3})

    text = payload(small)

    assert json.loads(text) == event_json(small) == {
        "id": 7, "call_sid": SID, "name": "call.response", "at": 1_736_953_200.25,
        "data": {"text": "Hello there, ¿qué tal? 👋", "node": "assist",
                 "timings": {"first_token": 0.3}}}
    assert "trimmed" not in text
    assert "👋" in text  # UTF-8 on the wire, not \\ud83d escapes that take 12 bytes


@pytest.mark.parametrize("char", ["a", "é", "中", "😀"])
@pytest.mark.parametrize("shift", [0, 1, 2, 3])
def test_long_text_is_cut_at_a_character_boundary_to_fit_in_utf8_bytes(char: str,
                                                                       shift: int) -> None:
    # `shift` moves where the limit falls inside a multi-byte character.
    text = "x" * shift + char * 12_000
    long = event(text=text, node="assist", personality="friendly")

    wire = payload(long)
    size = utf8_size(wire)

    assert size <= MAX_DATA_BYTES
    assert size >= MAX_DATA_BYTES - 3  # at most the bytes of one character are given up
    body = json.loads(wire)
    assert body["trimmed"] is True and body["trimmed_fields"] == ["data.text"]
    kept = body["data"]["text"]
    assert kept.endswith(TRIM_MARKER)
    assert text.startswith(kept.removesuffix(TRIM_MARKER))  # a prefix, no broken character
    assert "\ufffd" not in kept
    assert body["data"]["node"] == "assist" and body["data"]["personality"] == "friendly"
    assert (body["id"], body["call_sid"], body["name"]) == (7, SID, "call.response")


def test_the_limit_is_a_parameter_and_held_exactly() -> None:
    for limit in (300, 1000, 4097):
        wire = payload(event(text="ñ" * 5000), limit)
        assert limit - 2 <= utf8_size(wire) <= limit


def test_the_longest_fields_are_cut_and_nested_ones_are_reached() -> None:
    big = event(text="word " * 3000, detail={"items": ["short", "ü" * 6000]}, node="assist")

    body = json.loads(payload(big))

    assert utf8_size(json.dumps(body, ensure_ascii=False, separators=(",", ":"))) <= 10_240
    # The text (15 000 bytes) alone cannot give up enough: the nested field is cut too.
    assert body["trimmed_fields"] == ["data.text", "data.detail.items.1"]
    assert body["data"]["detail"]["items"][0] == "short"
    assert body["data"]["node"] == "assist"


def test_json_escapes_count_too() -> None:
    escaped = event(text='"\n\\' * 5000)  # every character is two bytes of JSON

    wire = payload(escaped)

    assert utf8_size(wire) <= MAX_DATA_BYTES
    assert json.loads(wire)["data"]["text"].endswith(TRIM_MARKER)


def test_data_with_nothing_long_enough_to_cut_keeps_the_envelope_only() -> None:
    many = event(**{f"field_{i}": i for i in range(2000)})

    body = json.loads(payload(many))

    assert body["data"] == {} and body["trimmed"] is True and body["trimmed_fields"] == ["data"]
    assert body["id"] == 7


def test_the_sdks_getsizeof_check_misjudges_utf8_both_ways() -> None:
    """What `pusher` checks (`sys.getsizeof(data) > 10240` in trigger_batch) against bytes."""
    cjk = "中" * 4000  # 12 000 bytes of UTF-8, but two bytes a character in memory
    assert sys.getsizeof(cjk) <= 10_240 < utf8_size(cjk)  # the SDK lets through a 413
    ascii_and_one_emoji = "a" * 3000 + "😀"  # 3 004 bytes, but four bytes a character in memory
    assert utf8_size(ascii_and_one_emoji) <= 10_240 < sys.getsizeof(ascii_and_one_emoji)
    exactly = "a" * 10_240  # exactly Pusher's limit, plus the str object's header
    assert utf8_size(exactly) <= 10_240 < sys.getsizeof(exactly)


def test_the_double_refuses_what_the_sdk_lets_through_and_takes_our_trimmed_payload() -> None:
    with PusherDouble() as double:
        client = make_client(double.app_id, double.key, double.secret, host=double.url)
        cjk = "中" * 4000
        with pytest.raises(pusher.errors.PusherBadStatus, match=r"^413"):
            client.trigger_batch([{"channel": "private-calls", "name": "call.say",
                                   "data": json.dumps({"text": cjk}, ensure_ascii=False)}])
        sink = PusherSink(client, ChannelNames("private"))
        sink.deliver([event(text=cjk), event(8, text="a" * 3000 + "😀")])

        assert [r.status for r in double.requests] == [413, 200]
        received = [r.json() for r in double.on("private-calls")]
        assert [r["id"] for r in received] == [7, 8]
        assert received[0]["trimmed"] is True and received[0]["data"]["text"].startswith("中")
        assert received[1]["data"]["text"] == "a" * 3000 + "😀"  # fits: sent whole
        assert all(utf8_size(r.data) <= MAX_DATA_BYTES for r in double.events)


def test_encrypted_budget_leaves_room_for_nonce_mac_and_base64() -> None:
    key = master_key("an encryption key")
    budget = encrypted_budget()
    channel = "private-encrypted-calls"

    def sealed_size(plain_bytes: int) -> int:
        sealed = pusher.crypto.encrypt(channel, "a" * plain_bytes, key)
        return utf8_size(json.dumps(sealed, ensure_ascii=False))

    assert sealed_size(budget) <= MAX_DATA_BYTES < sealed_size(budget + 1)
    assert budget > 7_000  # a three-quarters budget, not a tiny one
