"""Server-sent events decoded from the bytes of an HTTP body as they arrive.

This is the wire format of a streamed chat completion (`text/event-stream`): lines of
`field: value`, an empty line ending each event. The decoder keeps the data as bytes (`json.loads`
takes bytes) and builds nothing per event but a tuple: a phone turn reads a few dozen events and
should spend microseconds, not milliseconds, on each.

It follows the WHATWG event-stream rules a chat stream needs (LF, CRLF or CR line ends, `data`
lines joined with LF, `:` comments ignored, one space after the colon dropped, `id` and `retry`
ignored) with two choices of its own:
- an event with no data (`event: ping`, a keep-alive some servers send, with or without an
  empty `data:` line) is skipped, as the standard says; the `openai` SDK tries to parse it as
  JSON and fails instead;
- an event still open when the body ends (no empty line after it) is yielded all the same: a
  server that ends its body right after the last `data:` line meant it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

MESSAGE = b"message"
"""The type of an event with no `event:` line."""


def events(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """`(event type, data)` for each event of the body whose pieces are `chunks`, in order and
    as soon as each event is complete, however the pieces split lines and events."""
    pending = b""  # an incomplete line carried over to the next piece
    kind = MESSAGE
    data: list[bytes] = []
    for chunk in chunks:
        if pending:
            chunk = pending + chunk
        if b"\r" in chunk:
            # A CR at the very end may be the first half of a CRLF: keep it for the next piece.
            held = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n")
            if held:
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\r", b"\n")
            if held:
                chunk += b"\r"
        lines = chunk.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.startswith(b"data: "):  # nearly every line of a chat stream
                data.append(line[6:])
            elif not line:
                if data and (joined := b"\n".join(data)):
                    yield kind, joined
                kind, data = MESSAGE, []
            else:
                kind = _field(line, kind, data)
    if pending.endswith(b"\r"):
        pending = pending[:-1]
    if pending:
        kind = _field(pending, kind, data)
    if data and (joined := b"\n".join(data)):
        yield kind, joined


def _field(line: bytes, kind: bytes, data: list[bytes]) -> bytes:
    """Apply one non-empty line to the event being built; returns its (new) type."""
    if line.startswith(b":"):
        return kind  # a comment (OpenRouter sends ": OPENROUTER PROCESSING" to keep alive)
    name, _, value = line.partition(b":")
    if value.startswith(b" "):
        value = value[1:]
    if name == b"data":
        data.append(value)
    elif name == b"event":
        return value or MESSAGE
    return kind
