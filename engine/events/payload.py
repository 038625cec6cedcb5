"""The wire form of a live event, and keeping it under Pusher's 10 kB limit.

An event is the store's `StoredEvent` (id, call_sid, name, data, at). `payload(event)` is its JSON
text as Pusher and the dashboard get it, at most `limit` bytes of UTF-8 (Pusher answers HTTP 413
above 10 240 bytes of event data). The `pusher` SDK's own check measures `sys.getsizeof` of the
string, which is neither the UTF-8 size nor stable (one emoji makes every character count four
bytes), so the size is counted here, in UTF-8, and the SDK's check is not relied on.

Trimming, not splitting: when the JSON is too big, the longest text fields of `data` are cut (at
a character boundary) and end with `TRIM_MARKER`; the payload then says `"trimmed": true` and
lists the cut fields in `"trimmed_fields"` (as `data.text`, `data.timings.detail`, `data.items.2`),
so a client knows to fetch the whole event from `GET /api/calls/<CallSid>` by its `id`. One event
stays one message: no reassembly, and nothing is lost, since the store keeps the full event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.store import StoredEvent

MAX_DATA_BYTES = 10_240
"""Pusher's limit on one event's data, in bytes."""

TRIM_MARKER = "… [trimmed]"

# An encrypted event's data is {"nonce": <24 bytes, base64>, "ciphertext": <base64>} as the SDK's
# `pusher.crypto.encrypt` writes it; the ciphertext is the plaintext plus a 16-byte MAC.
_ENVELOPE = len(json.dumps({"nonce": "n" * 32, "ciphertext": ""}, ensure_ascii=False))
_MAC_BYTES = 16


def utf8_size(text: str) -> int:
    """The length of `text` in UTF-8 bytes: what Pusher's limit counts."""
    return len(text.encode("utf-8"))


def encrypted_budget(limit: int = MAX_DATA_BYTES) -> int:
    """The largest plaintext (UTF-8 bytes) whose encrypted envelope still fits in `limit`."""
    blocks = (limit - _ENVELOPE) // 4  # base64: 4 characters per 3 bytes
    return max(blocks * 3 - _MAC_BYTES, 0)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def event_json(event: StoredEvent) -> dict[str, Any]:
    """A stored event as the JSON object clients get: id, call_sid, name, data (mappings
    and sequences made plain dicts and lists, keys as strings) and at. Not size-limited: see
    `payload`.
    """
    return {"id": event.id, "call_sid": event.call_sid, "name": event.name,
            "data": _plain(event.data), "at": event.at}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _strings(value: Any, path: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _strings(item, (*path, key))]
    if isinstance(value, list):
        return [found for index, item in enumerate(value)
                for found in _strings(item, (*path, index))]
    return []


def _put(root: Any, path: tuple[str | int, ...], text: str) -> None:
    for part in path[:-1]:
        root = root[part]
    root[path[-1]] = text


def _cut(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character."""
    return text.encode("utf-8")[:max(max_bytes, 0)].decode("utf-8", errors="ignore")


def payload(event: StoredEvent, limit: int = MAX_DATA_BYTES) -> str:
    """The event as JSON text of at most `limit` UTF-8 bytes (see the module docstring)."""
    body = event_json(event)
    text = _dumps(body)
    if utf8_size(text) <= limit:
        return text
    body["trimmed"] = True
    body["trimmed_fields"] = []
    marker = utf8_size(TRIM_MARKER)
    while True:
        text = _dumps(body)
        excess = utf8_size(text) - limit
        if excess <= 0:
            return text
        candidates = [(utf8_size(value), path, value) for path, value in _strings(body["data"], ())]
        candidates = [item for item in candidates if item[0] > marker]
        if not candidates:
            break
        # The longest field loses what is over, plus room for the marker; each round shrinks a
        # field strictly, so this ends. JSON escapes only make a cut of raw bytes go further.
        size, path, value = max(candidates, key=lambda item: item[0])
        base = value.removesuffix(TRIM_MARKER)  # a field cut before is cut again, not re-marked
        _put(body["data"], path, _cut(base, size - excess - marker) + TRIM_MARKER)
        label = ".".join(str(part) for part in ("data", *path))
        if label not in body["trimmed_fields"]:
            body["trimmed_fields"].append(label)
    # Nothing left to cut (a huge key, thousands of small fields): keep the envelope only.
    body["data"] = {}
    body["trimmed_fields"] = ["data"]
    text = _dumps(body)
    if utf8_size(text) > limit:
        raise ValueError(f"event {event.id}: even without its data it is over {limit} bytes")
    return text
