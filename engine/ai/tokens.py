"""A model reply read delta by delta, for a conversation that speaks while the model writes.

A ConversationRelay session sends each piece of the reply to Twilio as it arrives, so it reads
the stream itself instead of waiting for sentences (`engine.ai.stream` is the `<Gather>` way).
`TokenReply.deltas()` yields the reply's text as the model streams it; when it is done, `exit`
holds the exit tool the model chose and `failure` what went wrong, sorted into the flow's error
kinds. A request refused for a parameter the model does without is sent again without it
(`engine.ai.parameters`), as for every other reply. When the model calls one of the node's tools,
`run_tools` answers the calls and the model is asked again with the answers, its words going on
in the same reply (at most MAX_TOOL_ROUNDS rounds, the last asked to answer in words). `stop()`
makes the reader stop at the next delta (an interruption: the caller is talking).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

import openai

from engine.ai.chat_stream import ChatStream, ToolCall
from engine.ai.errors import Classified, classify
from engine.ai.parameters import MAX_REFUSALS, ModelParameters
from engine.ai.tools import MAX_TOOL_ROUNDS

ExitChooser = Callable[[Mapping[int, ToolCall]], str | None]
"""The exit a reply's tool calls take (None: none), as the node declares them."""
ToolAnswerer = Callable[[Mapping[int, ToolCall], str], list[dict[str, Any]] | None]
"""The messages answering a round's calls of the node's tools, given them and the text said
before them (engine.ai.tools.ToolRunner.answer); None when no call names a tool."""


class TokenReply:
    """One streamed reply for `request`, read once through `deltas()`."""

    def __init__(self, client: openai.OpenAI, request: dict[str, Any],
                 parameters: ModelParameters, endpoint: str, choose_exit: ExitChooser,
                 run_tools: ToolAnswerer | None = None) -> None:
        self.client = client
        self.request = request
        self.parameters = parameters
        self.endpoint = endpoint
        self.choose_exit = choose_exit
        self.run_tools = run_tools
        self.exit: str | None = None
        self.failure: Classified | None = None
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Stop reading at the next delta; what came stays as it was."""
        self._stopped.set()

    @property
    def stopped(self) -> bool:
        """True once `stop` was called."""
        return self._stopped.is_set()

    def deltas(self) -> Iterator[str]:
        """The reply's text as it arrives; `exit` or `failure` are set when it ends."""
        request = self.request
        for round_ in range(MAX_TOOL_ROUNDS + 1):
            found = yield from self._round(request, spaced=round_ > 0)
            if found is None:
                return
            calls, text = found
            more = self.run_tools(calls, text) \
                if self.run_tools is not None and round_ < MAX_TOOL_ROUNDS else None
            if more is None:
                self.exit = self.choose_exit(calls)
                return
            request = {**request, "messages": [*request["messages"], *more]}
            if round_ + 1 == MAX_TOOL_ROUNDS:
                request["tool_choice"] = "none"  # the last round: answer in words

    def _round(self, request: dict[str, Any], spaced: bool
               ) -> Generator[str, None, tuple[Mapping[int, ToolCall], str] | None]:
        """One model answer's text; then its tool calls and text, or None when it stopped or
        failed (`failure` set)."""
        for attempt in range(MAX_REFUSALS + 1):
            reply = ChatStream(self.client, request)
            started = False
            said = ""
            try:
                try:
                    for text in reply.texts():
                        if self.stopped:
                            return None
                        if text:
                            if spaced and not started and text.strip():
                                text = " " + text.lstrip()  # after an earlier round's words
                            started = True
                            said += text
                            yield text
                except Exception as error:
                    retry = self.parameters.after_refusal(self.endpoint, request, error) \
                        if not started and attempt < MAX_REFUSALS else None
                    if retry is None:
                        self.failure = classify(error)
                        return None
                    request = retry
                    continue
                return reply.tool_calls, said
            finally:
                reply.close()
        return None  # pragma: no cover - the last attempt returns above
