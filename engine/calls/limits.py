"""Limits that keep one caller, or one call, from running up the bill (denial of wallet).

- Calls per caller: at most N new calls from one `From` number per window (CALLER_CALL_LIMIT,
  default 20/hour), counted in the store (`incr_window`), so every server process sees the same
  count. A caller over it hears a short refusal and is hung up, and a `call.error` event of kind
  `rate_limit_caller` is recorded. Callers that send no number (anonymous, withheld) share one
  count. A store that cannot count lets the call through: the limit must not take the line down.
- Live calls: at most MAX_LIVE_CALLS (default 100) calls in progress at once, all processes
  together, checked by the store in the write of a new call's first step (`LiveCeiling`), since
  a caller's `From` is easily spoofed and the per-caller count is then no ceiling at all. A call
  over it hears that every line is busy and is hung up, and a `call.error` event of kind
  `rate_limit_live_calls` is recorded. A call stops counting when it ends, or MAX_CALL_SECONDS
  after it started (its end never came: no status callback).
- Model requests: at most MODEL_CALLS_PER_HOUR (default 2000) in a fixed hour, all processes
  together (`incr_window` of MODEL_COUNTER before each request; the offline responder costs
  nothing and is not counted). A request over it is not made: the node gets an `ai_failure` (a
  model failure, so the flow's `on_error` strategy and edges apply, as when the model is down)
  and a `call.error` of kind `model_budget` is recorded. A store that cannot count lets the
  request through.
- Per-call ceilings: MAX_CALL_TURNS (default 100) and MAX_CALL_SECONDS (default 3600) apply to
  every call whose flow sets no `limits` of that kind or a higher one; the call is told goodbye
  and hung up. A flow's own, lower limit still takes its `limits.then` edge first.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import limits as ratelimits

from engine.calls.recorder import EventRecorder
from engine.flows.model import Flow
from engine.runtime.state import (
    Action,
    AskModel,
    AwaitStream,
    CallStarted,
    CallState,
    Emit,
    Event,
    Failed,
    Hangup,
    Heard,
    Say,
    Silence,
    StatusChanged,
)
from engine.store import LIVE_AT_MOST, CallStore, LinesBusy, LiveCeiling, NewEvent, Quota
from engine.twiml import safe_answer

log = logging.getLogger(__name__)

CALLER_REFUSED = ("Sorry, we can't take more calls from your number right now. "
                  "Please try again later. Goodbye.")
LINES_BUSY = ("Sorry, all of our lines are busy right now. Please try again in a few minutes. "
              "Goodbye.")
LIMIT_GOODBYE = "We've reached the limit for this call. Thank you for calling. Goodbye."
MODEL_COUNTER = "model-requests"
"""The store's counter of model requests (MODEL_CALLS_PER_HOUR), shared by every process."""
MODEL_WINDOW = 3600.0
ANONYMOUS = "anonymous"
CALLER_COUNTER = "caller:"
"""The store's counter of one caller's new calls is this and the caller's number."""
OFF = ("off", "none", "0", "false", "no")


@dataclasses.dataclass(frozen=True)
class CallLimits:
    """The server-wide limits: new calls per caller per window, and per-call ceilings."""

    caller_calls: int | None = None  # new calls one caller may make per window; None: no limit
    caller_window: float = 3600.0
    max_turns: int | None = None
    max_seconds: int | None = None
    live_calls: int | None = None  # calls in progress at once, all processes; None: no limit
    model_calls: int | None = None  # model requests per MODEL_WINDOW, all processes


def parse_rate(text: str, setting: str) -> tuple[int, float] | None:
    """`"20/hour"` -> (20, 3600.0); None for "off". ValueError naming the setting otherwise."""
    text = text.strip()
    if text.lower() in OFF:
        return None
    try:
        item = ratelimits.parse(text)
    except ValueError:
        raise ValueError(f"{setting}={text!r}: write a rate such as '20/hour', "
                         f"'5 per minute' or '10 per 30 seconds', or 'off'") from None
    return int(item.amount), float(item.get_expiry())


def parse_ceiling(text: str, setting: str) -> int | None:
    """`"100"` -> 100; None for "off" (or 0). ValueError naming the setting otherwise."""
    text = text.strip()
    if text.lower() in OFF:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{setting}={text!r}: write a whole number, such as 100, "
                         f"or 'off'") from None
    return value or None


def call_limits(caller_call_limit: str, max_turns: int, max_seconds: int,
                max_live_calls: str = "off", model_calls_per_hour: str = "off") -> CallLimits:
    """The limits the settings ask for; 0 (or less) turns a ceiling off."""
    rate = parse_rate(caller_call_limit, "CALLER_CALL_LIMIT")
    return CallLimits(caller_calls=rate[0] if rate else None,
                      caller_window=rate[1] if rate else 3600.0,
                      max_turns=max_turns if max_turns > 0 else None,
                      max_seconds=max_seconds if max_seconds > 0 else None,
                      live_calls=parse_ceiling(max_live_calls, "MAX_LIVE_CALLS"),
                      model_calls=parse_ceiling(model_calls_per_hour, "MODEL_CALLS_PER_HOUR"))


def live_ceiling(limits: CallLimits) -> LiveCeiling | None:
    """The ceiling a new call is committed under, or None when live calls are not limited.

    A call lasts MAX_CALL_SECONDS at the most (the server hangs up then), so one counted longer
    ago lost its end; without that ceiling, Twilio's own longest call."""
    if limits.live_calls is None:
        return None
    return LiveCeiling(limits.live_calls, float(limits.max_seconds or LIVE_AT_MOST))


def mask_number(number: str) -> str:
    """`+15551234567` -> `+1555***4567`: enough to tell callers apart in a log, not to call."""
    if len(number) <= 8:
        return "***"
    return f"{number[:5]}***{number[-4:]}"


def caller_quota(limits: CallLimits, params: Mapping[str, str]) -> Quota | None:
    """The count a new call from this caller makes, or None when callers are not limited."""
    if limits.caller_calls is None:
        return None
    caller = " ".join(params.get("From", "").split())[:64] or ANONYMOUS
    return Quota(f"{CALLER_COUNTER}{caller}", limits.caller_window, limits.caller_calls)


def refuse_caller(store: CallStore, recorder: EventRecorder, quota: Quota, call_sid: str,
                  now: float) -> str | None:
    """Count a call that will not be taken; the refusal TwiML if its caller is over the limit,
    else None. For a caller already at the limit: the call's own step is not worth making."""
    try:
        count = store.incr_window(quota.key, quota.window_seconds)
    except Exception:
        log.exception("call %s: could not count the caller's calls; letting the call through",
                      call_sid)
        return None
    return refusal(recorder, quota, call_sid, count, now) if count > quota.limit else None


def refusal(recorder: EventRecorder, quota: Quota, call_sid: str, count: int,
            now: float) -> str:
    """Record that the caller of `quota` is over it with `count` calls; the refusal TwiML."""
    caller = quota.key.removeprefix(CALLER_COUNTER)
    window = round(quota.window_seconds)
    log.warning("call %s: refused: caller %s has made %d calls within %d s (limit %d)",
                call_sid, mask_number(caller), count, window, quota.limit)
    try:
        recorder.record(call_sid, [NewEvent("call.error", {
            "kind": "rate_limit_caller", "caller": caller, "calls": count,
            "limit": quota.limit, "window": window,
            "detail": f"more than {quota.limit} calls from this caller within {window} s"})],
                        now)
    except Exception:
        log.exception("call %s: could not record the refusal", call_sid)
    return safe_answer(CALLER_REFUSED)


def lines_busy(recorder: EventRecorder, busy: LinesBusy, call_sid: str, now: float) -> str:
    """Record that `call_sid` found every line busy; the refusal TwiML."""
    log.warning("call %s: refused: %d calls are live (MAX_LIVE_CALLS %d)", call_sid,
                busy.live, busy.limit)
    try:
        recorder.record(call_sid, [NewEvent("call.error", {
            "kind": "rate_limit_live_calls", "live": busy.live, "limit": busy.limit,
            "detail": f"{busy.live} calls in progress, at most {busy.limit} at once"})], now)
    except Exception:
        log.exception("call %s: could not record the refusal", call_sid)
    return safe_answer(LINES_BUSY)


class ModelBudget:
    """MODEL_CALLS_PER_HOUR, for the model requests of one webhook: `refuse` counts each one
    and, over the ceiling, answers it instead of the model. Made for each webhook, so that once
    a request was refused the webhook's next ones (the flow's retry or fallback personality)
    are refused without counting again or recording the refusal twice."""

    def __init__(self, store: CallStore, limits: CallLimits, offline: bool) -> None:
        self.store = store
        self.limit = None if offline else limits.model_calls  # the offline responder is free
        self.refused = ""  # the detail of this webhook's refusal, once there was one

    def refuse(self, state: CallState, action: AskModel | AwaitStream,
               now: float) -> tuple[Failed, list[Action]] | None:
        """None when the request may be made (counted); else the model failure to step the
        call with, and the events of the refusal (the first time in this webhook)."""
        if self.limit is None or not isinstance(action, AskModel):
            return None  # more of a streamed reply is no new request
        if self.refused:
            return Failed(now, "ai_failure", self.refused), []
        try:
            count = self.store.incr_window(MODEL_COUNTER, MODEL_WINDOW)
        except Exception:
            log.exception("call %s: could not count the model requests; asking the model",
                          state.call_sid)
            return None
        if count <= self.limit:
            return None
        self.refused = (f"model budget spent: more than {self.limit} model requests within "
                        f"{round(MODEL_WINDOW)} s (MODEL_CALLS_PER_HOUR)")
        log.warning("call %s: model request on '%s' refused: %d within %d s (limit %d)",
                    state.call_sid, action.node, count, round(MODEL_WINDOW), self.limit)
        return Failed(now, "ai_failure", self.refused), [Emit("call.error", {
            "kind": "model_budget", "node": action.node, "requests": count,
            "limit": self.limit, "window": round(MODEL_WINDOW), "detail": self.refused})]


def over_ceiling(flow: Flow, state: CallState, event: Event,
                 limits: CallLimits) -> tuple[CallState, list[Action]] | None:
    """The goodbye when `event` takes the call past a server-wide ceiling, else None.

    Checked before the step, so a call over its ceiling never asks the model again.
    """
    if state.ended or isinstance(event, (CallStarted, StatusChanged)):
        return None
    own = flow.limits
    listened = isinstance(event, (Heard, Silence))
    turn = state.turn + (1 if listened else 0)
    reason, limit = "", 0
    turns = limits.max_turns
    if turns is not None and (own is None or own.max_turns is None or own.max_turns > turns) \
            and turn > turns:
        reason, limit = "max_turns", turns
    seconds = limits.max_seconds
    if not reason and seconds is not None and (
            own is None or own.max_seconds is None or own.max_seconds > seconds) \
            and event.now - state.started_at > seconds:
        reason, limit = "max_seconds", seconds
    if not reason:
        return None
    actions: list[Action] = []
    if isinstance(event, Heard):
        actions.append(Emit("call.transcript", {"node": state.node, "speech": event.speech,
                                                "digits": event.digits,
                                                "confidence": event.confidence, "turn": turn}))
    elif isinstance(event, Silence):
        actions.append(Emit("call.transcript", {"node": state.node, "speech": "", "digits": "",
                                                "silence": True, "turn": turn}))
    actions += [
        Emit("call.node", {"node": state.node, "source": state.node, "edge": "limit",
                           "reason": reason, "limit": limit, "by": "server"}),
        # Twilio's voice: a static line no flow declares, so nothing synthesises it in advance.
        Say(LIMIT_GOODBYE, state.personality or flow.personality, flow.language,
            twilio_voice=True),
        Hangup(),
    ]
    ended = dataclasses.replace(state, step=state.step + 1, turn=turn, ended=True, pending=None,
                                pending_digits="", stream=None, hold_until=0.0)
    log.info("call %s: server-wide %s (%d) reached; saying goodbye", state.call_sid, reason,
             limit)
    return ended, actions
