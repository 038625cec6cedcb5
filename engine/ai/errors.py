"""Model and speech failures sorted into the flow language's error kinds.

`network`: the request did not get a proper answer (connection errors, timeouts, 5xx);
`rate_limit`: HTTP 429, with the server's wait when it gives one (Retry-After, retry-after-ms,
  or Gemini's retryDelay in the body);
`ai_failure`: an answer we cannot use (other 4xx, a body that is not JSON, an empty reply).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import openai


@dataclass(frozen=True)
class Classified:
    """A failure as the flow sees it: its error `kind`, a short `detail` for the call's
    `call.error` event, and for a rate limit the server's wait in seconds (0: it gave none)."""

    kind: str  # "network", "rate_limit" or "ai_failure"
    detail: str  # at most 300 characters
    retry_after: float = 0.0


def _retry_after(error: openai.APIStatusError) -> float:
    """The server's wait in seconds, as the SDK reads it (`retry-after-ms`, then `retry-after`
    in seconds or as an HTTP date), else Gemini's `retryDelay` in the error body; 0 if none."""
    headers = error.response.headers if error.response is not None else {}
    try:
        return max(0.0, float(headers.get("retry-after-ms", "")) / 1000)
    except ValueError:
        pass
    raw = headers.get("retry-after", "")
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        pass
    return _body_retry_delay(error.body)


def _body_retry_delay(body: object) -> float:
    """Gemini answers a 429 with no Retry-After, its wait in the body:
    `[{"error": {..., "details": [{"retryDelay": "39s"}]}}]` (or the same without the list)."""
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    details = body.get("details") if isinstance(body, dict) else None
    for detail in details if isinstance(details, list) else ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                continue
    return 0.0


def classify(error: BaseException) -> Classified:
    """Sort any exception of a model call into an error kind; never raises.

    HTTP 429 is `rate_limit`, with the server's wait; 408, 5xx, timeouts and connection errors
    are `network`; other 4xx, answers that do not parse and any other exception are `ai_failure`.
    """
    name = type(error).__name__
    if isinstance(error, openai.RateLimitError):
        return Classified("rate_limit", f"429 from the model: {error.message}"[:300],
                          _retry_after(error))
    if isinstance(error, openai.APIStatusError):
        kind = "network" if error.status_code >= 500 or error.status_code == 408 \
            else "ai_failure"
        return Classified(kind, f"{error.status_code} from the model: {error.message}"[:300])
    if isinstance(error, (openai.APITimeoutError, openai.APIConnectionError, TimeoutError,
                          ConnectionError)):
        return Classified("network", f"{name}: {error}"[:300])
    if isinstance(error, (json.JSONDecodeError, openai.APIResponseValidationError, ValueError)):
        return Classified("ai_failure", f"unusable answer from the model ({name})")
    return Classified("ai_failure", f"{name}: {error}"[:300])
