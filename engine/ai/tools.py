"""An ai node's tools: offered to the model as functions, and run when it calls them.

`tool_specs(node)` is what the model is offered besides the exits. `ToolRunner.answer` takes the
tool calls of one model round and gives the messages that answer them: the assistant's calls and
one `tool` message each, holding the API's JSON answer, or an error the model can act on. A call
whose arguments are not JSON or do not fit the tool's `parameters` is answered with what is
wrong and never sent; a request that fails is answered with its reason. What the model reads
never holds a secret: `${NAME}` is expanded by the HTTP client alone, which also takes the
values back out of answers and details. Every request is recorded on the call as `call.http`
(with the tool's name); a refused call as `call.error` of kind `tool`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from engine.actions.exchange import HttpFailure, HttpPort, HttpRequest
from engine.ai.chat_stream import ToolCall
from engine.flows.model import AiNode, Flow, Tool
from engine.runtime.context import TemplateFailure, values
from engine.runtime.requests import render_request
from engine.runtime.state import CallState
from engine.store import NewEvent

log = logging.getLogger(__name__)

MAX_TOOL_ROUNDS = 3
"""Rounds of tool calls one reply may make; the next round is asked to answer in words."""
MAX_ANSWER_CHARS = 4000
"""Characters of an API's JSON answer the model reads at most (a phone reply needs far less)."""


class EventWriter(Protocol):
    """Where tool calls are recorded (engine.calls.EventRecorder)."""

    def record(self, call_sid: str, events: Sequence[NewEvent], at: float) -> None:
        """Store `events` of `call_sid`, stamped `at`."""


def tool_specs(node: AiNode) -> list[dict[str, Any]]:
    """The node's tools as function tools: name, description and the JSON Schema of the
    arguments (`Tool.schema`)."""
    return [{"type": "function", "function": {"name": tool.name, "description": tool.description,
                                              "parameters": tool.schema()}}
            for tool in node.tools]


def _error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


class ToolRunner:
    """Runs the tool calls of a model round through the HTTP port (see the module)."""

    def __init__(self, http: HttpPort, recorder: EventWriter,
                 clock: Callable[[], float] = time.time) -> None:
        self.http = http
        self.recorder = recorder
        self.clock = clock

    def answer(self, flow: Flow, node: AiNode, state: CallState,
               calls: Mapping[int, ToolCall], text: str, deadline: float | None
               ) -> list[dict[str, Any]] | None:
        """The messages that answer this round's calls (the assistant's, with `text` it said
        before them, then one `tool` message a call), each request sent by `deadline` (a
        `time.monotonic()` time); None when no call names one of the node's tools (an exit,
        or nothing), so the reply is over."""
        tools = {tool.name: tool for tool in node.tools}
        if not any(call.name in tools for call in calls.values()):
            return None
        made: list[dict[str, Any]] = []
        answers: list[dict[str, Any]] = []
        for index, call in sorted(calls.items()):
            call_id = call.id or f"call_{index}"
            made.append({"id": call_id, "type": "function",
                         "function": {"name": call.name, "arguments": call.arguments or "{}"}})
            tool = tools.get(call.name)
            content = (self._run(flow, node, state, tool, call.arguments, deadline)
                       if tool is not None else _error(f"{call.name!r} is not a tool here"))
            answers.append({"role": "tool", "tool_call_id": call_id, "content": content})
        return [{"role": "assistant", "content": text or None, "tool_calls": made}, *answers]

    def _run(self, flow: Flow, node: AiNode, state: CallState, tool: Tool, raw: str,
             deadline: float | None) -> str:
        try:
            arguments = json.loads(raw or "{}")
        except ValueError:
            return self._refuse(state, node, tool, "the arguments are not JSON")
        problems = sorted(Draft202012Validator(tool.schema()).iter_errors(arguments),
                          key=lambda error: list(error.absolute_path))
        if problems:
            where = ".".join(str(part) for part in problems[0].absolute_path)
            return self._refuse(state, node, tool, f"{where + ': ' if where else ''}"
                                                   f"{problems[0].message}")
        context = {**values(flow, state, self.clock()), "args": arguments}
        try:
            rendered = render_request(tool.request, context,
                                      f"nodes.{node.id}.tools.{tool.name}.request")
        except TemplateFailure as failure:
            return self._refuse(state, node, tool, f"the request did not render: {failure}")
        request = HttpRequest(rendered.method, rendered.url, rendered.headers, rendered.body,
                              rendered.timeout)
        try:
            answer = self.http.send(request, deadline)
        except HttpFailure as failure:
            self._record(state, [NewEvent("call.http", {
                "node": node.id, "tool": tool.name, **failure.exchange.as_dict()})])
            return _error(f"the request failed ({failure.reason}); tell the caller you could "
                          f"not do it now")
        self._record(state, [NewEvent("call.http", {
            "node": node.id, "tool": tool.name, **answer.exchange.as_dict()})])
        text = json.dumps(answer.data, ensure_ascii=False)
        return text if len(text) <= MAX_ANSWER_CHARS else text[:MAX_ANSWER_CHARS] + " …(cut)"

    def _refuse(self, state: CallState, node: AiNode, tool: Tool, problem: str) -> str:
        """A call that is not sent: recorded, and answered to the model with what is wrong."""
        self._record(state, [NewEvent("call.error", {
            "node": node.id, "kind": "tool", "tool": tool.name,
            "detail": f"{tool.name}: {problem}"[:300]})])
        return _error(f"invalid arguments for {tool.name}: {problem}; nothing was done. Call it "
                      f"again with arguments that fit its parameters, or ask the caller.")

    def _record(self, state: CallState, events: list[NewEvent]) -> None:
        try:
            self.recorder.record(state.call_sid, events, self.clock())
        except Exception:  # the record is wanted, but the reply must go on
            log.exception("call %s: could not record a tool call", state.call_sid)
