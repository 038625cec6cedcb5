"""The Pusher Channels sink: each event to the channel of all calls and to its call's channel.

Channels, by `PUSHER_CHANNELS` (`ChannelNames`):
- `private` (the default without ENCRYPTION_KEY): `private-calls`, `private-call-<CallSid>`; a
  browser subscribes only with a signature from `POST /pusher/auth`, which needs a dashboard login;
- `encrypted` (the default with ENCRYPTION_KEY): `private-encrypted-calls`,
  `private-encrypted-call-<CallSid>`; the data is end-to-end encrypted (NaCl secretbox with a key
  per channel derived from a master key), so Pusher never sees transcripts. The master key is
  derived from ENCRYPTION_KEY (`master_key`); browsers get their channel's key from the auth
  endpoint, never the master key;
- `public`: `calls`, `call-<CallSid>`: anyone with the app key can listen. Only for demos.

Sending: every request is `trigger_batch` (Pusher's batch endpoint, at most 10 events, each on one
channel), so `max_batch` is 5 events (two channels each) and one `deliver` is one HTTP request:
accepted or not as a whole, which keeps retries from sending half a batch twice. Batches carry
encrypted events too: each batch event names one channel, which is what encryption requires
(the SDK refuses only one encrypted trigger to several channels).

The data is built and measured here (`payload`, in UTF-8 bytes) and encrypted here with the SDK's
own `pusher.crypto.encrypt`, then sent with `already_encoded=True`: the SDK's size check uses
`sys.getsizeof`, which lets through non-ASCII text Pusher refuses with 413 and refuses ASCII
text of 10 kB that Pusher accepts (see engine/events/payload.py).

A delivery is good only when the answer's body holds no `error`: soketi, the common self-hosted
Pusher-compatible server, answers some refusals (a wrong secret: code 401; data too large: 413)
with HTTP 200 and `{"error": "...", "code": 401}`. Such an answer counts as a failed delivery and
is retried (`ErrorInBody`), or for codes 400 and 413 is refused for good (`Rejected`), exactly as
the same status would be.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import pusher
import pusher.crypto
import pusher.errors

from engine.events.payload import MAX_DATA_BYTES, encrypted_budget, payload
from engine.events.publisher import Rejected
from engine.store import StoredEvent

ChannelMode = Literal["public", "private", "encrypted"]
MODES: tuple[ChannelMode, ...] = ("public", "private", "encrypted")
PREFIXES: dict[ChannelMode, str] = {"public": "", "private": "private-",
                                    "encrypted": "private-encrypted-"}

CHANNEL_NAME = re.compile(r"\A[-a-zA-Z0-9_=@,.;]{1,164}\Z")  # Pusher's rule
CALL_SID = re.compile(r"\ACA[0-9a-fA-F]{32}\Z")
MAX_BATCH_EVENTS = 10  # Pusher's limit per batch request

_MASTER_KEY_CONTEXT = b"phoney pusher end-to-end encryption master key v1"


def master_key(encryption_key: str) -> bytes:
    """Pusher's 32-byte master key for ENCRYPTION_KEY (HMAC-SHA-256, so it is not the key)."""
    return hmac.new(encryption_key.encode(), _MASTER_KEY_CONTEXT, hashlib.sha256).digest()


@dataclass(frozen=True)
class ChannelNames:
    """The Pusher channel names of one `PUSHER_CHANNELS` mode: `public`, `private` or
    `encrypted`.
    """

    mode: ChannelMode = "private"

    @property
    def prefix(self) -> str:
        """What every channel name of the mode starts with: '', `private-` or
        `private-encrypted-`.
        """
        return PREFIXES[self.mode]

    @property
    def encrypted(self) -> bool:
        """True when the channels are end-to-end encrypted."""
        return self.mode == "encrypted"

    @property
    def all_calls(self) -> str:
        """The channel of every call's events: `calls` with the mode's prefix."""
        return f"{self.prefix}calls"

    def call(self, call_sid: str) -> str | None:
        """The call's channel; None for a call id that cannot name a channel."""
        name = f"{self.prefix}call-{call_sid}"
        return name if CALL_SID.match(call_sid) and CHANNEL_NAME.match(name) else None

    def for_event(self, event: StoredEvent) -> list[str]:
        """The channels `event` goes to: all calls first, then its call's own, left out when
        its CallSid cannot name a channel.
        """
        own = self.call(event.call_sid)
        return [self.all_calls] + ([own] if own else [])

    def is_ours(self, channel: str) -> bool:
        """A channel this app publishes to (what the auth endpoint may sign)."""
        if channel == self.all_calls:
            return True
        sid = channel.removeprefix(f"{self.prefix}call-")
        return sid != channel and self.call(sid) == channel

    @classmethod
    def choose(cls, setting: str, encryption_key: str) -> ChannelNames:
        """`PUSHER_CHANNELS` (public, private, encrypted; empty: encrypted when there is an
        ENCRYPTION_KEY, private otherwise)."""
        mode = (setting or "").strip().lower() or ("encrypted" if encryption_key else "private")
        if mode not in MODES:
            raise ValueError(f"PUSHER_CHANNELS={setting!r}: use one of {', '.join(MODES)}")
        if mode == "encrypted" and not encryption_key:
            raise ValueError("PUSHER_CHANNELS=encrypted needs ENCRYPTION_KEY (the master key of "
                             "Pusher's end-to-end encryption is derived from it)")
        return cls(mode)


def make_client(app_id: str, key: str, secret: str, *, cluster: str = "", host: str = "",
                encryption_key: str = "", timeout: float = 5.0) -> Any:
    """A `pusher.Pusher`. `host` (PUSHER_HOST) may be `name`, `name:port` or a URL
    (`http://127.0.0.1:8080` for a local double); it wins over `cluster`."""
    options: dict[str, Any] = {"timeout": timeout}
    if host:
        parts = urlsplit(host if "://" in host else f"https://{host}")
        options.update(host=parts.hostname, ssl=parts.scheme != "http")
        if parts.port:
            options["port"] = parts.port
    elif cluster:
        options["cluster"] = cluster
    if encryption_key:
        options["encryption_master_key_base64"] = base64.b64encode(
            master_key(encryption_key)).decode()
    return pusher.Pusher(app_id=app_id, key=key, secret=secret, **options)


class ErrorInBody(Exception):
    """A Pusher-compatible server answered 200 with an `error` in the body: not delivered."""


def refused_in_body(answer: Any) -> None:
    """Raise when a 200 answer's body holds an `error`, as soketi answers a bad signature
    (`{"error": "...", "code": 401}`): `Rejected` for codes 400 and 413, as for those
    statuses, and `ErrorInBody` (retried) for any other code."""
    if not isinstance(answer, dict) or not answer.get("error"):
        return
    code = answer.get("code")
    message = f"Pusher answered 200 with an error (code {code}): {str(answer['error'])[:200]}"
    if code in (400, 413, "400", "413"):
        raise Rejected(message)
    raise ErrorInBody(message)


class PusherSink:
    """Delivers events to Pusher; see the module docstring."""

    name = "pusher"

    def __init__(self, client: Any, channels: ChannelNames,
                 encryption_key: str = "", limit: int = MAX_DATA_BYTES) -> None:
        if channels.encrypted and not encryption_key:
            raise ValueError("encrypted channels need an encryption key")
        self.client = client
        self.channels = channels
        self._master_key = master_key(encryption_key) if channels.encrypted else None
        self.limit = limit
        self.max_batch = MAX_BATCH_EVENTS // 2  # every event goes to two channels

    def batch(self, events: Sequence[StoredEvent]) -> list[dict[str, str]]:
        """The batch request's events: each event once per channel, data encoded and sized."""
        items: list[dict[str, str]] = []
        for event in events:
            for channel in self.channels.for_event(event):
                items.append({"channel": channel, "name": event.name,
                              "data": self._data(channel, event)})
        return items

    def _data(self, channel: str, event: StoredEvent) -> str:
        if self._master_key is None:
            return payload(event, self.limit)
        # The ciphertext is base64: a third bigger than the text, plus nonce and MAC.
        plain = payload(event, encrypted_budget(self.limit))
        sealed = pusher.crypto.encrypt(channel, plain, self._master_key)
        return json.dumps(sealed, ensure_ascii=False)

    def deliver(self, events: Sequence[StoredEvent]) -> None:
        items = self.batch(events)
        if len(items) > MAX_BATCH_EVENTS:
            raise ValueError(f"{len(events)} events make {len(items)} batch events, over "
                             f"Pusher's {MAX_BATCH_EVENTS}: give deliver() at most "
                             f"{self.max_batch}")
        try:
            answer = self.client.trigger_batch(items, already_encoded=True)
        except pusher.errors.PusherBadRequest as error:  # 400: this request never will do
            raise Rejected(f"Pusher answered 400: {error}") from error
        except pusher.errors.PusherBadStatus as error:
            if str(error).startswith("413"):
                raise Rejected(f"Pusher answered {error}") from error
            raise
        # Anything else is retried: 401/403 (keys being fixed, quota), 5xx, and the
        # requests errors of a Pusher that is down, refuses or times out.
        refused_in_body(answer)

    def authorize(self, channel: str, socket_id: str) -> dict[str, str]:
        """The auth endpoint's answer for one of our private channels.

        PermissionError for any other channel; ValueError (from the SDK) for a bad socket id.
        """
        if self.channels.mode == "public" or not self.channels.is_ours(channel):
            raise PermissionError(f"channel {channel!r} is not one of this app's private "
                                  f"channels")
        answer = self.client.authenticate(channel=channel, socket_id=socket_id)
        # The SDK gives the encrypted channel's shared secret as base64 bytes.
        return {key: value.decode() if isinstance(value, bytes) else str(value)
                for key, value in answer.items()}
