"""Where Twilio posts next: the voice routes' paths, and the callback URLs of a step.

The paths are defined here once: the Flask routes (engine/web/voice.py) are registered on them
and the TwiML the call service answers points at them. Each callback carries the call's step
(`?step=N`), so an answer to a question the call has moved past is recognised as stale.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class CallbackUrls:
    """Callback URLs under `base` (PUBLIC_BASE_URL); with no base they are paths, which Twilio
    resolves against the URL of the webhook it just called."""

    base: str = ""

    def for_step(self, step: int) -> Callbacks:
        """The callbacks of the answer that takes the call to `step`."""
        prefix, query = self.base.rstrip("/"), f"?step={step}"
        return Callbacks(input=f"{prefix}{GATHER_INPUT}{query}",
                         silence=f"{prefix}{SILENCE}{query}",
                         dial=f"{prefix}{DIAL_RESULT}{query}",
                         recording=f"{prefix}{RECORDING}{query}",
                         resume=f"{prefix}{RESUME}{query}")
