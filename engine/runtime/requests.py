"""Requests as a call sends them: a declared `Request` rendered over the call's template values.

Pure: the templates are rendered (a tool's also see `args`, the model's arguments) and the body
is written as JSON; `${NAME}` references are left in for the sender, which alone reads the
environment (engine/actions/secrets.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.flows.model import Request
from engine.runtime.context import TemplateFailure, render_text
from engine.runtime.templates import is_template


@dataclass(frozen=True)
class Rendered:
    """A request ready to send: method, URL, headers and body (`${NAME}` still in)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str | None
    timeout: float


def _text(text: str, context: dict[str, Any], where: str) -> str:
    return render_text(text, context, where) if is_template(text) else text.strip()


def _json_value(value: Any, context: dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        return _text(value, context, where)
    if isinstance(value, Mapping):
        return {key: _json_value(item, context, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item, context, f"{where}[{index}]")
                for index, item in enumerate(value)]
    return value


def render_request(request: Request, context: dict[str, Any], where: str) -> Rendered:
    """`request` with its templates rendered over `context`; TemplateFailure naming the field
    (under `where`) when one fails. A string body is sent as it renders, any other as JSON."""
    url = _text(request.url, context, f"{where}.url")
    headers = tuple((name, _text(value, context, f"{where}.headers.{name}"))
                    for name, value in request.headers.items())
    body: str | None = None
    if isinstance(request.body, str):
        body = _text(request.body, context, f"{where}.body")
    elif request.body is not None:
        try:
            body = json.dumps(_json_value(request.body, context, f"{where}.body"),
                              ensure_ascii=False)
        except (TypeError, ValueError) as error:  # a value YAML gave that JSON cannot hold
            raise TemplateFailure(f"{where}.body", error) from error
    return Rendered(request.method, url, headers, body, request.timeout)
