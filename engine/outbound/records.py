"""What a call placed by Phoney carries into its flow, kept in the store until Twilio rings it.

`flask calls dial`, `POST /api/calls` and campaigns place a call with vars for its flow. The
vars are written under a token before the call is placed (the token travels in the webhook URL,
so even a webhook that beats the REST answer finds them) and again under the CallSid the REST
answer gives; the incoming-call webhook reads them back (`read_placed`) and the call starts
with them in its `vars`. Plain JSON blobs of the shared store: every server process sees them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.store import CallStore

PLACED_PREFIX = "outbound:placed:"
TOKEN_PREFIX = "outbound:token:"
TOKEN_PARAM = "placed"
"""The incoming-call webhook's query parameter that carries a placed call's token."""


@dataclass(frozen=True)
class PlacedCall:
    """A call Phoney placed: its flow, whom it called and from which number, the vars its
    flow starts with, and who placed it (`by`: a user, `cli`, or `campaign:<id>`)."""

    flow: str
    to: str
    from_: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    by: str = ""
    token: str = ""
    call_sid: str = ""
    machine_detection: bool = False

    def as_json(self) -> dict[str, Any]:
        """The record as JSON-ready values."""
        data = asdict(self)
        data["vars"] = dict(self.vars)
        return data


def new_token() -> str:
    """A token for a call about to be placed: unguessable, URL-safe."""
    return secrets.token_urlsafe(16)


def _load(raw: bytes | None) -> PlacedCall | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return PlacedCall(**{**data, "vars": dict(data.get("vars") or {})})
    except (ValueError, TypeError):
        return None


def save_pending(store: CallStore, placed: PlacedCall) -> None:
    """Keep `placed` under its token, before the call is placed."""
    store.put_blob(TOKEN_PREFIX + placed.token, json.dumps(placed.as_json()).encode())


def save_placed(store: CallStore, placed: PlacedCall) -> None:
    """Keep `placed` under its CallSid, once Twilio has given one."""
    store.put_blob(PLACED_PREFIX + placed.call_sid, json.dumps(placed.as_json()).encode())


def read_placed(store: CallStore, call_sid: str, token: str | None = None) -> PlacedCall | None:
    """The call Phoney placed as `call_sid` (or, before its CallSid was written, under
    `token`); None for a call Phoney did not place."""
    found = _load(store.get_blob(PLACED_PREFIX + call_sid)) if call_sid else None
    if found is None and token:
        found = _load(store.get_blob(TOKEN_PREFIX + token))
    return found
