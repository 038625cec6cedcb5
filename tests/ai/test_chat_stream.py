"""The streamed reply read off the wire (engine.ai.chat_stream, engine.ai.sse), against the OpenAI
double over real HTTP: what arrives is what the reply is, however the server splits it, and every
failure is the SDK's error class, sorted into the flow language's kinds by `classify`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from flask import Flask

from engine.ai.chat_stream import ChatStream
from engine.ai.errors import classify
from engine.ai.model import make_client
from engine.ai.sse import events
from tests.ai.conftest import Phone, heard_since
from tests.ai.conftest import events as call_events
from tests.doubles.openai_server import (
    Cut,
    Empty,
    Malformed,
    OpenAIDouble,
    Raw,
    Status,
    Text,
    ToolCall,
    tokens,
)

REPLY = "Sure thing. We're open from eight — “until five”, Monday to Thursday. Anything else?"
REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini", "stream": True, "max_tokens": 100,
    "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": "When are you open?"}],
}


@pytest.fixture
def client(double: OpenAIDouble) -> openai.OpenAI:
    return make_client(double.api_key, double.base_url)


@pytest.fixture
def reply(client: openai.OpenAI) -> Iterator[ChatStream]:
    stream = ChatStream(client, REQUEST)
    yield stream
    stream.close()


def event(value: object) -> bytes:
    return b"data: " + json.dumps(value).encode() + b"\n\n"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return event({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def stream_of(*texts: str, finish: str | None = "stop", done: bool = True) -> bytes:
    body = chunk({"role": "assistant", "content": ""})
    body += b"".join(chunk({"content": text}) for text in texts)
    if finish:
        body += chunk({}, finish)
    return body + (b"data: [DONE]\n\n" if done else b"")


def failure(reply: ChatStream) -> tuple[list[str], BaseException]:
    """The texts that arrived before the stream raised, and what it raised."""
    got: list[str] = []
    with pytest.raises(Exception) as raised:
        for text in reply.texts():
            got.append(text)
    return got, raised.value


# -- what arrives ----------------------------------------------------------------------------

def test_the_text_arrives_token_by_token_and_whole(double: OpenAIDouble,
                                                   reply: ChatStream) -> None:
    double.chat(Text(REPLY, tokens_per_second=200))

    assert list(reply.texts()) == tokens(REPLY)
    assert reply.complete and reply.tool_calls == {}
    sent = double.chat_requests[0]
    assert sent.headers["authorization"] == "Bearer test-key"
    assert sent.body == REQUEST  # the request as built, not reshaped on the way


@pytest.mark.parametrize("size", [1, 2, 7, 64], ids=lambda size: f"{size}-byte pieces")
def test_events_split_anywhere_across_http_chunks_are_put_back_together(
        double: OpenAIDouble, reply: ChatStream, size: int) -> None:
    # CRLF line ends, a comment, and multi-byte characters split between chunks as well.
    body = stream_of(*tokens(REPLY)).replace(b"\n", b"\r\n") + b": keep-alive\r\n\r\n"
    double.chat(Raw(tuple(body[i:i + size] for i in range(0, len(body), size))))

    assert "".join(reply.texts()) == REPLY
    assert reply.complete


def test_tool_call_name_and_argument_fragments_are_gathered(double: OpenAIDouble,
                                                            reply: ChatStream) -> None:
    arguments = '{"reason": "wants a person", "urgent": true}'
    double.chat(ToolCall("front_desk", arguments, text="One moment."))

    assert "".join(reply.texts()) == "One moment."
    assert [(call.name, call.arguments) for call in reply.tool_calls.values()] == \
        [("front_desk", arguments)]


def test_tool_calls_in_other_servers_shapes(double: OpenAIDouble, reply: ChatStream) -> None:
    double.chat(Raw((
        # Gemini: no index, each call whole in one fragment, finish_reason "stop".
        chunk({"tool_calls": [{"id": "a", "type": "function", "function": {
            "name": "goodbye", "arguments": "{}"},
            "extra_content": {"google": {"thought_signature": "x"}}}]}),
        chunk({"tool_calls": [{"id": "b", "type": "function", "function": {
            "name": "front_desk", "arguments": "{}"}}]}),
        # llama.cpp: arguments as an object; vLLM: arguments null.
        chunk({"tool_calls": [{"index": 5, "function": {"name": "voicemail",
                                                        "arguments": {"why": "late"}}}]}),
        chunk({"tool_calls": [{"index": 6, "function": {"name": "hold", "arguments": None}}]}),
        chunk({}, "stop"), b"data: [DONE]\n\n")))

    assert list(reply.texts()) == []
    assert [(call.name, json.loads(call.arguments or "{}"))
            for call in reply.tool_calls.values()] == \
        [("goodbye", {}), ("front_desk", {}), ("voicemail", {"why": "late"}), ("hold", {})]


def test_pings_comments_and_empty_choices_are_skipped(double: OpenAIDouble,
                                                      reply: ChatStream) -> None:
    usage = event({"id": "c", "object": "chat.completion.chunk", "choices": [],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})
    double.chat(Raw((b"event: ping\n\n", b": OPENROUTER PROCESSING\n\n",
                     chunk({"content": "Hello "}), b"event: ping\ndata:\n\n",
                     chunk({"content": "there."}), chunk({}, "stop"), usage,
                     b"data: [DONE]\n\n")))

    assert list(reply.texts()) == ["Hello ", "there."]


def test_an_empty_reply_is_no_error(double: OpenAIDouble, reply: ChatStream) -> None:
    double.chat(Empty())

    assert list(reply.texts()) == []
    assert reply.complete


def test_a_whole_completion_instead_of_a_stream_is_read(double: OpenAIDouble,
                                                        reply: ChatStream) -> None:
    body = {"id": "c", "object": "chat.completion", "choices": [{
        "index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Hello there."}}]}
    double.chat(Raw((json.dumps(body).encode(),), content_type="application/json"))

    assert list(reply.texts()) == ["Hello there."]


# -- failures --------------------------------------------------------------------------------

@pytest.mark.parametrize("error_event", [
    event({"error": {"message": "model overloaded", "type": "server_error", "code": 500}}),
    b'event: error\ndata: {"message": "model overloaded"}\n\n',
], ids=["vllm-openrouter-data-error", "event-error"])
def test_an_error_event_mid_stream_raises_after_the_text_before_it(
        double: OpenAIDouble, reply: ChatStream, error_event: bytes) -> None:
    double.chat(Raw((chunk({"content": "Sure thing. "}), chunk({"content": "We "}),
                     error_event)))

    got, error = failure(reply)
    assert got == ["Sure thing. ", "We "]
    assert type(error) is openai.APIError and error.message == "model overloaded"
    found = classify(error)
    assert found.kind == "ai_failure" and "model overloaded" in found.detail
    assert not reply.complete


def test_a_malformed_line_is_an_ai_failure(double: OpenAIDouble, reply: ChatStream) -> None:
    double.chat(Malformed())

    _, error = failure(reply)
    assert isinstance(error, json.JSONDecodeError)
    assert classify(error).kind == "ai_failure"


def test_a_malformed_line_after_some_text(double: OpenAIDouble, reply: ChatStream) -> None:
    double.chat(Raw((chunk({"content": "Sure. "}), b'data: {"choices": [{"delta": \n\n')))

    got, error = failure(reply)
    assert got == ["Sure. "] and classify(error).kind == "ai_failure"


def test_an_event_not_shaped_like_a_chunk_is_an_ai_failure(double: OpenAIDouble,
                                                           reply: ChatStream) -> None:
    double.chat(Raw((event({"choices": ["nope"]}),)))

    _, error = failure(reply)
    assert isinstance(error, ValueError) and classify(error).kind == "ai_failure"


@pytest.mark.parametrize("retry_after", ["3", "0.5"])
def test_a_429_with_retry_after_is_a_rate_limit_with_its_wait(
        double: OpenAIDouble, reply: ChatStream, retry_after: str) -> None:
    double.chat(Status(429, headers={"retry-after": retry_after}))

    got, error = failure(reply)
    assert got == [] and isinstance(error, openai.RateLimitError)
    assert classify(error).kind == "rate_limit"
    assert classify(error).retry_after == float(retry_after)
    assert len(double.chat_requests) == 1  # the SDK's own retries stay off


@pytest.mark.parametrize(("headers", "body", "wait"), [
    ({"retry-after-ms": "1500", "retry-after": "2"}, None, 1.5),
    ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, None, 0.0),  # a date long past
    ({}, [{"error": {"code": 429, "message": "Resource has been exhausted",
                     "status": "RESOURCE_EXHAUSTED",
                     "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                  "retryDelay": "39s"}]}}], 39.0),
    ({}, {"error": {"code": 429, "message": "slow down",
                    "details": [{"retryDelay": "1.5s"}]}}, 1.5),
    ({"retry-after": "soon"}, None, 0.0),
], ids=["retry-after-ms", "http-date", "gemini-list-body", "gemini-body", "unreadable"])
def test_a_429_says_how_long_to_wait_in_other_ways(
        double: OpenAIDouble, reply: ChatStream, headers: dict[str, str], body: object,
        wait: float) -> None:
    payload = json.dumps(body or {"error": {"message": "Rate limit reached"}}).encode()
    double.chat(Raw((payload,), content_type="application/json", status=429,
                    headers=headers))

    _, error = failure(reply)
    assert isinstance(error, openai.RateLimitError)
    found = classify(error)
    assert found.kind == "rate_limit" and found.retry_after == pytest.approx(wait)


@pytest.mark.parametrize(("status", "kind"), [(503, "network"), (400, "ai_failure")])
def test_other_statuses_keep_their_kinds(double: OpenAIDouble, reply: ChatStream,
                                         status: int, kind: str) -> None:
    double.chat(Status(status))

    _, error = failure(reply)
    assert isinstance(error, openai.APIStatusError) and classify(error).kind == kind


def test_a_200_json_error_body_is_an_error_not_an_empty_reply(double: OpenAIDouble,
                                                              reply: ChatStream) -> None:
    # Gemini's shape: a list around the error.
    body = [{"error": {"code": 429, "message": "Resource exhausted", "status": "UNAVAILABLE"}}]
    double.chat(Raw((json.dumps(body).encode(),), content_type="application/json"))

    _, error = failure(reply)
    assert type(error) is openai.APIError and error.message == "Resource exhausted"


def test_a_dropped_connection_mid_stream_is_a_network_error(double: OpenAIDouble,
                                                            reply: ChatStream) -> None:
    double.chat(Cut("Sure thing. We are open until five.", keep=3))

    got, error = failure(reply)
    assert "".join(got) == "Sure thing. We "
    assert isinstance(error, openai.APIConnectionError) and classify(error).kind == "network"


def test_a_stream_ending_with_no_finish_reason_and_no_done_was_cut(
        double: OpenAIDouble, reply: ChatStream) -> None:
    # Ollama's mid-stream failure: the body ends cleanly, but the reply did not.
    double.chat(Raw((stream_of("Sure ", "thing", finish=None, done=False),)))

    got, error = failure(reply)
    assert got == ["Sure ", "thing"]
    assert isinstance(error, openai.APIConnectionError) and classify(error).kind == "network"


def test_a_finished_stream_without_done_is_complete(double: OpenAIDouble,
                                                    reply: ChatStream) -> None:
    double.chat(Raw((stream_of("Sure thing.", done=False),)))

    assert list(reply.texts()) == ["Sure thing."] and reply.complete


def test_the_connection_is_reused_after_a_complete_stream(double: OpenAIDouble,
                                                          client: openai.OpenAI) -> None:
    for _ in range(3):
        double.chat(Text("Hello there."))
        stream = ChatStream(client, REQUEST)
        assert "".join(stream.texts()) == "Hello there."
        stream.close()
    # The double's open connections: a dropped one is gone once its handler sees the end of it.
    time.sleep(0.3)
    with double._lock:
        assert len(double._connections) == 1


# -- in a call -------------------------------------------------------------------------------

ERROR_EVENT = event({"error": {"message": "upstream provider error", "code": 502}})


def test_an_error_event_after_whole_sentences_keeps_them_and_records_the_failure(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    double.chat(Raw((chunk({"content": "Sure thing. "}), chunk({"content": "We open at "}),
                     chunk({"content": "eight. And "}), ERROR_EVENT), gap=0.05))
    c = phone().start()
    mark = len(c.heard)
    c.say("when do you open")

    assert heard_since(app, double, c, mark) == "Sure thing. We open at eight."
    assert c.waiting.kind == "gather"
    (error,) = call_events(app, c.call_sid, "call.error")
    assert error["kind"] == "ai_failure" and "upstream provider error" in error["detail"]
    assert len(double.chat_requests) == 1


def test_an_error_event_before_any_sentence_takes_the_ai_failure_edge(
        app: Flask, phone: Phone, double: OpenAIDouble) -> None:
    answer = "Yes, we open at eight."
    double.chat(Raw((chunk({"content": "Sure "}), ERROR_EVENT)), Text(answer))
    c = phone().start()
    mark = len(c.heard)
    c.say("when do you open")

    assert heard_since(app, double, c, mark) == answer  # the fallback personality's answer
    assert [e["kind"] for e in call_events(app, c.call_sid, "call.error")] == ["ai_failure"]
    assert "professional voice" in double.chat_requests[1].messages[0]["content"]


def test_a_tool_call_split_over_fragments_takes_its_exit(app: Flask, phone: Phone,
                                                         double: OpenAIDouble) -> None:
    double.chat(Raw((
        chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "front_", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "desk", "arguments": '{"re'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ason": "a person"}'}}]}),
        chunk({}, "tool_calls"), b"data: [DONE]\n\n")))
    c = phone().start()
    c.say("can I talk to someone")

    edges = [(e["edge"], e["node"]) for e in call_events(app, c.call_sid, "call.node")]
    assert ("exit", "front_desk") in edges


# -- the SSE decoder itself ------------------------------------------------------------------

def test_sse_fields_and_line_ends() -> None:
    body = (b"event: update\r\ndata: one\r\ndata:two\r\nid: 7\r\nretry: 10\r\n\r\n"
            b": comment\n\ndata: {}\r\rdata: last")
    assert list(events([body])) == [(b"update", b"one\ntwo"), (b"message", b"{}"),
                                    (b"message", b"last")]
    for size in (1, 3):
        pieces = [body[i:i + size] for i in range(0, len(body), size)]
        assert list(events(pieces)) == list(events([body]))
