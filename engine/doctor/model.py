"""The doctor's model check: a tiny streamed chat request with a tool, and a speech request.

The request is shaped as every call's is (engine/ai/parameters.py), refusals of a parameter
included, so what the doctor finds is what calls will meet: does the endpoint stream, does the
model call a tool (a flow's exits are tools), does the speech endpoint answer with audio.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai

from engine.ai.chat_stream import ChatStream
from engine.ai.errors import classify
from engine.ai.model import make_client
from engine.ai.parameters import MAX_REFUSALS, PROCESS_PARAMETERS, ModelParameters
from engine.doctor.report import Finding
from engine.flows.loader import load_project
from engine.flows.model import OpenAIVoice
from engine.settings import Settings
from engine.speech.tts import SpeechFailed, Synthesizer

TOOL_NAME = "ping"
TOOL = {"type": "function", "function": {
    "name": TOOL_NAME, "description": "Answer the check: call this whenever you are asked to.",
    "parameters": {"type": "object", "properties": {"ok": {"type": "boolean"}},
                   "required": ["ok"]}}}
PROBE = [{"role": "system", "content": "You are being checked by the phone system. When the "
                                       "user asks, call the function ping with ok=true."},
         {"role": "user", "content": "Say 'hello', then call ping."}]
HINTS = {401: "OPENAI_API_KEY is not accepted: write a valid key for this endpoint",
         403: "the key may not use this model: check the project's model access",
         404: "OPENAI_MODEL (or OPENAI_BASE_URL) is not known here: write a model this "
              "endpoint serves"}


def probe_request(model: str) -> dict[str, Any]:
    """The chat request of the check, before it is shaped for its model."""
    return {"model": model, "messages": PROBE, "tools": [TOOL], "temperature": 0.7,
            "max_tokens": 60, "stream": True}


def _hint(error: BaseException) -> str:
    if isinstance(error, openai.APIStatusError) and error.status_code in HINTS:
        return f"; {HINTS[error.status_code]}"
    if isinstance(error, openai.APIConnectionError):
        return "; check OPENAI_BASE_URL and that the server is up"
    return ""


def check_model(settings: Settings,
                parameters: ModelParameters = PROCESS_PARAMETERS) -> Iterator[Finding]:
    """Stream one reply with a tool from OPENAI_MODEL; then speak a word (`check_speech`)."""
    if not settings.openai_api_key:
        yield Finding("model", "skip", "OPENAI_API_KEY is not set: the offline responder "
                                       "answers from the personalities' examples, Twilio "
                                       "voices speak")
        return
    client = make_client(settings.openai_api_key, settings.openai_base_url)
    endpoint = str(client.base_url)
    where = f"{settings.openai_model} at {endpoint}"
    request = parameters.fit(endpoint, probe_request(settings.openai_model))
    dropped: list[str] = []
    for _ in range(MAX_REFUSALS + 1):
        reply = ChatStream(client, request)
        try:
            text = "".join(reply.texts())
            break
        except Exception as error:
            retry = parameters.after_refusal(endpoint, request, error)
            if retry is None:
                found = classify(error)
                yield Finding("model", "fail", f"{where}: {found.detail}{_hint(error)}"[:400])
                yield from check_speech(settings, client)
                return
            dropped += sorted(set(request) - set(retry))
            request = retry
        finally:
            reply.close()
    else:  # a refusal for every parameter it could drop, and one more
        yield Finding("model", "fail", f"{where}: refused every shape of the request")
        return
    note = f" (it refused {', '.join(dropped)}: calls send it without)" if dropped else ""
    if reply.streamed:
        yield Finding("model", "ok", f"{where} streams its reply{note}")
    else:
        yield Finding("model", "warn", f"{where} answered whole, not streamed: callers wait "
                                       f"for the whole reply{note}")
    called = [call for call in reply.tool_calls.values() if call.name == TOOL_NAME]
    if called and _object(called[0].arguments):
        yield Finding("model", "ok", "it calls tools (a flow's exits)")
    elif called:
        yield Finding("model", "fail", "it called the tool with arguments that are not a JSON "
                                       "object: the flow's exits will be ignored")
    else:
        said = f" (it said {text[:60]!r})" if text else ""
        yield Finding("model", "fail", f"it did not call the tool it was asked to{said}: the "
                                       f"flow's exits will never be taken; use a model with "
                                       f"function calling")
    yield from check_speech(settings, client)


def _object(arguments: str) -> bool:
    try:
        return isinstance(json.loads(arguments or "{}"), dict)
    except ValueError:
        return False


def speech_voice(settings: Settings) -> OpenAIVoice:
    """The OpenAI voice of DEFAULT_FLOW's personality, else the default one."""
    registry = load_project(settings.project_root).registry
    flow = registry.flows.get(settings.default_flow) if registry else None
    personality = registry.personalities.get(flow.personality) if registry and flow else None
    voice = personality.voice.openai if personality else None
    return voice or OpenAIVoice()


def check_speech(settings: Settings, client: openai.OpenAI) -> Iterator[Finding]:
    """Synthesise one word in the default flow's voice."""
    voice = speech_voice(settings)
    try:
        Synthesizer(client).synthesize("Testing.", voice)
    except SpeechFailed as error:
        yield Finding("speech", "fail", f"{voice.model} ({voice.voice}): {error.detail}; calls "
                                        f"fall back to the personalities' Twilio voices"[:400])
        return
    yield Finding("speech", "ok", f"{voice.model} ({voice.voice}) answers with audio")
