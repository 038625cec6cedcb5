"""Where Twilio posts next: the voice routes' paths, and the callback URLs of a step.

The paths are defined here once: the Flask routes (engine/web/voice.py) are registered on them
and the TwiML the call service answers points at them. Each callback carries the call's step
(`?step=N`), so an answer to a question the call has moved past is recognised as stale.

A relay node's WebSocket URL must be absolute: it is PUBLIC_BASE_URL's, or else the base of the
webhook being answered (`answering_base`, set by the web shell for each request), with
`https`→`wss` and `http`→`ws`.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from engine.twiml import Callbacks

INCOMING_CALL = "/api/incoming-call"
INCOMING_CALL_FALLBACK = "/api/incoming-call/fallback"
CALL_STATUS = "/api/call-status"
GATHER_INPUT = "/api/voice/input"
SILENCE = "/api/voice/silence"
DIAL_RESULT = "/api/voice/dial"
RECORDING = "/api/voice/recording"
RESUME = "/api/voice/resume"
RELAY_DONE = "/api/voice/relay"
"""The `<Connect action>` of a relay session: Twilio posts it when the session ends."""
RELAY_SOCKET = "/api/relay/socket"
"""The ConversationRelay WebSocket."""
MACHINE_RESULT = "/api/voice/amd"
"""An outbound call's `AsyncAmdStatusCallback`: Twilio posts what answered (`AnsweredBy`)."""
MACHINE = "/api/voice/machine"
"""Where a call answered by a machine is redirected (REST `Url`): it takes the `machine` edge."""

answering_base: ContextVar[str] = ContextVar("answering_base", default="")
"""The scheme and host of the request being answered (`https://example.com`), when the shell
knows it: what a relay WebSocket URL is made from without PUBLIC_BASE_URL."""


def socket_base(base: str) -> str:
    """`base` with its scheme for a WebSocket: `https`→`wss`, `http`→`ws`."""
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://")
    if base.startswith("http://"):
        return "ws://" + base.removeprefix("http://")
    return base


@dataclass(frozen=True)
class CallbackUrls:
    """Callback URLs under `base` (PUBLIC_BASE_URL); with no base they are paths, which Twilio
    resolves against the URL of the webhook it just called."""

    base: str = ""

    def for_step(self, step: int) -> Callbacks:
        """The callbacks of the answer that takes the call to `step`."""
        prefix, query = self.base.rstrip("/"), f"?step={step}"
        sockets = socket_base((self.base or answering_base.get()).rstrip("/"))
        return Callbacks(input=f"{prefix}{GATHER_INPUT}{query}",
                         silence=f"{prefix}{SILENCE}{query}",
                         dial=f"{prefix}{DIAL_RESULT}{query}",
                         recording=f"{prefix}{RECORDING}{query}",
                         resume=f"{prefix}{RESUME}{query}",
                         relay=f"{sockets}{RELAY_SOCKET}{query}",
                         relay_done=f"{prefix}{RELAY_DONE}{query}")
