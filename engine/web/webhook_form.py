"""A Twilio webhook's form, read once and within bounds, before anything else looks at it.

Twilio's voice webhooks are a few kB of `application/x-www-form-urlencoded` fields. What reaches
a webhook route is read here, in this order, so that a stranger's request costs little:

1. the body is refused (413) past `MAX_WEBHOOK_BYTES`, by its Content-Length before a byte of it
   is read, or as soon as a body without one grows past the limit;
2. it is split into fields by `urllib.parse.parse_qsl`, refused (413) past `MAX_WEBHOOK_FIELDS`
   (werkzeug's form parser costs several times as much for a webhook's 20 fields, and a form of
   300 000 pairs had cost seconds of CPU before its 403);
3. the signature is checked over every field (the caller, engine/web/voice.py);
4. only the fields a webhook reads (`KNOWN_FIELDS`) are kept, first value of each. Twilio's
   signed string concatenates names and values with no separator, so `Fro=m+1555…` signs the
   same as `From=+1555…`: a request whose boundaries were moved still validates. Keeping only
   known names means a moved boundary can only drop a field (`Fro` is not read), never turn
   one field's value into another's.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request

Fields = list[tuple[str, str]]
"""A form's fields in the order sent, a name as often as it was sent."""

MAX_WEBHOOK_BYTES: Final = 64 * 1024
"""A webhook body's limit: Twilio's are 1-4 kB (a long SpeechResult included)."""

MAX_WEBHOOK_FIELDS: Final = 200
"""A webhook's field limit: Twilio sends about 20 to 40."""

KNOWN_FIELDS: Final = frozenset({
    # every voice webhook (https://www.twilio.com/docs/voice/twiml#request-parameters)
    "CallSid", "AccountSid", "From", "To", "CallStatus", "ApiVersion", "Direction",
    "ForwardedFrom", "CallerName", "ParentCallSid", "CallToken",
    "FromCity", "FromState", "FromZip", "FromCountry",
    "ToCity", "ToState", "ToZip", "ToCountry",
    # <Gather>
    "SpeechResult", "Confidence", "Digits", "FinishedOnKey",
    # <Dial> action
    "DialCallStatus", "DialCallDuration", "DialCallSid",
    # <Record> action
    "RecordingUrl", "RecordingDuration", "RecordingSid",
    # status callback
    "CallDuration", "Timestamp", "SequenceNumber", "CallbackSource",
    # answering machine detection (outbound calls)
    "AnsweredBy", "MachineDetectionDuration",
    # <Connect action> after a ConversationRelay session
    "SessionId", "SessionStatus", "SessionDuration", "HandoffData",
})
"""The fields a webhook may read; any other is signed over and then dropped."""


class TooManyFields(RequestEntityTooLarge):
    """413: the form has more fields than any webhook sends."""

    description = f"A webhook has at most {MAX_WEBHOOK_FIELDS} fields."


def read_fields(request: Request) -> Fields:
    """Every field of the webhook's form, in order (for the signature check), read from a body
    of at most MAX_WEBHOOK_BYTES with at most MAX_WEBHOOK_FIELDS fields; raises
    RequestEntityTooLarge (413) past either. Percent-escapes are decoded as UTF-8 with
    replacement characters for bad bytes, as werkzeug's own form parser does."""
    request.max_content_length = MAX_WEBHOOK_BYTES  # werkzeug checks Content-Length first
    body = request.get_data(cache=True)
    if len(body) > MAX_WEBHOOK_BYTES:  # a body with no Content-Length, cut at the limit + 1
        raise RequestEntityTooLarge()
    try:
        return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                         encoding="utf-8", errors="replace",
                         max_num_fields=MAX_WEBHOOK_FIELDS)
    except ValueError:  # "Max number of fields exceeded"
        raise TooManyFields() from None


def known_fields(fields: Fields) -> dict[str, str]:
    """The first value of each field in KNOWN_FIELDS (what the routes read)."""
    known: dict[str, str] = {}
    for name, value in fields:
        if name in KNOWN_FIELDS and name not in known:
            known[name] = value
    return known
