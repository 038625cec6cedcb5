"""8. An http node's webhook: its time against the API's own, measured side by side in one run.

A local JSON API (real sockets on 127.0.0.1) answers each request after `API_DELAY`. A flow
whose start is an http node (request, `save`, then a say and a hang-up) is rung in through the
app's real incoming-call webhook (signed, in process through Flask's test client): that
webhook sends the request through the HTTP client (the host policy, the checked connection,
the JSON read), saves the value, steps on, commits state and events and answers TwiML. The
baseline is the same request made with `http.client` on a kept-alive connection, alternating
call by call with the webhooks, so noise hits both alike. Bar: the webhook's median at most
20 ms above the API's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.common import ROOT, TOKEN, Row, main_for, median, ms, note, workdir
from engine.authoring.transports import client_transport
from engine.simulator import SimulatedCall
from engine.web.app import create_app

API_DELAY = 0.05
CALLS = 200
BAR_MS = 20.0

FLOW = """\
flow: lookup
personality: friendly
vars: {business: Acme Dental}
start: check
nodes:
  check:
    type: http
    request: {url: "BASE/slots?day=monday", headers: {Authorization: "Bearer ${BENCH_TOKEN}"},
              timeout: 3}
    save: {first_slot: "$.slots[0].label"}
    next: offer
    on_error: {http: {then: bye}}
  offer: {type: say, text: "The first slot is {{ vars.first_slot }}.", next: bye}
  bye: {type: hangup, text: Goodbye.}
"""
BODY = json.dumps({"slots": [{"label": "9am"}, {"label": "2pm"}]}).encode()


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        time.sleep(API_DELAY)  # the API's own work
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_api() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def measure(args: argparse.Namespace) -> list[Row]:
    calls = 20 if args.quick else CALLS
    with workdir("http") as scratch, serve_api() as port:
        (scratch / "flows").mkdir()
        shutil.copytree(ROOT / "personalities", scratch / "personalities")
        base = f"http://127.0.0.1:{port}"
        (scratch / "flows" / "lookup.yaml").write_text(FLOW.replace("BASE", base))
        os.environ["BENCH_TOKEN"] = "bench-secret-value"  # the flow's ${BENCH_TOKEN}
        app = create_app({"PROJECT_ROOT": str(scratch), "TWILIO_AUTH_TOKEN": TOKEN,
                          "STORE_URL": f"sqlite:///{Path(scratch) / 'calls.db'}",
                          "DEFAULT_FLOW": "lookup", "HTTP_ALLOW_HOSTS": "127.0.0.1",
                          "CALLER_CALL_LIMIT": "off", "MAX_LIVE_CALLS": "off",
                          "DASHBOARD_PASSWORD": "bench", "SECRET_KEY": "bench"})
        transport = client_transport(app.test_client())
        plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        webhook: list[float] = []
        baseline: list[float] = []
        for number in range(calls + 5):  # the first five warm both up
            started = time.perf_counter()
            plain.request("GET", "/slots?day=monday",
                          headers={"Authorization": "Bearer bench-secret-value"})
            response = plain.getresponse()
            response.read()
            api_time = time.perf_counter() - started
            call = SimulatedCall(transport, "http://localhost", TOKEN)
            started = time.perf_counter()
            answer = call.post("/api/incoming-call", {"CallStatus": "ringing"})
            webhook_time = time.perf_counter() - started
            if "The first slot is 9am." not in answer.body:
                raise RuntimeError(f"the webhook did not say the saved slot: {answer.body}")
            if number >= 5:
                baseline.append(api_time)
                webhook.append(webhook_time)
        plain.close()
        app.extensions["phoney"].store.close()
    over = (median(webhook) - median(baseline)) * 1000
    note(f"http node: webhook median {ms(median(webhook))}, API {ms(median(baseline))}")
    return [Row(f"8. http node webhook, API answering in {API_DELAY * 1000:.0f} ms: median",
                ms(median(webhook)), f"{ms(median(baseline))} the API alone",
                median(webhook) / median(baseline), f"≤ +{BAR_MS:.0f} ms", over <= BAR_MS,
                note=f"{over:.1f} ms over the API's own time at the median, over {calls} calls "
                     "(the request, the save, the store commit and the TwiML)")]


if __name__ == "__main__":
    main_for("8. An http node's webhook vs the API's own time", measure)
