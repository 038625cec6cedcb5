"""Model and speech failures sorted into the flow language's error kinds.

`network`: the request did not get a proper answer (connection errors, timeouts, 5xx);
`rate_limit`: HTTP 429, with the server's Retry-After when it sends one;
`ai_failure`: an answer we cannot use (other 4xx, a body that is not JSON, an empty reply).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import openai


@dataclass(frozen=True)
class Classified:
    kind: str
    detail: str
    retry_after: float = 0.0


def _retry_after(error: openai.APIStatusError) -> float:
    raw = error.response.headers.get("retry-after", "") if error.response is not None else ""
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 0.0


def classify(error: BaseException) -> Classified:
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
