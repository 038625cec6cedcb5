"""Names for webhook requests, under which the store keeps each one's answer.

Twilio retries a webhook it got no answer to; the retry must get the answer the first request
got, not step the call again. A request is named by Twilio's idempotency token when it sends one,
else by a hash of its path and the fields the webhook reads. The hash is of what the caller said
and pressed, so with ENCRYPTION_KEY it is keyed (HMAC-SHA256 under a key derived from it): a
copy of the database then says nothing about the speech by guessing and hashing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

MAX_TOKEN_CHARS = 200


class RequestKeys:
    """Makes request keys: the same for a request and its retries, different for any other."""

    def __init__(self, encryption_key: str = "") -> None:
        self._secret = (hashlib.sha256(b"phoney request keys\0" + encryption_key.encode())
                        .digest() if encryption_key else None)

    def key(self, full_path: str, fields: Mapping[str, str],
            idempotency_token: str | None = None) -> str:
        """The key of one webhook request: `full_path` (path and query) and its `fields`, or
        Twilio's `I-Twilio-Idempotency-Token` when it sent one."""
        if idempotency_token:
            return f"token:{idempotency_token[:MAX_TOKEN_CHARS]}"
        canonical = (full_path + "\n" + "\n".join(
            f"{name}={value}" for name, value in sorted(fields.items()))).encode(
            "utf-8", "replace")
        if self._secret is None:
            return "sha256:" + hashlib.sha256(canonical).hexdigest()
        return "hmac:" + hmac.new(self._secret, canonical, hashlib.sha256).hexdigest()
