"""4. Event delay: a webhook received to its event at a server-sent events client and at Pusher;
and webhook times with a Pusher that takes a second to answer.

Two servers run side by side, each publishing to its own Pusher double (tests/doubles/
pusher_server.py, which checks signatures as Pusher does): `fast` answers at once, `slow` after
`SLOW` seconds. A dashboard client (logged in) reads `GET /api/events` from `fast`.
Each sample is a new call's incoming-call webhook, alternating between the servers with a random
pause between samples (so the samples do not lock step with the publisher's poll). The delay is
from sending the webhook to the `call.start` event of that call arriving: at the SSE client, and
at the Pusher double (the time it accepted the request holding it). Webhook times on `slow` are
compared with those on `fast`: a webhook must never wait for a sink.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from typing import Any

import requests

from bench.common import (
    PASSWORD,
    Row,
    Server,
    call_sid,
    incoming,
    main_for,
    make_project,
    median,
    ms,
    note,
    pct,
    post,
    wait_until,
    workdir,
)
from tests.doubles.pusher_server import PusherDouble

SAMPLES = 60
SLOW = 1.0
DELAY_BAR = 0.200
RATIO_BAR = 1.10


class StampedPusher(PusherDouble):
    """The Pusher double, noting when each call's events were accepted (monotonic)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: dict[tuple[str, str], float] = {}

    def answer(self, path: str, query: dict[str, str], body: bytes) -> tuple[int, str]:
        status, text = super().answer(path, query, body)
        if status == 200:
            now = time.monotonic()
            request = json.loads(body)
            for item in request.get("batch") or [request]:
                data = json.loads(item.get("data") or "{}")
                key = (str(data.get("call_sid", "")), str(item.get("name", "")))
                self.arrivals.setdefault(key, now)
        return status, text


class SSEClient:
    """A logged-in dashboard reading `/api/events`; notes when each call's events arrive."""

    def __init__(self, server: Server) -> None:
        self.session = requests.Session()
        answer = self.session.post(server.url + "/login", data={"password": PASSWORD},
                                   allow_redirects=False, timeout=10)
        if answer.status_code not in (302, 303):
            raise RuntimeError(f"login refused: HTTP {answer.status_code}")
        self.response = self.session.get(server.url + "/api/events", stream=True, timeout=60)
        if self.response.status_code != 200:
            raise RuntimeError(f"/api/events: HTTP {self.response.status_code}")
        self.arrivals: dict[tuple[str, str], float] = {}
        self.thread = threading.Thread(target=self._read, daemon=True, name="sse-client")
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                if line and line.startswith("data:"):
                    now = time.monotonic()
                    event: dict[str, Any] = json.loads(line[5:])
                    key = (str(event.get("call_sid", "")), str(event.get("name", "")))
                    self.arrivals.setdefault(key, now)
        except (requests.RequestException, ValueError, AttributeError):
            pass  # closed at the end of the run

    def close(self) -> None:
        self.response.close()


def measure(args: argparse.Namespace) -> list[Row]:
    samples = 8 if args.quick else SAMPLES
    rng = random.Random(4)
    webhook: dict[str, list[float]] = {"fast": [], "slow": []}
    sent: dict[str, list[tuple[str, float]]] = {"fast": [], "slow": []}  # (CallSid, sent at)
    with workdir("events") as scratch, StampedPusher() as one, StampedPusher() as two:
        project = make_project(scratch / "project", openai_voices=False)
        doubles = {"a": one, "b": two}
        servers = {name: Server(name, scratch, project=project, env={
            "PUSHER_APP_ID": double.app_id, "PUSHER_KEY": double.key,
            "PUSHER_SECRET": double.secret, "PUSHER_HOST": double.url,
            "PUSHER_CHANNELS": "private"}) for name, double in doubles.items()}
        for server in servers.values():
            server.start()
        clients: dict[str, SSEClient] = {}
        try:
            clients = {name: SSEClient(server) for name, server in servers.items()}
            sessions = {name: requests.Session() for name in servers}
            counter = 0
            # Two halves: a's Pusher slow and b's fast, then the other way round, so a
            # difference between the two servers cancels out.
            for slow_one in ("a", "b"):
                for name, double in doubles.items():
                    double.slow_for(3600 if name == slow_one else 0, SLOW)
                time.sleep(2 * SLOW)  # a backlog from the slow half drains first
                for number in range(samples // 2 + 1):  # the first round warms up
                    for name, server in servers.items():
                        sid = call_sid(counter, "events")
                        counter += 1
                        started = time.monotonic()
                        seconds, answer = post(sessions[name], server.url,
                                               incoming(server.url, sid))
                        if answer.status_code != 200 or "<Gather" not in answer.text:
                            raise RuntimeError(f"{name}: unexpected answer {answer.text[:300]}")
                        side = "slow" if name == slow_one else "fast"
                        if number > 0:
                            webhook[side].append(seconds)
                            sent[side].append((sid, started))
                        time.sleep(rng.uniform(0.05, 0.15))
            fast_sids = {sid for sid, _ in sent["fast"]}
            all_sent = sent["fast"] + sent["slow"]

            def arrived_everywhere() -> bool:
                at_sse = all(any((sid, "call.start") in c.arrivals for c in clients.values())
                             for sid, _ in all_sent)
                at_pusher = all(any((sid, "call.start") in d.arrivals for d in doubles.values())
                                for sid in fast_sids)
                return at_sse and at_pusher

            arrived = wait_until(arrived_everywhere, 15)
            errors = sum(server.errors_logged() for server in servers.values())
        finally:
            for client in clients.values():
                client.close()
            for server in servers.values():
                server.stop()
    if not arrived:
        note("event delay: some events never arrived (counted as missing)")

    def delays(where: list[dict[tuple[str, str], float]],
               which: list[tuple[str, float]]) -> list[float]:
        found = []
        for sid, at in which:
            times = [arrivals[(sid, "call.start")] for arrivals in where
                     if (sid, "call.start") in arrivals]
            if times:
                found.append(min(times) - at)
        return found

    to_sse = delays([c.arrivals for c in clients.values()], all_sent)
    to_pusher = delays([d.arrivals for d in doubles.values()], sent["fast"])
    missing = len(all_sent) - len(to_sse) + len(sent["fast"]) - len(to_pusher)
    fast, slow = median(webhook["fast"]), median(webhook["slow"])
    rows = [
        Row("4. event delay, webhook -> SSE client, p95", ms(pct(to_sse, 95)),
            f"median {ms(median(to_sse))}", None, f"<= {ms(DELAY_BAR)}",
            pct(to_sse, 95) <= DELAY_BAR and len(to_sse) == len(all_sent),
            note=f"{len(to_sse)}/{len(all_sent)} arrived; the stream polls the store every "
                 f"0.1 s"),
        Row("4. event delay, webhook -> Pusher HTTP API, p95", ms(pct(to_pusher, 95)),
            f"median {ms(median(to_pusher))}", None, f"<= {ms(DELAY_BAR)}",
            pct(to_pusher, 95) <= DELAY_BAR and len(to_pusher) == len(sent["fast"]),
            note=f"{len(to_pusher)}/{len(sent['fast'])} arrived; the publisher polls every "
                 f"0.1 s"),
        Row(f"4. webhook time, Pusher answering in {SLOW:.0f} s vs at once", ms(slow),
            f"{ms(fast)} fast Pusher", slow / fast, f"<= {RATIO_BAR:.2f}", slow / fast <= RATIO_BAR,
            note=f"medians of {len(webhook['slow'])} incoming-call webhooks each, half on each "
                 f"server; p95 {ms(pct(webhook['slow'], 95))} vs "
                 f"{ms(pct(webhook['fast'], 95))}"),
    ]
    if missing or errors:
        rows.append(Row("4. missing events / server tracebacks", f"{missing} / {errors}",
                        "0 / 0", None, "0 / 0", False))
    return rows


if __name__ == "__main__":
    main_for("4. Event delay (SSE and Pusher) and webhooks with a slow Pusher", measure)
