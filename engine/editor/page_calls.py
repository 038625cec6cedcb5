"""A call rung from the editor's page, kept between the caller's moves in the shared store.

The page's caller is a simulated Twilio (engine/simulator.py). Between two moves it is written
to the store as JSON (what was heard, what the call waits for with the TwiML verbs it waits on,
the caller's form fields), so the next move may be served by any server process, as Twilio's
own webhooks are. The blob is kept under the `stream:` prefix, which the store expires like a
streamed reply (an hour in Redis; pruned by age with them otherwise): a page's call needs no
keeping once nobody is moving it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any

from engine.simulator import Heard, SimulatedCall, Transport, Waiting

__all__ = ["PageCall", "call_key", "dump_call", "load_call"]


def call_key(call_sid: str) -> str:
    """The store blob holding the page's call `call_sid`."""
    return f"stream:editor-call:{call_sid}"


@dataclass
class PageCall:
    """A call of the page: the simulated caller, the flow it rang, and whether its end (the
    status callback) was sent."""

    call: SimulatedCall
    flow_id: str
    closed: bool = False

    def close_if_ended(self) -> None:
        """After a `<Hangup>`, send the status callback Twilio would, once: the call ends."""
        if self.call.ended and not self.closed:
            self.closed = True
            self.call.hang_up()


def _xml(element: ElementTree.Element | None) -> str | None:
    return ElementTree.tostring(element, encoding="unicode") if element is not None else None


def dump_call(page_call: PageCall) -> bytes:
    """The call as the store keeps it."""
    call, waiting = page_call.call, page_call.call.waiting
    return json.dumps({
        "flow": page_call.flow_id, "closed": page_call.closed, "call_sid": call.call_sid,
        "base_url": call.base_url, "params": call.params, "started_at": call.started_at,
        "heard": [[item.text, item.voice, item.audio_url] for item in call.heard],
        "dialed": call.dialed, "recordings": call.recordings,
        "waiting": {"kind": waiting.kind, "action": waiting.action, "verb": _xml(waiting.verb),
                    "rest": [_xml(item) for item in waiting.rest],
                    "base_url": waiting.base_url},
    }).encode()


def load_call(raw: bytes, transport: Transport, auth_token: str,
              clock: Any = None) -> PageCall:
    """The call `dump_call` kept, driving `transport` again; ValueError for a damaged blob."""
    try:
        found = json.loads(raw)
        waiting = found["waiting"]
        call = SimulatedCall(transport, found["base_url"], auth_token,
                             call_sid=found["call_sid"], clock=clock)
        call.params = dict(found["params"])
        call.started_at = found["started_at"]
        call.heard = [Heard(text, voice, audio) for text, voice, audio in found["heard"]]
        call.dialed = list(found["dialed"])
        call.recordings = int(found["recordings"])
        call.waiting = Waiting(
            waiting["kind"], waiting["action"],
            ElementTree.fromstring(waiting["verb"]) if waiting["verb"] else None,
            [ElementTree.fromstring(item) for item in waiting["rest"]], waiting["base_url"])
        return PageCall(call, str(found["flow"]), bool(found["closed"]))
    except (KeyError, TypeError, ValueError, ElementTree.ParseError) as error:
        raise ValueError(f"the page's call could not be read back: {error}") from error
