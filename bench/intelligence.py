"""9. Call intelligence: what scoring sentiment costs a webhook, and what post-call analysis and
the business's webhooks add to webhook latency (nothing, they run off the call path).

Sentiment: bench/sentiment_cost.py in this process: the CPU of scoring one utterance against
the in-process round trip of the voice webhook that carries it (bar: 5%).

Analysis and webhooks: two servers (`gunicorn -c gunicorn.conf.py`, as shipped) on the same
OpenAI double, with the bundled flows:
- `on`: support_triage as bundled (its `analysis:`), `CALL_WEBHOOK_URL` pointing at a local
  receiver that answers 200, and `WEBHOOK_SECRET`;
- `off`: the same flows with `analysis:` and `webhooks:` taken out, and no `CALL_WEBHOOK_URL`.
Each sample is a whole call on support_triage, alternating between the servers: the incoming
call, the caller asking for "something else" (on to the assistant), a question the model answers,
and Twilio's final status callback, which starts the analysis (a model request, and a second one
as the double's reply is not the JSON asked for) and the webhook posts of the call's end and
analysis, while the next calls come in. The time of a call is the sum of its four webhooks'
times; the bar is the median `on` within 1.05 of the median `off`.
"""

from __future__ import annotations

import argparse
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

from bench.common import (
    OPENAI_KEY,
    Row,
    Server,
    Signed,
    call_params,
    call_sid,
    main_for,
    make_project,
    median,
    ms,
    note,
    post,
    workdir,
)
from bench.sentiment_cost import cost
from tests.doubles.openai_server import OpenAIDouble, Text

FLOW_NUMBER = "+15550003000"  # support_triage's
SAMPLES = 80
LATENCY_BAR = 1.05
SCORING_BAR = 0.05
REPLY = "We can help with that. Is there anything else?"
_ACTION = re.compile(r'action="[^"]*?/api/voice/input\?step=(\d+)"')


@contextmanager
def receiver() -> Iterator[list[bytes]]:
    """A business's webhook receiver on a local port, answering 200 to every post."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        received.append(f"http://127.0.0.1:{server.server_address[1]}/hooks".encode())
        yield received
    finally:
        server.shutdown()
        server.server_close()


def without_intelligence(project: Path) -> None:
    """The project's flows with no `analysis:` and no `webhooks:`."""
    for path in (project / "flows").glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if "analysis" in data or "webhooks" in data:
            data.pop("analysis", None)
            data.pop("webhooks", None)
            path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def one_call(session: requests.Session, url: str, sid: str) -> float:
    """Seconds of the four webhooks of one call on support_triage (see the module's doc)."""
    params = {"To": FLOW_NUMBER}
    total, answer = post(session, url, Signed.make(url, "/api/incoming-call",
                                                   call_params(sid, CallStatus="ringing",
                                                               **params)))
    for speech in ("I have a question about something else.", "Can you change my plan?"):
        found = _ACTION.search(answer.text)
        if answer.status_code != 200 or not found:
            raise RuntimeError(f"{sid}: no gather in {answer.text[:300]}")
        seconds, answer = post(session, url, Signed.make(
            url, f"/api/voice/input?step={found.group(1)}",
            call_params(sid, SpeechResult=speech, Confidence="0.92", **params)))
        total += seconds
    seconds, done = post(session, url, Signed.make(url, "/api/call-status", call_params(
        sid, CallStatus="completed", CallDuration="42", **params)))
    if done.status_code >= 400:
        raise RuntimeError(f"{sid}: status callback answered {done.status_code}")
    return total + seconds


def measure(args: argparse.Namespace) -> list[Row]:
    samples = 6 if args.quick else SAMPLES
    scoring, webhook_cpu, _ = cost()
    times: dict[str, list[float]] = {"on": [], "off": []}
    with workdir("intelligence") as scratch, OpenAIDouble(api_key=OPENAI_KEY) as double, \
            receiver() as received:
        hook_url = received.pop(0).decode()
        double.default_chat(Text(REPLY))
        projects = {name: make_project(scratch / name, openai_voices=False) for name in times}
        without_intelligence(projects["off"])
        common = {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": double.base_url,
                  "CALLER_CALL_LIMIT": "off"}
        servers = {
            "on": Server("on", scratch, project=projects["on"], env={
                **common, "CALL_WEBHOOK_URL": hook_url,
                "WEBHOOK_SECRET": "bench-webhook-secret-0123456789"}),
            "off": Server("off", scratch, project=projects["off"], env=common),
        }
        for server in servers.values():
            server.start()
        try:
            sessions = {name: requests.Session() for name in servers}
            for number in range(samples + 1):  # the first round warms both up
                for name, server in servers.items():
                    seconds = one_call(sessions[name], server.url,
                                       call_sid(number, f"intelligence-{name}"))
                    if number > 0:
                        times[name].append(seconds)
            analyses = sum(1 for r in double.chat_requests
                           if isinstance(r.body, dict) and "response_format" in r.body)
            errors = sum(server.errors_logged() for server in servers.values())
        finally:
            for server in servers.values():
                server.stop()
    on, off = median(times["on"]), median(times["off"])
    note(f"intelligence: on {[round(t * 1000, 1) for t in times['on']]} ms")
    note(f"intelligence: off {[round(t * 1000, 1) for t in times['off']]} ms")
    return [
        Row("9. sentiment: scoring one utterance, share of its webhook's CPU",
            f"{scoring * 1e6:.1f} µs", f"{webhook_cpu * 1e6:.0f} µs the webhook (in-process)",
            scoring / webhook_cpu, f"<= {SCORING_BAR:.0%}", scoring / webhook_cpu <= SCORING_BAR,
            note="CPU time, bench/sentiment_cost.py"),
        Row("9. a call's webhooks with analysis and business webhooks running (median)",
            ms(on), f"{ms(off)} without them", on / off, f"<= {LATENCY_BAR:.2f}",
            on / off <= LATENCY_BAR,
            note=f"{samples} calls each, alternating; {analyses} analysis requests reached the "
                 f"model double and {len(received)} posts the receiver during the run; "
                 f"{errors} server tracebacks"),
    ]


if __name__ == "__main__":
    main_for("9. Call intelligence: sentiment cost, analysis and webhooks off the call path",
             measure)
