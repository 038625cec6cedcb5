"""One streamed chat completion, read off the wire for only what a phone turn uses.

The request goes through the `openai` client (`client.post`, the SDK's documented way to send a
request body of one's own): its auth, base URL, timeouts, retry setting and status handling, so
a 4xx/5xx still raises `openai.RateLimitError`, `openai.APIStatusError` ... with the answer's
headers (Retry-After). What it skips is the SDK's per-turn work a phone turn has no use for:
`chat.completions.create` first walks the whole request through its typed-dict transform (about
3 ms of CPU for a short conversation, more as it grows; our request is plain JSON already), and
its `Stream` builds a pydantic `ChatCompletionChunk` for every event. Here each event is one
`json.loads` and a few dictionary lookups: the text of the first choice, its tool-call name and
argument fragments, and whether it finished.

Failures come out as the SDK would raise them, so `engine.ai.errors.classify` sorts them alike:
- the connection drops or stalls mid-body: `openai.APIConnectionError` / `openai.APITimeoutError`;
- an error event inside an HTTP 200 stream (`data: {"error": ...}` from vLLM and OpenRouter, or
  an `event: error`): `openai.APIError`, as the SDK raises it;
- an event that is not JSON, or not shaped like a chunk: `ValueError` (`json.JSONDecodeError`);
- a stream that ends with neither a `finish_reason` nor `[DONE]` (Ollama's mid-stream failure):
  `openai.APIConnectionError`, since the reply was cut off;
- an HTTP 200 JSON body instead of a stream: its `error` raises `openai.APIError`; a whole
  completion (a server that ignored `stream`) is read as if it were one chunk.

Quirks of OpenAI-compatible servers it accepts: `choices: []` (usage chunks, Azure's filter
results), tool calls without `index` (Gemini: a call per fragment that has a name), `arguments`
as a JSON object (llama.cpp) or null (vLLM), keep-alive comments and data-less events.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from engine.ai import sse

COMPLETIONS = "/chat/completions"
DONE = b"[DONE]"
MAX_JSON_BODY = 1 << 20
"""Bytes of a non-stream JSON answer read at most (an error or a whole completion is small)."""


@dataclass
class ToolCall:
    """A function call as its fragments arrived: `arguments` is the raw JSON text, `id` the
    server's id for it ('' when it gave none), which the answer to a tool call names."""

    name: str = ""
    arguments: str = ""
    id: str = ""


class ChatStream:
    """A streamed chat completion for `request` (keyword arguments of `chat.completions.create`,
    `stream=True` among them). Nothing is sent until `texts()` is iterated; `close()` always."""

    def __init__(self, client: openai.OpenAI, request: Mapping[str, Any]) -> None:
        self.client = client
        self.request = request
        self.tool_calls: dict[int, ToolCall] = {}
        """Tool calls so far, by the index the server gave them (their order)."""
        self.complete = False
        """The stream ended as it should: `[DONE]`, or the body ended after a finish_reason."""
        self.streamed = False
        """The answer came as an event stream (a server may ignore `stream` and answer whole)."""
        self._response: httpx2.Response | None = None
        self._chunks: Iterator[bytes] = iter(())

    def texts(self) -> Iterator[str]:
        """The reply's text, delta by delta, as it arrives; tool calls gather in `tool_calls`.
        Raises as the module's docstring says."""
        # cast_to=httpx2.Response with stream=True: the SDK checks the status (raising its
        # error classes) and hands back the response with its body still unread.
        response = self._response = self.client.post(
            COMPLETIONS, body=dict(self.request), cast_to=httpx2.Response, stream=True)
        try:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                self.streamed = True
                yield from self._events(response)
            else:
                yield from self._whole(response)
        except httpx2.TimeoutException as error:  # what the SDK's own Stream raises for these
            raise openai.APITimeoutError(request=response.request) from error
        except httpx2.TransportError as error:
            raise openai.APIConnectionError(request=response.request) from error

    def close(self) -> None:
        """Release the connection. After a complete stream the rest of the body (the chunked
        encoding's last bytes, after `[DONE]`) is read first, so the connection goes back to
        the client's pool instead of being dropped: a new TLS connection to a real model
        server costs more than a whole turn's parsing. Never raises."""
        response = self._response
        if response is None:
            return
        with contextlib.suppress(Exception):
            if self.complete:
                for _ in self._chunks:  # the body's own iterator: it cannot be started twice
                    pass
        with contextlib.suppress(Exception):
            response.close()

    # -- internals -----------------------------------------------------------------------------

    def _events(self, response: httpx2.Response) -> Iterator[str]:
        finished = False
        self._chunks = response.iter_bytes()
        for kind, data in sse.events(self._chunks):
            if data.startswith(DONE):
                self.complete = True
                return
            chunk = json.loads(data)
            if kind == b"error" or (isinstance(chunk, dict) and chunk.get("error")):
                raise _stream_error(response, chunk)
            text, finish = self._read_chunk(chunk, "delta")
            finished = finished or finish
            if text:
                yield text
        if not finished:
            raise openai.APIConnectionError(
                message="the stream ended with no finish_reason and no [DONE]",
                request=response.request)
        self.complete = True

    def _whole(self, response: httpx2.Response) -> Iterator[str]:
        """An HTTP 200 answer that is not a stream: an error, or a whole completion."""
        body = b""
        for piece in response.iter_bytes():
            body += piece
            if len(body) > MAX_JSON_BODY:
                raise ValueError("the model's answer is too long for a completion")
        value = json.loads(body)
        error = value[0] if isinstance(value, list) and value else value  # Gemini: a list
        if isinstance(error, dict) and error.get("error"):
            raise _stream_error(response, error)
        text, _ = self._read_chunk(value, "message")
        self.complete = True
        if text:
            yield text

    def _read_chunk(self, chunk: Any, part: str) -> tuple[str, bool]:
        """(text, finished) of one chunk's first choice (`part` is "delta" in a stream, "message"
        in a whole completion), gathering its tool-call fragments."""
        if not isinstance(chunk, dict):
            raise ValueError("a stream event that is not a JSON object")
        choices = chunk.get("choices")
        if not choices:
            return "", False  # usage, or a content-filter result: nothing to say
        choice = choices[0] if isinstance(choices, list) else None
        if not isinstance(choice, dict):
            raise ValueError("a stream event whose choices are not objects")
        delta = choice.get(part) or {}
        if not isinstance(delta, dict):
            raise ValueError(f"a stream event whose {part} is not an object")
        calls = delta.get("tool_calls")
        if calls:
            self._add_tool_calls(calls)
        text = delta.get("content")
        return (text if isinstance(text, str) else ""), bool(choice.get("finish_reason"))

    def _add_tool_calls(self, calls: Any) -> None:
        if not isinstance(calls, list):
            raise ValueError("a stream event whose tool_calls are not a list")
        for call in calls:
            if not isinstance(call, dict):
                continue
            function = call.get("function")
            function = function if isinstance(function, dict) else {}
            name = function.get("name")
            index = call.get("index")
            if not isinstance(index, int):
                # Gemini leaves `index` out and sends each call whole: a fragment with a name
                # starts a new call, one without continues the last.
                last = max(self.tool_calls, default=-1)
                index = last + 1 if name or last < 0 else last
            slot = self.tool_calls.setdefault(index, ToolCall())
            if isinstance(call.get("id"), str) and not slot.id:
                slot.id = call["id"]
            if isinstance(name, str):
                slot.name += name
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                slot.arguments += arguments
            elif isinstance(arguments, (dict, list)):  # llama.cpp: the arguments as JSON
                slot.arguments += json.dumps(arguments)


def _stream_error(response: httpx2.Response, value: Any) -> openai.APIError:
    """The `openai.APIError` the SDK raises for an error inside a 200 answer."""
    error = value.get("error") if isinstance(value, dict) else None
    if error is None:  # an `event: error` whose data is the error itself
        error = value
    message = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message, response.request, body=error)
