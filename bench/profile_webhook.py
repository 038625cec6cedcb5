"""Where a webhook's CPU goes: Phoney's webhooks in-process, timed part by part.

`python -m bench.profile_webhook` builds the app as bench/webhook_floor.py serves it (the bundled
flows, an OpenAI double for the voices, the greeting warmed into the audio cache, a SQLite file
store) and calls the WSGI app directly with signed requests built beforehand, so neither HTTP
nor a test client is counted. For each kind of webhook (a new incoming call, the no-input
reprompt of a call at step 1, a repeated incoming call answered from the store) it reports:

1. the median wall time of one request, with nothing instrumented;
2. the inclusive time of the named parts below (the median and the mean over requests, µs a
   request) and their calls a request, measured by wrapping each with a timer (only the
   outermost call of a part counts, so recursion inside one part is not counted twice; parts
   do nest inside each other: the store's transactions inside the call service, for one). The
   timers add a little to every part: compare parts with each other, and the whole with (1);
3. optionally (`--cprofile N`) the top functions of a cProfile run, by own time.

It also counts the store's transactions a request (write transactions with BEGIN IMMEDIATE, and
reads), and times gunicorn's access log line for one request with this repository's
gunicorn.conf.py (the app's log redaction installed, as in a worker).

Numbers are for comparing parts with each other on one machine, in one run; the machine is
shared, so run it twice before trusting a small difference.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    OPENAI_KEY,
    PASSWORD,
    ROOT,
    TOKEN,
    Signed,
    call_sid,
    gather_input,
    incoming,
    make_project,
    workdir,
)

BASE_URL = "http://phoney.bench"
REQUESTS = 400
BATCHES = 5


# -- timed parts ----------------------------------------------------------------------------------

@dataclass
class Part:
    name: str
    seconds: float = 0.0  # in the request under way
    calls: int = 0
    depth: int = 0  # > 0 while an outer call of this part runs (nested calls are not counted)
    samples: list[float] = field(default_factory=list)  # seconds, one a request

    def request_done(self) -> None:
        self.samples.append(self.seconds)
        self.seconds = 0.0


@dataclass
class Timers:
    parts: dict[str, Part] = field(default_factory=dict)
    undo: list[Callable[[], None]] = field(default_factory=list)

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        """Time `owner.attribute` (a function or method) under `name` from now on."""
        original = owner.__dict__[attribute] if isinstance(owner, type) else getattr(
            owner, attribute)
        part = self.parts.setdefault(name, Part(name))
        raw = original.__func__ if isinstance(original, (staticmethod, classmethod)) \
            else original

        @functools.wraps(raw)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if part.depth:
                return raw(*args, **kwargs)
            part.depth += 1
            started = time.perf_counter()
            try:
                return raw(*args, **kwargs)
            finally:
                part.seconds += time.perf_counter() - started
                part.calls += 1
                part.depth -= 1

        replacement: Any = timed
        if isinstance(original, staticmethod):
            replacement = staticmethod(timed)
        elif isinstance(original, classmethod):
            replacement = classmethod(timed)
        setattr(owner, attribute, replacement)
        self.undo.append(lambda: setattr(owner, attribute, original))

    def wrap_hooks(self, app: Any) -> None:
        """Time every before/after/teardown request function registered on the app and its
        blueprints, each under its own name."""
        for registry_name in ("before_request_funcs", "after_request_funcs",
                              "teardown_request_funcs"):
            registry: dict[str | None, list[Any]] = getattr(app, registry_name)
            for scope, functions in registry.items():
                for index, function in enumerate(list(functions)):
                    label = getattr(function, "__qualname__", None) or getattr(
                        getattr(function, "func", None), "__qualname__", repr(function))
                    name = f"hook {registry_name.split('_')[0]}: {scope or 'app'}: {label}"
                    holder = _Slot(functions, index)
                    self.wrap(holder, "value", name)
                    functions[index] = holder.value

                    def restore(functions: list[Any] = functions, index: int = index,
                                function: Any = function) -> None:
                        functions[index] = function

                    self.undo.append(restore)

    def reset(self) -> None:
        for part in self.parts.values():
            part.seconds, part.calls, part.samples = 0.0, 0, []

    def request_done(self) -> None:
        for part in self.parts.values():
            part.request_done()

    def restore(self) -> None:
        for undo in reversed(self.undo):
            undo()
        self.undo.clear()


class _Slot:
    """A list entry as an attribute, so `Timers.wrap` can replace it."""

    def __init__(self, items: list[Any], index: int) -> None:
        self.value = items[index]


# (module, attribute path, label): what `instrument` times. A target the code no longer has
# (renamed, moved) is skipped and listed, so the script keeps working while the code moves.
TARGETS: tuple[tuple[str, str, str], ...] = (
    ("engine.web.voice", "VoiceWebhooks.__call__", "whole webhook (VoiceWebhooks, ahead of Flask)"),
    ("engine.web.voice", "read_fields", "form: read within the limits"),
    ("engine.web.voice", "known_fields", "form: the known fields"),
    ("flask", "Flask.wsgi_app", "whole request (Flask wsgi_app)"),
    ("flask", "Flask.full_dispatch_request", "dispatch (hooks + view)"),
    ("flask", "Flask.dispatch_request", "view function"),
    ("flask", "Request._load_form_data", "form parsing (werkzeug)"),
    ("flask.sessions", "SecureCookieSessionInterface.open_session", "session: open"),
    ("flask.sessions", "SecureCookieSessionInterface.save_session", "session: save"),
    ("engine.web.voice", "is_signed", "signature check (is_signed)"),
    ("twilio.request_validator", "RequestValidator.compute_signature",
     "  signature: compute_signature"),
    ("engine.web.voice", "_request_key", "request key (sha256 of the form)"),
    ("engine.calls.urls", "CallbackUrls.for_step", "callbacks (CallbackUrls.for_step)"),
    ("engine.calls.service", "render", "TwiML render (engine.twiml.render)"),
    # Where these lived before engine/calls/ (kept, to profile older commits the same way):
    ("engine.web.voice", "url_for", "url_for (callback URLs)"),
    ("engine.web.voice", "_callbacks", "callbacks (url_for x5 + Callbacks)"),
    ("engine.web.call_service", "render", "TwiML render (engine.twiml.render)"),
    ("engine.web.call_service", "step", "runtime step"),
    ("engine.web.call_service", "CallService.incoming", "call service: incoming"),
    ("engine.web.call_service", "CallService.advance", "call service: advance"),
    ("engine.web.call_limits", "refuse_caller", "caller limit (refuse_caller)"),
    ("twilio.twiml", "TwiML.to_xml", "  TwiML: to_xml (ElementTree)"),
    ("engine.calls.service", "step", "runtime step"),
    ("engine.calls.service", "start_state", "start_state"),
    ("engine.calls.service", "CallService._voice", "voicing (CallService._voice)"),
    ("engine.speech.voices", "SpeechVoicing.__call__", "voicing (audio cache lookup)"),
    ("engine.calls.service", "CallService.incoming", "call service: incoming"),
    ("engine.calls.service", "CallService.advance", "call service: advance"),
    ("engine.calls.service", "caller_quota", "caller limit (caller_quota)"),
    ("engine.store.sqlite", "state_to_dict", "state_to_dict"),
    ("engine.store.sqlite", "state_from_dict", "state_from_dict"),
    ("engine.store.sqlite", "_dumps", "json dumps (state, events)"),
    ("engine.store.sqlite", "SQLiteStore._transaction", "store: write transaction (enter)"),
    *(("engine.store.sqlite", f"SQLiteStore.{method}", f"store: {method}")
      for method in ("lookup", "stored_response", "get_state", "incr_window", "commit_step",
                     "commit_new_call", "record_events", "get_blob")),
    ("engine.web.metrics", "events_written", "metrics: events_written"),
    ("engine.calls.recorder", "EventRecorder.written", "events written (observers)"),
    ("logging", "Logger._log", "logging: records made and handled"),
)


def instrument(timers: Timers, app: Any) -> list[str]:
    """Wrap every target this code has; the labels of those it has not."""
    import importlib

    missing = []
    for module_name, path, label in TARGETS:
        try:
            owner: Any = importlib.import_module(module_name)
        except ImportError:
            missing.append(label)
            continue
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent, None)
        if owner is None or attribute not in vars(owner):
            missing.append(f"{label} ({module_name}.{path})")
            continue
        timers.wrap(owner, attribute, label)
    timers.wrap_hooks(app)
    library = app.extensions["phoney"].library
    timers.wrap(library, "choose", "library: choose")
    timers.wrap(library, "pinned", "library: pinned")
    return missing


class TransactionCounter:
    """Counts the SQL a request sends, by kind, from the store's connections' trace hook."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def trace(self, statement: str) -> None:
        word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        if word == "BEGIN":
            word = "BEGIN " + statement.split()[1].upper() if len(statement.split()) > 1 \
                else word
        self.counts[word] = self.counts.get(word, 0) + 1

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from engine.store import sqlite

        original = sqlite.SQLiteStore._open

        def traced_open(store: Any) -> Any:
            db = original(store)
            db.set_trace_callback(self.trace)
            return db

        sqlite.SQLiteStore._open = traced_open  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            sqlite.SQLiteStore._open = original  # type: ignore[method-assign]


# -- the app and its requests ---------------------------------------------------------------------

def environ_for(signed: Signed) -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    path, _, query = signed.path.partition("?")
    builder = EnvironBuilder(path=path, query_string=query, method="POST", base_url=BASE_URL,
                             headers=list(signed.headers().items()),
                             data=signed.body.encode())
    try:
        return builder.get_environ()
    finally:
        builder.close()


def call(app: Any, environ: dict[str, Any]) -> bytes:
    status: list[str] = []

    def start_response(line: str, headers: Any, exc_info: Any = None) -> None:
        status.append(line)

    body = b"".join(app(environ, start_response))
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"webhook answered {status}: {body[:300]!r}")
    return body


@dataclass
class Bench:
    app: Any
    sids: Iterator[int]

    def new_calls(self, count: int) -> list[dict[str, Any]]:
        return [environ_for(incoming(BASE_URL, call_sid(next(self.sids), "profile")))
                for _ in range(count)]

    def reprompts(self, count: int) -> list[dict[str, Any]]:
        """New calls, made now (not timed), and the no-input webhook of each at step 1."""
        sids = [call_sid(next(self.sids), "profile") for _ in range(count)]
        for sid in sids:
            call(self.app, environ_for(incoming(BASE_URL, sid)))
        return [environ_for(gather_input(BASE_URL, sid, 1)) for sid in sids]

    def repeats(self, count: int) -> list[dict[str, Any]]:
        sids = [call_sid(next(self.sids), "profile") for _ in range(count)]
        signed = [incoming(BASE_URL, sid) for sid in sids]
        for item in signed:
            call(self.app, environ_for(item))
        return [environ_for(item) for item in signed]

    def make(self, kind: str, count: int) -> list[dict[str, Any]]:
        return {"incoming": self.new_calls, "reprompt": self.reprompts,
                "stored": self.repeats}[kind](count)


def build_app(scratch: Any, openai_url: str) -> Any:
    try:
        from engine.web.app import create_app
    except ImportError:  # older commits
        from engine.web import create_app  # type: ignore[attr-defined,no-redef]

    project = make_project(scratch / "project")
    config = {
        "PROJECT_ROOT": str(project), "STORE_URL": f"sqlite:///{scratch / 'profile.sqlite3'}",
        "PUBLIC_BASE_URL": BASE_URL, "TWILIO_AUTH_TOKEN": TOKEN,
        "DASHBOARD_PASSWORD": PASSWORD, "SECRET_KEY": "bench-secret",
        "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": openai_url,
        "SPEECH_WARMUP": False, "RELOAD": False,
        "MAX_LIVE_CALLS": "off",  # the profile's calls never end: all would stay live
    }
    app = create_app(config)
    warmup = app.extensions["phoney"].warmup
    if warmup is None:
        raise RuntimeError("no speech warm-up: the OpenAI double is not configured")
    warmup.run()
    return app


def timed_batches(app: Any, bench: Bench, kind: str, count: int) -> list[float]:
    """Seconds a request, one median per batch (requests built before each batch)."""
    out = []
    for _ in range(BATCHES):
        environs = bench.make(kind, count // BATCHES)
        times = []
        for environ in environs:
            started = time.perf_counter()
            call(app, environ)
            times.append(time.perf_counter() - started)
        out.append(statistics.median(times))
    return out


# -- gunicorn's access log ------------------------------------------------------------------------

def access_log_cost(scratch: Any, count: int = 3000) -> dict[str, float]:
    """µs for one access line: gunicorn's own logger, the logger_class gunicorn.conf.py picks
    (both writing to a file, as the benchmarks' servers write their stdout to one), and no
    access log at all. Run after the app was made, so its log redaction is installed."""
    import datetime
    import runpy

    from gunicorn.config import Config  # type: ignore[import-untyped]
    from gunicorn.glogging import Logger  # type: ignore[import-untyped]

    environ = environ_for(incoming(BASE_URL, call_sid(0, "access")))
    environ.update({"RAW_URI": "/api/incoming-call", "SERVER_PROTOCOL": "HTTP/1.1",
                    "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "TwilioProxy/1.1"})

    class Resp:
        status = "200 OK"
        sent = 612
        headers = (("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", "612"))

    class Req:
        headers = (("HOST", "phoney.bench"), ("X-TWILIO-SIGNATURE", "x" * 28),
                   ("CONTENT-TYPE", "application/x-www-form-urlencoded"),
                   ("CONTENT-LENGTH", "300"), ("USER-AGENT", "TwilioProxy/1.1"))

    configured = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    results = {}
    for label, logger_class, accesslog in (
            ("gunicorn's Logger", "gunicorn.glogging.Logger", str(scratch / "access-1.log")),
            ("gunicorn.conf.py's logger_class", configured.get("logger_class",
                                                               "gunicorn.glogging.Logger"),
             str(scratch / "access-2.log")),
            ("access log off", "gunicorn.glogging.Logger", None)):
        cfg = Config()
        if "access_log_format" in configured:
            cfg.set("access_log_format", configured["access_log_format"])
        cfg.set("logger_class", logger_class)
        cfg.set("accesslog", accesslog)
        cfg.set("errorlog", str(scratch / "error.log"))
        logger = cfg.logger_class(cfg)
        assert isinstance(logger, Logger)
        delta = datetime.timedelta(microseconds=2345)
        started = time.perf_counter()
        for _ in range(count):
            logger.access(Resp(), Req(), environ, delta)
        results[f"{label} ({cfg.logger_class.__name__})"] = \
            (time.perf_counter() - started) / count * 1e6
    return results


# -- report ---------------------------------------------------------------------------------------

def report(kind: str, baseline: list[float], timers: Timers, count: int,
           transactions: dict[str, int]) -> None:
    print(f"\n== {kind}: {statistics.median(baseline) * 1e6:.0f} µs a request, uninstrumented "
          f"(median of {len(baseline)} batch medians: "
          + ", ".join(f"{value * 1e6:.0f}" for value in baseline) + ")")
    rows = sorted((part for part in timers.parts.values() if part.calls),
                  key=lambda part: statistics.median(part.samples), reverse=True)
    print(f"{'part (inclusive; indented: inside the line above it)':62} {'median':>7} "
          f"{'mean':>7} {'calls':>6}   (µs a request)")
    for part in rows:
        print(f"{part.name[:62]:62} {statistics.median(part.samples) * 1e6:7.1f} "
              f"{statistics.fmean(part.samples) * 1e6:7.1f} {part.calls / count:6.2f}")
    if transactions:
        print("SQL statements a request: " + ", ".join(
            f"{name} {value / count:.2f}" for name, value in sorted(transactions.items())))


def profile_kind(app: Any, bench: Bench, kind: str, count: int, counter: TransactionCounter,
                 top: int) -> None:
    for environ in bench.make(kind, 100):  # warm every path
        call(app, environ)
    baseline = timed_batches(app, bench, kind, count)
    timers = Timers()
    missing = instrument(timers, app)
    try:
        environs = bench.make(kind, count)
        timers.reset()
        counter.counts.clear()
        for environ in environs:
            call(app, environ)
            timers.request_done()
        counts = dict(counter.counts)
    finally:
        timers.restore()
    out = sys.__stdout__ or sys.stdout
    with contextlib.redirect_stdout(out):
        report(kind, baseline, timers, count, counts)
        if missing:
            print(f"({len(missing)} targets not in this code: " + "; ".join(missing) + ")")
    if top:
        environs = bench.make(kind, count)
        profile = cProfile.Profile()
        profile.enable()
        for environ in environs:
            call(app, environ)
        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(top)
        print(f"-- cProfile, {kind}, {count} requests (own time):", file=out)
        print(text.getvalue().split("ncalls", 1)[-1][:8000], file=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=REQUESTS,
                        help="requests of each kind for each measurement")
    parser.add_argument("--kinds", default="incoming,reprompt,stored")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N",
                        help="also list the top N functions of a cProfile run")
    args = parser.parse_args()
    from tests.doubles.openai_server import Audio, OpenAIDouble

    with workdir("profile") as scratch, OpenAIDouble(api_key=OPENAI_KEY) as double:
        double.default_speech(Audio())
        counter = TransactionCounter()
        # Log lines go where a worker's would (a file), not to this terminal.
        with (scratch / "app.log").open("w") as app_log, counter.installed(), \
                contextlib.redirect_stderr(app_log):
            app = build_app(scratch, double.base_url)
            bench = Bench(app, iter(range(10**9)))
            for kind in args.kinds.split(","):
                profile_kind(app, bench, kind, args.requests, counter, args.cprofile)
        print("\n== gunicorn's access log, µs a request: " + "; ".join(
            f"{label} {value:.1f}" for label, value in access_log_cost(scratch).items()))


if __name__ == "__main__":
    main()
