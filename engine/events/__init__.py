"""Live events: the wire payload, the background publisher, the Pusher sink and the alert sink.

Events live in the store (written with the step that caused them); this package only reads and
delivers them. Server-sent events are served from the store too (engine/web/events_api.py).
"""

from engine.events.alerts import DEFAULT_KINDS, AlertSink, parse_kinds
from engine.events.payload import MAX_DATA_BYTES, TRIM_MARKER, payload, utf8_size
from engine.events.publisher import Lease, Publisher, Rejected, Sink, SinkStats
from engine.events.pusher_sink import (
    ChannelNames,
    ErrorInBody,
    PusherSink,
    make_client,
    master_key,
)

__all__ = [
    "DEFAULT_KINDS",
    "MAX_DATA_BYTES",
    "TRIM_MARKER",
    "AlertSink",
    "ChannelNames",
    "ErrorInBody",
    "Lease",
    "Publisher",
    "PusherSink",
    "Rejected",
    "Sink",
    "SinkStats",
    "make_client",
    "master_key",
    "parse_kinds",
    "payload",
    "utf8_size",
]
