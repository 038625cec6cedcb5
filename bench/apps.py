"""The WSGI apps the benchmarks serve with gunicorn (`gunicorn -c gunicorn.conf.py bench.apps:app`).

`BENCH_APP` picks one:
- `phoney`: `create_app()` exactly as `app.py` makes it (settings from the environment);
- `whole-reply`: the same app, with the model responder replaced by one that makes a plain
  non-streaming call and answers only once the whole reply is in (the webhook-style baseline of
  bench/first_audio.py);
- `bare`: a Flask app whose Twilio routes return one fixed TwiML string, with no signature check,
  no store and no flow: the floor a Flask route under the same gunicorn configuration can reach.

`BENCH_SPEECH_WARMUP=0` turns the speech warm-up off (bench/speech_cache.py's cold cache).
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response

from engine.ai.errors import classify
from engine.ai.model import ModelResponder
from engine.ai.responder import reply_target
from engine.ai.speakable import limit_reply
from engine.flows.model import Flow, Registry
from engine.runtime.state import AskModel, CallState, Failed, Replied

BARE_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/api/voice/input?step=1" '
    'actionOnEmptyResult="true" hints="appointment, cleaning, checkup" input="speech dtmf" '
    'language="en-US" method="POST" speechTimeout="auto" timeout="5"><Say language="en-US" '
    'voice="Polly.Joanna-Neural">Thanks for calling Acme Dental.</Say><Say language="en-US" '
    'voice="Polly.Joanna-Neural">This is the virtual receptionist. How can I help you today?'
    '</Say></Gather><Redirect method="POST">/api/voice/silence?step=1</Redirect></Response>')


def bare_app() -> Flask:
    app = Flask("bare")

    def answer() -> Response:
        return Response(BARE_TWIML, status=200, mimetype="text/xml")

    for path in ("/api/incoming-call", "/api/voice/input", "/api/voice/silence"):
        app.add_url_rule(path, path, answer, methods=["POST"])
    app.add_url_rule("/ping", "ping", lambda: "ok")
    return app


class WholeReplyResponder(ModelResponder):
    """The webhook-style baseline: one non-streaming request, the whole reply, then TwiML.

    Same prompt, model, temperature and sentence limit as `ModelResponder` builds them; only the
    waiting differs."""

    def answer(self, flow: Flow, registry: Registry, state: CallState, ask: AskModel,
               started: float) -> Replied | Failed:
        target = reply_target(flow, registry, ask, self.clock())
        if isinstance(target, Failed):
            return target
        node, personality = target
        request: dict[str, Any] = self._request(flow, node, personality, state)
        request["stream"] = False
        try:
            completion = self.client.chat.completions.create(**request)
        except Exception as error:
            found = classify(error)
            return Failed(self.clock(), found.kind, found.detail, found.retry_after)
        text = completion.choices[0].message.content or ""
        return Replied(self.clock(), limit_reply(text, personality.style.max_sentences),
                       personality=personality.id)


def phoney_app(whole_reply: bool = False) -> Flask:
    from engine.web import create_app

    config: dict[str, Any] = {}
    if os.environ.get("BENCH_SPEECH_WARMUP") == "0":
        config["SPEECH_WARMUP"] = False
    app = create_app(config or None)
    if whole_reply:
        service = app.extensions["phoney"].call_service
        streaming = service.responder
        if not isinstance(streaming, ModelResponder):
            raise RuntimeError("BENCH_APP=whole-reply needs OPENAI_API_KEY (a model responder)")
        service.responder = WholeReplyResponder(streaming.client, streaming.store,
                                                streaming.default_model, clock=streaming.clock)
    return app


def build(kind: str) -> Flask:
    if kind == "bare":
        return bare_app()
    if kind == "whole-reply":
        return phoney_app(whole_reply=True)
    if kind == "phoney":
        return phoney_app()
    raise ValueError(f"BENCH_APP={kind!r}: expected phoney, whole-reply or bare")


app = build(os.environ.get("BENCH_APP", "phoney"))
