"""The WSGI apps the benchmarks serve with gunicorn (`gunicorn -c gunicorn.conf.py bench.apps:app`).

`BENCH_APP` picks one:
- `phoney`: `create_app()` exactly as `app.py` makes it (settings from the environment);
- `whole-reply`: the same app, with the model responder replaced by one that makes a plain
  non-streaming call and answers only once the whole reply is in (the webhook-style baseline of
  bench/first_audio.py);
- `bare`: a Flask app whose Twilio routes return one fixed TwiML string, with no signature check,
  no store and no flow: the floor a Flask route under the same gunicorn configuration can reach;
- `peer`: what a careful hand-written webhook does for a new call, and no more: it checks the
  signature with the twilio SDK's `RequestValidator`, writes the call (CallSid, From, To and a
  JSON blob of a few hundred bytes) to SQLite (WAL, one connection per thread) and answers with
  the TwiML Phoney answers for the bundled receptionist's greeting, built with the SDK's
  `VoiceResponse` (a `<Gather>` holding the greeting's two `<Play>`s, then a `<Redirect>`). It
  reads `TWILIO_AUTH_TOKEN`, `PUBLIC_BASE_URL` and `STORE_URL` (`sqlite:///path`) as Phoney does.

`BENCH_SPEECH_WARMUP=0` turns the speech warm-up off (bench/speech_cache.py's cold cache).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from typing import Any

from flask import Flask, Response, request
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Gather, VoiceResponse

from engine.ai.errors import classify
from engine.ai.model import ModelResponder, shared_client
from engine.ai.responder import reply_target
from engine.ai.speakable import limit_reply
from engine.calls import EventRecorder
from engine.flows.model import Flow, Registry
from engine.runtime.state import AskModel, CallState, Failed, Replied
from engine.settings import Settings
from engine.store import open_store

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


# The greeting of the bundled receptionist as Phoney answers it (`hints` and the two cached
# audio files of its greeting and opening), copied from one real answer.
PEER_HINTS = "appointment, cleaning, checkup, insurance, receptionist, front desk, emergency"
PEER_AUDIO = ("3972c387b68f20d8f7ec7325465342adbd8e3f00",
              "5f3719f99772ddbe36bbff6acffc5a29df40758f")
PEER_SCHEMA = ("CREATE TABLE IF NOT EXISTS calls (call_sid TEXT PRIMARY KEY, caller TEXT NOT NULL,"
               " called TEXT NOT NULL, data TEXT NOT NULL, started_at REAL NOT NULL)")


def _peer_database(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 5000")
    deadline = time.monotonic() + 10
    while True:  # both workers open the file at once; the switch to WAL does not wait for locks
        try:
            db.execute("PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(PEER_SCHEMA)
    return db


def peer_app() -> Flask:
    app = Flask("peer")
    validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
    base = os.environ["PUBLIC_BASE_URL"].rstrip("/")
    path = os.environ["STORE_URL"].removeprefix("sqlite:///")
    local = threading.local()
    _peer_database(path).close()  # the schema, once a worker

    def database() -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(local, "db", None)
        if db is None:
            db = local.db = _peer_database(path)
        return db

    def incoming_call() -> Response:
        form = request.form
        if not validator.validate(base + request.full_path.rstrip("?"), form,
                                  request.headers.get("X-Twilio-Signature", "")):
            return Response(status=403)
        sid, caller, called = form.get("CallSid", ""), form.get("From", ""), form.get("To", "")
        data = {"caller": {"number": caller, "city": form.get("FromCity", ""),
                           "state": form.get("FromState", ""), "zip": form.get("FromZip", ""),
                           "country": form.get("FromCountry", "")},
                "called": called, "account": form.get("AccountSid", ""),
                "direction": form.get("Direction", ""), "status": form.get("CallStatus", ""),
                "flow": "receptionist", "node": "greet", "path": ["greet"], "step": 1,
                "turn": 0, "history": []}
        db = database()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT INTO calls (call_sid, caller, called, data, started_at)"
                       " VALUES (?, ?, ?, ?, ?)",
                       (sid, caller, called, json.dumps(data), time.time()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        answer = VoiceResponse()
        gather = Gather(action=f"{base}/api/voice/input?step=1", action_on_empty_result=True,
                        hints=PEER_HINTS, input="speech dtmf", language="en-US",
                        method="POST", speech_timeout="auto", timeout=5)
        for key in PEER_AUDIO:
            gather.play(f"{base}/audio/{key}.mp3")
        answer.append(gather)
        answer.redirect(f"{base}/api/voice/silence?step=1", method="POST")
        return Response(str(answer), status=200, mimetype="text/xml")

    app.add_url_rule("/api/incoming-call", "incoming_call", incoming_call, methods=["POST"])
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
    from engine.web.app import create_app

    config: dict[str, Any] = {}
    if os.environ.get("BENCH_SPEECH_WARMUP") == "0":
        config["SPEECH_WARMUP"] = False
    if not whole_reply:
        return create_app(config or None)
    # The whole-reply baseline: the same app with its responder handed to the composition root.
    settings = Settings.load(config)
    if not settings.openai_api_key:
        raise RuntimeError("BENCH_APP=whole-reply needs OPENAI_API_KEY (a model responder)")
    store = open_store(settings.store_url, encryption_key=settings.encryption_key)
    recorder = EventRecorder(store)
    responder = WholeReplyResponder(shared_client(settings.openai_api_key,
                                                  settings.openai_base_url),
                                    store, settings.openai_model, recorder=recorder)
    return create_app(config or None, store=store, recorder=recorder, responder=responder)


def build(kind: str) -> Flask:
    if kind == "bare":
        return bare_app()
    if kind == "peer":
        return peer_app()
    if kind == "whole-reply":
        return phoney_app(whole_reply=True)
    if kind == "phoney":
        return phoney_app()
    raise ValueError(f"BENCH_APP={kind!r}: expected phoney, whole-reply, bare or peer")


app = build(os.environ.get("BENCH_APP", "phoney"))
