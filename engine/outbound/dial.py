"""Placing one call through Twilio's REST API, on a flow, with vars for it.

`Dialer.dial` checks what it is asked (the flow, the number, the vars, the do-not-call list,
the number to call from), keeps the vars in the store (engine/outbound/records.py), and asks
Twilio to call: `Url` is the incoming-call webhook with `?flow=` and the call's token,
`StatusCallback` the status callback (every event), and, when the flow declares `on_machine`,
answering-machine detection: `MachineDetection=DetectMessageEnd` (a machine's result comes
after its greeting, so a message is left after the beep) with `AsyncAmd=true` (a person hears
the flow at once, not after seconds of detection) and the result posted to
`AsyncAmdStatusCallback` (engine/web/machine_detection.py).

The number called from is OUTBOUND_FROM when set, else the flow's first `numbers` entry.
Every refusal is a `DialError` whose message says what to change; Twilio's own refusals keep
its code (21211 an invalid `To`, 20003 bad credentials, ...).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException

from engine.calls import urls
from engine.flows.model import Flow
from engine.outbound.numbers import BadNumber, DoNotCall, e164
from engine.outbound.records import (
    TOKEN_PARAM,
    PlacedCall,
    new_token,
    save_pending,
    save_placed,
)
from engine.store import CallStore

log = logging.getLogger(__name__)

VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VARS_BYTES = 4000
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
MACHINE_DETECTION = "DetectMessageEnd"
AUTH_FAILED = 20003


class DialError(Exception):
    """A call that was not placed. `status` is the HTTP status an API answers with (400 bad
    input, 403 do-not-call, 404 unknown flow, 502 Twilio refused or unreachable, 503 not
    configured); `twilio_code` is Twilio's error code when Twilio refused."""

    def __init__(self, message: str, status: int = 400, twilio_code: int | None = None,
                 retry: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.twilio_code = twilio_code
        self.retry = retry  # worth trying again later (Twilio unreachable, 429, >= 500)


@dataclass(frozen=True)
class Placed:
    """What `dial` placed: the call's record and Twilio's first word on it."""

    call: PlacedCall
    status: str


def clean_vars(raw: object) -> dict[str, Any]:
    """`raw` as a call's vars: names like `first_name`, values strings, numbers, booleans or
    null, at most MAX_VARS_BYTES of JSON; DialError otherwise."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise DialError("vars must be an object of names and values")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not VAR_NAME.fullmatch(name):
            raise DialError(f"var name {str(name)[:40]!r} must be letters, digits and _, "
                            f"starting with a letter")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise DialError(f"var {name}: a value must be text, a number or true/false")
        values[name] = value
    if len(json.dumps(values)) > MAX_VARS_BYTES:
        raise DialError(f"vars are over {MAX_VARS_BYTES} bytes of JSON")
    return values


def parse_var(text: str) -> tuple[str, str]:
    """`name=value` of `--var` as a pair; DialError without `=`."""
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise DialError(f"--var {text[:40]!r}: write name=value")
    return name.strip(), value


def twilio_refusal(error: TwilioRestException, to: str) -> DialError:
    """Twilio's refusal of a call as a DialError naming its code and what to do."""
    # The SDK prefixes Twilio's own message with what it was doing.
    said = (error.msg or "no reason given").removeprefix("Unable to create record: ")
    if error.code == AUTH_FAILED or error.status == 401:
        message = (f"Twilio refused the credentials (code {error.code}): check "
                   f"TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    else:
        message = f"Twilio refused the call to {to}: {said} (code {error.code})"
    retry = error.status == 429 or error.status >= 500
    return DialError(message, 502, error.code, retry=retry)


class Dialer:
    """Places calls on the flows `flows()` gives, from `from_number` (OUTBOUND_FROM; '' for
    each flow's first `numbers`), with webhooks on `base_url` (PUBLIC_BASE_URL), through the
    Twilio client `client()` makes."""

    def __init__(self, client: Callable[[], Any], store: CallStore,
                 flows: Callable[[], Mapping[str, Flow]], *, base_url: str = "",
                 from_number: str = "", do_not_call: DoNotCall | None = None) -> None:
        self.client = client
        self.store = store
        self.flows = flows
        self.base_url = base_url
        self.from_number = from_number
        self.do_not_call = do_not_call or DoNotCall()

    def caller_id(self, flow: Flow) -> str:
        """The number `flow`'s calls are placed from; DialError when there is none."""
        if self.from_number:
            try:
                return e164(self.from_number, "OUTBOUND_FROM")
            except BadNumber as error:
                raise DialError(str(error), 503) from None
        if flow.numbers:
            return flow.numbers[0]
        raise DialError(f"no number to call from: set OUTBOUND_FROM, or give flow "
                        f"'{flow.id}' its `numbers`", 503)

    def check(self, flow_id: str, to: str, vars_: object = None,
              base_url: str = "") -> tuple[Flow, str, str, dict[str, Any], str]:
        """What `dial` would place, every check done, nothing placed: the flow, the number
        to call (E.164), the number called from, the vars, the webhooks' base URL."""
        flow = self.flows().get(flow_id) if isinstance(flow_id, str) else None
        if flow is None:
            known = ", ".join(sorted(self.flows())) or "none"
            raise DialError(f"unknown flow {str(flow_id)[:60]!r}; flows: {known}", 404)
        try:
            number = e164(to, "to")
        except BadNumber as error:
            raise DialError(str(error)) from None
        if number in self.do_not_call:
            raise DialError(f"{number} is on the do-not-call list: not called", 403)
        values = clean_vars(vars_)
        base = (self.base_url or base_url).rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise DialError("PUBLIC_BASE_URL is not set: Twilio needs an absolute URL to "
                            "fetch the call's TwiML from", 503)
        return flow, number, self.caller_id(flow), values, base

    def dial(self, flow_id: str, to: str, vars_: object = None, *, by: str = "",
             base_url: str = "") -> Placed:
        """Place one call; DialError, with nothing placed, when it cannot be."""
        flow, number, caller_id, values, base = self.check(flow_id, to, vars_, base_url)
        placed = PlacedCall(flow=flow.id, to=number, from_=caller_id, vars=values, by=by,
                            token=new_token(), machine_detection=bool(flow.on_machine))
        save_pending(self.store, placed)
        query = urlencode({"flow": flow.id, TOKEN_PARAM: placed.token})
        options: dict[str, Any] = {
            "to": number, "from_": caller_id, "url": f"{base}{urls.INCOMING_CALL}?{query}",
            "method": "POST", "status_callback": f"{base}{urls.CALL_STATUS}",
            "status_callback_method": "POST", "status_callback_event": list(STATUS_EVENTS),
        }
        if flow.on_machine:
            options.update(machine_detection=MACHINE_DETECTION, async_amd="true",
                           async_amd_status_callback=f"{base}{urls.MACHINE_RESULT}",
                           async_amd_status_callback_method="POST")
        try:
            call = self.client().calls.create(**options)
        except TwilioRestException as error:
            refusal = twilio_refusal(error, number)
            log.warning("%s (HTTP %s)", refusal.message, error.status)
            raise refusal from None
        except DialError:
            raise
        except (TwilioException, requests.RequestException, OSError) as error:
            message = f"could not reach Twilio to call {number}: {type(error).__name__}"
            log.warning("%s: %s", message, error)
            raise DialError(message, 502, retry=True) from None
        except RuntimeError as error:  # the REST wrapper's NotConfigured
            raise DialError(str(error), 503) from None
        placed = replace(placed, call_sid=str(call.sid))
        save_placed(self.store, placed)
        log.info("call %s placed to %s on flow %s (by %s)", placed.call_sid, number, flow.id,
                 by or "?")
        return Placed(placed, str(call.status or "queued"))
