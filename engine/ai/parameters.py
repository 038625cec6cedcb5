"""Which sampling and length parameters a model takes: by model family, and as learned from a
server's refusals.

OpenAI's reasoning models (o1, o3, o4-mini, ... and the gpt-5 family) refuse `max_tokens` (HTTP
400 `unsupported_parameter`: "Use 'max_completion_tokens' instead.") and any `temperature` but
the default (400 `unsupported_value`); other servers (Ollama) read only `max_tokens`. So:

- `ModelParameters.fit` shapes a request for its model: for those families `max_tokens` is
  sent as `max_completion_tokens` and `temperature` is left out;
- a model the rules do not know (an Azure deployment's own name, a proxy's alias) may still
  refuse one: `ModelParameters.after_refusal` reads the 400 (its `param`, or the parameter its
  message names), returns the request without it (or renamed, for the token limit), and
  remembers it for that endpoint and model for the rest of the process, so only the first call
  pays the round trip.

Only the parameters Phoney sends of its own accord are adjusted: a refusal of anything else
(`tools`, `messages`) is a real error and stays one.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

import openai

RENAMED = {"max_tokens": "max_completion_tokens", "max_completion_tokens": "max_tokens"}
"""A refused token limit is sent under its other name."""
DROPPABLE = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})
"""A refused sampling parameter is left out: the model's default is fine for a phone reply."""
MAX_REFUSALS = 3
"""Retries a request may take after refusals (one per parameter Phoney sends)."""

_REASONING = re.compile(r"^(o\d|gpt-5)")
_NAMED = re.compile(r"Unsupported (?:parameter|value): '([A-Za-z_]+)'")


def reasoning_family(model: str) -> bool:
    """Whether `model` is of OpenAI's reasoning families (o1, o3, o4-mini, gpt-5, gpt-5-mini
    ...), by its name after any provider prefix (`openai/o3-mini`)."""
    return bool(_REASONING.match(model.rsplit("/", 1)[-1].lower()))


def refused_parameter(error: BaseException) -> str | None:
    """The request parameter a 400 answer says the model does not support, or None: the
    error body's `param` when its `code` says so, else the one its message names."""
    if not isinstance(error, openai.BadRequestError):
        return None
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]  # the SDK gives the `error` object; a proxy may give it whole
    if isinstance(body, dict):
        param, code = body.get("param"), body.get("code")
        if isinstance(param, str) and code in ("unsupported_parameter", "unsupported_value"):
            return param
    found = _NAMED.search(str(error.message))
    return found.group(1) if found else None


class ModelParameters:
    """The process's rules for shaping a model request (see the module docstring); thread-safe.
    `PROCESS_PARAMETERS` is the one every responder shares unless handed another."""

    def __init__(self) -> None:
        self._refused: dict[tuple[str, str], frozenset[str]] = {}
        self._lock = threading.Lock()

    def refused(self, endpoint: str, model: str) -> frozenset[str]:
        """The parameters `model` at `endpoint` has refused in this process."""
        with self._lock:
            return self._refused.get((endpoint, model), frozenset())

    def fit(self, endpoint: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """`request` as its model takes it: the family's rules, then what it has refused."""
        shaped = dict(request)
        model = str(shaped.get("model", ""))
        if reasoning_family(model):
            _rename(shaped, "max_tokens", "max_completion_tokens")
            shaped.pop("temperature", None)
        refused = self.refused(endpoint, model)
        for parameter in sorted(refused):
            _adjust(shaped, parameter, refused)
        return shaped

    def after_refusal(self, endpoint: str, request: Mapping[str, Any],
                      error: BaseException) -> dict[str, Any] | None:
        """When `error` is a 400 refusing a parameter of `request` that can go: the request
        without it (renamed, for the token limit), remembered for this endpoint and model.
        None otherwise: the error stands."""
        parameter = refused_parameter(error)
        if parameter is None or parameter not in request or \
                (parameter not in RENAMED and parameter not in DROPPABLE):
            return None
        model = str(request.get("model", ""))
        with self._lock:
            key = (endpoint, model)
            refused = self._refused[key] = self._refused.get(key, frozenset()) | {parameter}
        retry = dict(request)
        _adjust(retry, parameter, refused)
        return retry


def _rename(request: dict[str, Any], old: str, new: str) -> None:
    if old in request:
        value = request.pop(old)
        request.setdefault(new, value)


def _adjust(request: dict[str, Any], parameter: str, refused: frozenset[str]) -> None:
    """`request` without `parameter`: a token limit under its other name (unless that one is
    in `refused` too: then with no limit), anything else left out."""
    other = RENAMED.get(parameter)
    if other is not None and other not in refused:
        _rename(request, parameter, other)
    else:
        request.pop(parameter, None)


PROCESS_PARAMETERS = ModelParameters()
