"""A model reply read delta by delta, for a conversation that speaks while the model writes.

A ConversationRelay session sends each piece of the reply to Twilio as it arrives, so it reads
the stream itself instead of waiting for sentences (`engine.ai.stream` is the `<Gather>` way).
`TokenReply.deltas()` yields the reply's text as the model streams it; when it is done, `exit`
holds the exit tool the model chose and `failure` what went wrong, sorted into the flow's error
kinds. A request refused for a parameter the model does without is sent again without it
(`engine.ai.parameters`), as for every other reply. `stop()` makes the reader stop at the next
delta (an interruption: the caller is talking).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import openai

from engine.ai.chat_stream import ChatStream, ToolCall
from engine.ai.errors import Classified, classify
from engine.ai.parameters import MAX_REFUSALS, ModelParameters

ExitChooser = Callable[[Mapping[int, ToolCall]], str | None]
"""The exit a reply's tool calls take (None: none), as the node declares them."""


class TokenReply:
    """One streamed reply for `request`, read once through `deltas()`."""

    def __init__(self, client: openai.OpenAI, request: dict[str, Any],
                 parameters: ModelParameters, endpoint: str, choose_exit: ExitChooser) -> None:
        self.client = client
        self.request = request
        self.parameters = parameters
        self.endpoint = endpoint
        self.choose_exit = choose_exit
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
        for attempt in range(MAX_REFUSALS + 1):
            reply = ChatStream(self.client, request)
            started = False
            try:
                try:
                    for text in reply.texts():
                        if self.stopped:
                            return
                        if text:
                            started = True
                            yield text
                except Exception as error:
                    retry = self.parameters.after_refusal(self.endpoint, request, error) \
                        if not started and attempt < MAX_REFUSALS else None
                    if retry is None:
                        self.failure = classify(error)
                        return
                    request = retry
                    continue
                self.exit = self.choose_exit(reply.tool_calls)
                return
            finally:
                reply.close()
