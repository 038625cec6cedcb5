"""The OpenAI double, proved against the real `openai` SDK (3.x, on httpx2).

What the SDK raises for each fault the double injects (asserted below):

- `Status(429, headers={"retry-after": "2"})` → `openai.RateLimitError`; the header is on
  `error.response.headers`, the error JSON's fields on `error.code`, `error.type`, `error.body`.
- `Status(500)` → `openai.InternalServerError`; `Status(400)` → `openai.BadRequestError`.
- A wrong API key → `openai.AuthenticationError` (401; no queued behaviour is consumed).
- `Hang(seconds)` longer than the client's timeout → `openai.APITimeoutError` (a subclass of
  `openai.APIConnectionError`).
- `Malformed()` → `json.JSONDecodeError` (a `ValueError`; NOT an `openai.OpenAIError`): from
  `create()` without streaming, from the iteration when streaming. For speech the SDK never
  parses the body, so `Malformed` bytes come back from `.read()` as if they were audio.
- `Cut(text)` → streaming: the chunks before the cut are yielded, then iteration raises
  `openai.APIConnectionError` (caused by httpx2's RemoteProtocolError "incomplete chunked read");
  the SDK never returns silently truncated content. Without streaming: `create()` raises
  `openai.APIConnectionError` (body shorter than its Content-Length), which the SDK retries
  itself when `max_retries` > 0 (it does not retry `Malformed`).
- `Empty()` → no error: no content chunk, finish_reason "stop"; non-stream content "".
"""

from __future__ import annotations

import http.client
import io
import itertools
import json
import re
import threading
import time
import wave
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.doubles.openai_server import (
    DEFAULT_REPLY,
    Audio,
    Cut,
    Empty,
    Hang,
    Malformed,
    OpenAIDouble,
    Status,
    Text,
    ToolCall,
    iter_sse_payloads,
    tokens,
)

MESSAGES: list[Any] = [{"role": "system", "content": "You answer the phone."},
                       {"role": "user", "content": "Hello, is anyone there?"}]


@pytest.fixture
def double() -> Iterator[OpenAIDouble]:
    with OpenAIDouble() as server:
        yield server
    assert server.errors == [], "the double failed internally"


@pytest.fixture
def client(double: OpenAIDouble) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="test-key", base_url=double.base_url, max_retries=0,
                       timeout=5.0) as sdk:
        yield sdk


def stream(client: openai.OpenAI, **kwargs: Any) -> list[ChatCompletionChunk]:
    kwargs.setdefault("model", "gpt-4o-mini")
    kwargs.setdefault("messages", MESSAGES)
    return list(client.chat.completions.create(stream=True, **kwargs))


def content(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def complete(client: openai.OpenAI, **kwargs: Any) -> ChatCompletion:
    kwargs.setdefault("model", "gpt-4o-mini")
    kwargs.setdefault("messages", MESSAGES)
    reply: ChatCompletion = client.chat.completions.create(**kwargs)
    return reply


# -- text -----------------------------------------------------------------------------------------


def test_streamed_text_reassembles_exactly(double: OpenAIDouble, client: openai.OpenAI) -> None:
    text = "  Sure — I can book that for Tuesday at 3 pm.\nAnything else?  Ça va? 🙂 "
    double.chat(Text(text))
    chunks = stream(client)
    assert content(chunks) == text
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert last.choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert {c.id for c in chunks} == {first.id} and first.id.startswith("chatcmpl-")
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    assert len({c.created for c in chunks}) == 1
    assert len(chunks) == len(tokens(text)) + 2  # role chunk, one per token, finish chunk


def test_tokens_cover_the_text() -> None:
    for text in ["", " ", "one", " one two  three ", "a\nb\tc", "  lead"]:
        assert "".join(tokens(text)) == text
    assert tokens("Hello there, friend. ") == ["Hello ", "there, ", "friend. "]


def test_chunks_arrive_as_the_double_sends_them(double: OpenAIDouble,
                                                client: openai.OpenAI) -> None:
    words = [f"word{i}" for i in range(20)]
    ttft, rate = 0.3, 20.0
    double.chat(Text(" ".join(words), ttft=ttft, tokens_per_second=rate))
    started = time.monotonic()
    arrivals: list[float] = []
    pieces: list[str] = []
    for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            pieces.append(chunk.choices[0].delta.content)
    ended = time.monotonic()
    assert "".join(pieces) == " ".join(words)
    assert len(arrivals) == 20

    received = double.requests[0].received_at  # same monotonic clock: same process
    last_sent_not_before = received + ttft + 19 / rate
    # Incremental: the first chunk is in our hands before the double even sent the last one.
    assert arrivals[0] < last_sent_not_before - 0.4
    # ... and nothing arrives before the double's schedule says it is sent.
    for i, at in enumerate(arrivals):
        assert at >= received + ttft + i / rate - 0.01
    # Paced, not batched: most gaps between chunks are about 1/rate.
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert sum(gap > 0.5 / rate for gap in gaps) >= len(gaps) // 2
    assert arrivals[0] - started >= ttft - 0.01
    assert ended - started < 10  # generous


def test_non_stream_text_parses_into_a_chat_completion(double: OpenAIDouble,
                                                       client: openai.OpenAI) -> None:
    double.chat(Text("Your table is booked."))
    reply = complete(client)
    assert isinstance(reply, ChatCompletion)
    assert reply.object == "chat.completion" and reply.model == "gpt-4o-mini"
    choice = reply.choices[0]
    assert choice.message.content == "Your table is booked."
    assert choice.message.role == "assistant" and choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 4


def test_non_stream_text_waits_as_long_as_the_stream_would(double: OpenAIDouble,
                                                           client: openai.OpenAI) -> None:
    double.chat(Text("one two three four five", ttft=0.2, tokens_per_second=10))
    started = time.monotonic()
    assert complete(client).choices[0].message.content == "one two three four five"
    assert time.monotonic() - started >= 0.2 + 0.4 - 0.01


def test_default_reply_and_queue_order(double: OpenAIDouble, client: openai.OpenAI) -> None:
    assert complete(client).choices[0].message.content == DEFAULT_REPLY
    double.chat(Text("first"), Text("second"))
    assert content(stream(client)) == "first"
    assert complete(client).choices[0].message.content == "second"
    assert complete(client).choices[0].message.content == DEFAULT_REPLY
    double.default_chat(Text("new default"))
    assert content(stream(client)) == "new default"
    assert double.pending_chat == []


def test_empty(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.chat(Empty(), Empty())
    chunks = stream(client)
    assert content(chunks) == ""
    assert [c.choices[0].delta.content for c in chunks] == ["", None]
    assert chunks[-1].choices[0].finish_reason == "stop"
    reply = complete(client)
    assert reply.choices[0].message.content == "" and reply.choices[0].finish_reason == "stop"


def test_stream_usage_when_asked(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.chat(Text("three little words"))
    chunks = stream(client, stream_options={"include_usage": True})
    assert content(chunks) == "three little words"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


# -- tool calls -----------------------------------------------------------------------------------


def test_streamed_tool_call_reassembles(double: OpenAIDouble, client: openai.OpenAI) -> None:
    arguments = '{"department": "sales", "reason": "wants a quote for 12 chairs"}'
    double.chat(ToolCall("transfer_call", arguments, text="Let me put you through. "))
    chunks = stream(client, tools=[{"type": "function", "function": {
        "name": "transfer_call", "parameters": {"type": "object"}}}])
    assert content(chunks) == "Let me put you through. "
    calls = [call for c in chunks for call in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) >= 4  # the header, then the arguments over several chunks
    assert {call.index for call in calls} == {0}
    header = calls[0]
    assert header.id is not None and header.id.startswith("call_")
    assert header.type == "function"
    assert header.function is not None and header.function.name == "transfer_call"
    assert all(call.id is None and call.function is not None and call.function.name is None
               for call in calls[1:])
    assert "".join(call.function.arguments or "" for call in calls if call.function) == arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_streamed_tool_call_without_text_and_with_malformed_arguments(
        double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.chat(ToolCall("end_call", '{"reason": "bye'))
    chunks = stream(client)
    first = chunks[0].choices[0].delta
    assert first.role == "assistant" and first.content is None
    assert first.tool_calls is not None and first.tool_calls[0].function is not None
    assert first.tool_calls[0].function.name == "end_call"
    arguments = "".join(call.function.arguments or "" for c in chunks
                        for call in (c.choices[0].delta.tool_calls or []) if call.function)
    assert arguments == '{"reason": "bye'
    with pytest.raises(json.JSONDecodeError):
        json.loads(arguments)


def test_non_stream_tool_call(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.chat(ToolCall("transfer_call", '{"department": "sales"}', call_id="call_abc"))
    reply = complete(client)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id == "call_abc"
    assert call.function.name == "transfer_call"
    assert json.loads(call.function.arguments) == {"department": "sales"}


# -- faults ---------------------------------------------------------------------------------------


def test_429_raises_rate_limit_error_with_retry_after(double: OpenAIDouble,
                                                      client: openai.OpenAI) -> None:
    double.chat(Status(429, headers={"retry-after": "2"}))
    with pytest.raises(openai.RateLimitError) as caught:
        stream(client)
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2"
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert error.body == {"message": "Rate limit reached for requests.", "type": "requests",
                          "param": None, "code": "rate_limit_exceeded"}
    assert error.request_id is not None and error.request_id.startswith("req_")


def test_500_and_400(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.chat(Status(500), Status(400, "Bad tools.", param="tools"), Status(503))
    with pytest.raises(openai.InternalServerError) as server_error:
        complete(client)
    assert server_error.value.type == "server_error"
    with pytest.raises(openai.BadRequestError) as bad:
        stream(client)
    assert bad.value.param == "tools" and "Bad tools." in str(bad.value)
    with pytest.raises(openai.InternalServerError):
        complete(client)


def test_sdk_retry_consumes_one_behaviour_per_request(double: OpenAIDouble) -> None:
    double.chat(Status(500), Text("second time lucky"))
    with openai.OpenAI(api_key="test-key", base_url=double.base_url, max_retries=2,
                       timeout=5.0) as retrying:
        reply = complete(retrying)
    assert reply.choices[0].message.content == "second time lucky"
    assert [r.behaviour for r in double.requests] == [Status(500), Text("second time lucky")]
    assert double.requests[1].headers["x-stainless-retry-count"] == "1"


def test_sdk_retry_honours_retry_after_ms(double: OpenAIDouble) -> None:
    double.chat(Status(429, headers={"retry-after-ms": "20"}), Text("ok"))
    with openai.OpenAI(api_key="test-key", base_url=double.base_url, max_retries=1,
                       timeout=5.0) as retrying:
        assert content(stream(retrying)) == "ok"
    first, second = double.requests
    assert second.received_at - first.received_at < 0.4  # not the 0.5 s default backoff


def test_bad_api_key(double: OpenAIDouble) -> None:
    double.chat(Text("kept for later"))
    with (openai.OpenAI(api_key="wrong", base_url=double.base_url, max_retries=0) as bad,
          pytest.raises(openai.AuthenticationError) as caught):
        complete(bad)
    assert caught.value.code == "invalid_api_key"
    assert double.pending_chat == [Text("kept for later")]
    assert double.requests[0].behaviour is None


def test_hang_longer_than_the_timeout(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.chat(Hang(3.0))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        complete(client, timeout=0.3)
    assert time.monotonic() - started < 2.0
    assert complete(client).choices[0].message.content == DEFAULT_REPLY


def test_hang_then_behaviour(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.chat(Hang(0.2, then=Text("sorry for the wait")), Hang(0.1, then=Status(429)))
    started = time.monotonic()
    assert content(stream(client)) == "sorry for the wait"
    assert time.monotonic() - started >= 0.2 - 0.01
    with pytest.raises(openai.RateLimitError):
        complete(client)


def test_server_survives_clients_that_went_away(double: OpenAIDouble,
                                                client: openai.OpenAI) -> None:
    double.chat(Hang(0.3), Text("a b c d e f g h i j", tokens_per_second=20))
    with pytest.raises(openai.APITimeoutError):
        complete(client, timeout=0.1)
    response = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    next(iter(response))
    response.close()  # leave mid-stream
    time.sleep(0.8)  # the hang ends and the stream goes on, both writing to closed sockets
    assert double.errors == []
    assert complete(client).choices[0].message.content == DEFAULT_REPLY


def test_malformed_raises_a_plain_json_error(double: OpenAIDouble,
                                             client: openai.OpenAI) -> None:
    """`Malformed` surfaces as `json.JSONDecodeError`, not as an `openai.OpenAIError`."""
    double.chat(Malformed(), Malformed(b"<html>Bad gateway</html>"))
    with pytest.raises(json.JSONDecodeError) as streamed:
        stream(client)
    assert not isinstance(streamed.value, openai.OpenAIError)
    with pytest.raises(json.JSONDecodeError):
        complete(client)


def test_cut_stream_yields_the_start_then_raises(double: OpenAIDouble,
                                                 client: openai.OpenAI) -> None:
    """A cut stream yields what got through, then raises `openai.APIConnectionError`."""
    cut = Cut("I can help you with that booking right away.")
    assert cut.delivered == "I can help you with "  # 5 of 9 tokens
    double.chat(cut)
    got: list[str] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            got.append(chunk.choices[0].delta.content or "")
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert "".join(got) == cut.delivered


def test_cut_without_streaming(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.chat(Cut("one two three", keep=1))
    with pytest.raises(openai.APIConnectionError):
        complete(client)
    assert complete(client).choices[0].message.content == DEFAULT_REPLY
    # The SDK retries a cut non-stream answer itself (a malformed one it does not).
    double.chat(Cut("one two three"), Text("whole"), Malformed(), Text("unused"))
    with openai.OpenAI(api_key="test-key", base_url=double.base_url, max_retries=1,
                       timeout=5.0) as retrying:
        assert complete(retrying).choices[0].message.content == "whole"
        with pytest.raises(json.JSONDecodeError):
            complete(retrying)
    assert double.pending_chat == [Text("unused")]


# -- speech ---------------------------------------------------------------------------------------


def test_speech_mp3(double: OpenAIDouble, client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input="hi",
                                       response_format="mp3")
    body = audio.read()
    assert body.startswith(b"ID3")
    assert audio.response.headers["content-type"] == "audio/mpeg"
    again = client.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input="hi",
                                       response_format="mp3").read()
    other = client.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input="bye",
                                       response_format="mp3").read()
    assert again == body and other != body and other.startswith(b"ID3")
    request = double.speech_requests[0]
    assert request.get("voice") == "coral" and request.get("input") == "hi"
    assert request.model == "gpt-4o-mini-tts" and request.get("response_format") == "mp3"
    assert request.headers["accept"] == "application/octet-stream"


def test_speech_wav_is_a_valid_wave_file(double: OpenAIDouble, client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model="gpt-4o-mini-tts", voice="coral",
                                       input="Thanks for calling.", response_format="wav")
    assert audio.response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(audio.read())) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24_000)
        assert wav.getnframes() > 0
        assert set(wav.readframes(wav.getnframes())) == {0}


def test_speech_faults(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.speech(Status(500), Hang(2.0), Audio(delay=0.2, body=b"custom"),
                  Malformed(b"not audio"), Status(429, headers={"retry-after": "1"}))
    kwargs: dict[str, Any] = {"model": "gpt-4o-mini-tts", "voice": "coral", "input": "hi"}
    with pytest.raises(openai.InternalServerError):
        client.audio.speech.create(**kwargs)
    with pytest.raises(openai.APITimeoutError):
        client.audio.speech.create(**kwargs, timeout=0.3)
    started = time.monotonic()
    assert client.audio.speech.create(**kwargs).read() == b"custom"
    assert time.monotonic() - started >= 0.2 - 0.01
    # The SDK does not look at the audio: a malformed body comes back as it is.
    assert client.audio.speech.create(**kwargs).read() == b"not audio"
    with pytest.raises(openai.RateLimitError) as caught:
        client.audio.speech.create(**kwargs)
    assert caught.value.response.headers["retry-after"] == "1"
    assert client.audio.speech.create(**kwargs).read().startswith(b"ID3")  # the default


def test_speech_input_limit(double: OpenAIDouble, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input="a" * 4097)
    assert caught.value.code == "string_too_long"


# -- recording and plumbing -----------------------------------------------------------------------


def test_records_what_was_sent(double: OpenAIDouble, client: openai.OpenAI) -> None:
    tools: list[Any] = [{"type": "function", "function": {
        "name": "end_call", "parameters": {"type": "object", "properties": {}}}}]
    before = time.monotonic()
    stream(client, model="gpt-4o", tools=tools, temperature=0.3, max_completion_tokens=120)
    complete(client, max_tokens=50)
    first, second = double.chat_requests
    assert first.method == "POST" and first.path == "/v1/chat/completions"
    assert (first.model, first.messages, first.tools) == ("gpt-4o", MESSAGES, tools)
    assert (first.temperature, first.stream, first.max_completion_tokens) == (0.3, True, 120)
    assert first.max_tokens is None
    assert (second.stream in (None, False)) and second.max_tokens == 50
    assert first.headers["authorization"] == "Bearer test-key"
    assert before <= first.received_at <= second.received_at <= time.monotonic()
    assert first.behaviour == Text(DEFAULT_REPLY)


def test_wait_for_requests(double: OpenAIDouble, client: openai.OpenAI) -> None:
    thread = threading.Thread(target=complete, args=(client,))
    thread.start()
    assert len(double.wait_for_requests(1, timeout=5)) == 1
    thread.join()
    with pytest.raises(TimeoutError):
        double.wait_for_requests(2, timeout=0.05)


def test_unknown_routes_and_models(double: OpenAIDouble, client: openai.OpenAI) -> None:
    assert "gpt-4o-mini" in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")


def test_behaviours_are_checked_when_queued(double: OpenAIDouble) -> None:
    with pytest.raises(TypeError):
        double.speech(Text("not speech"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        double.chat(Audio())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        double.chat(Hang(1, then=Audio()))
    with pytest.raises(TypeError):
        double.default_speech(Empty())  # type: ignore[arg-type]


def test_concurrent_streams(double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.chat(*(Text(f"caller {i}", ttft=0.5) for i in range(4)))
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(content(stream(client))))
               for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [f"caller {i}" for i in range(4)]
    assert time.monotonic() - started < 1.6  # one after the other would take 2 s


def test_wire_format(double: OpenAIDouble) -> None:
    """The raw bytes: chunked SSE events, `data: [DONE]` last, error JSON with x-request-id."""
    host, port = double.base_url.split("//")[1].split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    body = json.dumps({"model": "m", "messages": MESSAGES, "stream": True})
    headers = {"Authorization": "Bearer test-key", "Content-Type": "application/json"}
    double.chat(Text("Hi there."), Status(429))
    connection.request("POST", "/v1/chat/completions", body, headers)
    response = connection.getresponse()
    assert response.getheader("transfer-encoding") == "chunked"
    assert response.getheader("content-type", "").startswith("text/event-stream")
    raw = response.read()
    assert raw.startswith(b"data: {") and raw.endswith(b"data: [DONE]\n\n")
    payloads = list(iter_sse_payloads(raw))
    assert payloads[-1] == b"[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "",
                                                "refusal": None}
    assert [e["choices"][0]["delta"].get("content") for e in events[1:-1]] == ["Hi ", "there."]
    assert events[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"}
    connection.request("POST", "/v1/chat/completions", body, headers)  # same connection
    response = connection.getresponse()
    assert response.status == 429 and response.getheader("x-request-id")
    assert set(json.loads(response.read())["error"]) == {"message", "type", "param", "code"}
    connection.close()


def test_close_cuts_a_hanging_request_short() -> None:
    double = OpenAIDouble().start()
    double.chat(Hang(30))
    errors: list[BaseException] = []

    def call() -> None:
        with openai.OpenAI(api_key="test-key", base_url=double.base_url, max_retries=0,
                           timeout=60) as sdk:
            try:
                complete(sdk)
            except openai.APIConnectionError as error:
                errors.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    double.wait_for_requests(1)
    started = time.monotonic()
    double.close()
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert len(errors) == 1
    assert double.errors == []


# -- reasoning models -----------------------------------------------------------------------------


def test_reasoning_models_refuse_max_tokens_and_temperature_as_openai_does(
        double: OpenAIDouble, client: openai.OpenAI) -> None:
    double.reasoning_models = re.compile(r"^(o\d|gpt-5)")
    double.chat(Text("kept for the request that is taken"))
    with pytest.raises(openai.BadRequestError) as tokens_refused:
        stream(client, model="o3-mini", max_tokens=50)
    assert tokens_refused.value.body == {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                   "Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}
    with pytest.raises(openai.BadRequestError) as temperature_refused:
        stream(client, model="gpt-5", max_completion_tokens=50, temperature=0.7)
    assert temperature_refused.value.body == {
        "message": "Unsupported value: 'temperature' does not support 0.7 with this model. "
                   "Only the default (1) value is supported.",
        "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}
    # What the model takes is answered with the queued behaviour, untouched by the refusals.
    assert content(stream(client, model="o3-mini", max_completion_tokens=50,
                          temperature=1)) == "kept for the request that is taken"
    assert content(stream(client, model="gpt-4o-mini", max_tokens=50, temperature=0.2))
    assert [isinstance(r.behaviour, Status) for r in double.chat_requests] == [
        True, True, False, False]
