"""5. Concurrency: 100 model turns at once, each waiting a second on the model.

The OpenAI double answers every chat request with its whole reply one second after the request
(`TTFT`, all tokens at once), so the model's own time is one second for every call. One server
(`gunicorn -c gunicorn.conf.py`, as shipped; Twilio voices) takes 100 calls, created beforehand
and waiting at their `ai` node; then 100 client threads, released together, each send their
call's speech webhook. The overhead of a turn is its webhook time minus the model's second.
The baseline is the same turn on the same server one call at a time, before and after the burst.
CPU per turn is the user+system CPU time the server's processes (the gunicorn master and every
worker, all their threads, read from /proc/<pid>/stat) spent during the burst, divided by the
turns; its baseline is the same measure over the one-at-a-time turns before the burst. The
window runs from the release until the last model stream has ended (the reply threads outlive
their webhooks), so it also holds the servers' idle ticks: an upper bound. An error is any
answer that is not HTTP 200 with the model's first sentence (an apology or a hold is an error
here: the model answered every request), or a request that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import requests

from bench.common import (
    OPENAI_KEY,
    Row,
    Server,
    call_sid,
    gather_input,
    in_threads,
    incoming,
    main_for,
    make_project,
    median,
    ms,
    note,
    pct,
    post,
    workdir,
)
from tests.doubles.openai_server import OpenAIDouble, Text

TTFT = 1.0
FIRST = "We are open Monday to Thursday from eight until five."
REPLY = FIRST + " On Friday we close at one in the afternoon."
CALLS = 100
SINGLES = 6
OVERHEAD_BAR = 0.5
CPU_BAR = 0.010
"""Seconds of server CPU per model turn."""


def server_cpu(master: int) -> float:
    """User+system CPU seconds of gunicorn's master `master` and all its child processes (the
    workers), so far. A worker that exits meanwhile would take its time with it: none does
    during a benchmark (gunicorn's timeout is far longer than a turn)."""
    ticks = 0
    pids = [master, *_children(master)]
    for pid in pids:
        try:
            # Fields after the command name (which may hold spaces), from "state": utime and
            # stime are fields 14 and 15 of the whole line.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def in_server(server: Server, sids: list[str]) -> list[float]:
    """Each turn's time from the call service's start on the webhook to its answer (the
    `answer` of its `call.timing` event), in seconds."""
    wanted = set(sids)
    rows = server.query("SELECT call_sid, data FROM events WHERE name = 'call.timing'")
    found = [json.loads(data).get("answer") for sid, data in rows if sid in wanted]
    return [value for value in found if isinstance(value, (int, float))]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def measure(args: argparse.Namespace) -> list[Row]:
    calls = 30 if args.quick else CALLS
    with workdir("concurrency") as scratch, OpenAIDouble(api_key=OPENAI_KEY) as double:
        double.default_chat(Text(REPLY, ttft=TTFT))
        project = make_project(scratch / "project", openai_voices=False)
        server = Server("phoney", scratch, project=project, env={
            "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": double.base_url})
        with server:
            assert server.process is not None
            master = server.process.pid
            session = requests.Session()
            sids = [call_sid(i, "burst") for i in range(calls + 2 * SINGLES + 1)]
            for sid in sids:
                _, answer = post(session, server.url, incoming(server.url, sid))
                if "<Gather" not in answer.text:
                    raise RuntimeError(f"unexpected greeting: {answer.text[:300]}")

            def turn(sid: str, own: requests.Session) -> tuple[float, bool]:
                seconds, answer = post(own, server.url,
                                       gather_input(server.url, sid, 1, "What are your hours?"),
                                       timeout=30)
                return seconds, answer.status_code == 200 and FIRST in answer.text

            singles = sids[calls:]
            turn(singles.pop(), session)  # warm-up
            time.sleep(0.2)  # its reply thread ends
            cpu_alone = server_cpu(master)
            alone = [turn(sid, session) for sid in singles[:SINGLES]]
            time.sleep(0.2)
            cpu_alone = (server_cpu(master) - cpu_alone) / SINGLES
            burst_sids = sids[:calls]
            cpu_burst = server_cpu(master)
            released = time.monotonic()
            seen = len(double.chat_requests)
            results = in_threads(calls, lambda i: turn(burst_sids[i], requests.Session()))
            arrivals = sorted(r.received_at - released for r in double.chat_requests[seen:])
            time.sleep(TTFT)
            cpu_burst = (server_cpu(master) - cpu_burst) / calls
            alone += [turn(sid, session) for sid in singles[SINGLES:]]
            errors_logged = server.errors_logged()
            answered = in_server(server, burst_sids)
    failed = [r for r in results if isinstance(r, Exception) or not r[1]]
    timed = [r[0] for r in results if not isinstance(r, Exception)]
    overheads = [t - TTFT for t in timed]
    single = [t - TTFT for t, _ in alone]
    for error in [r for r in results if isinstance(r, Exception)][:3]:
        note(f"concurrency: {error!r}")
    note(f"concurrency: model requests reached the double {ms(arrivals[0])} .. "
         f"{ms(arrivals[-1])} after the release (p50 {ms(pct(arrivals, 50))}, "
         f"p95 {ms(pct(arrivals, 95))})" if arrivals else "concurrency: no model request")
    return [
        Row(f"5. {calls} model turns at once, p95 overhead above the model's {TTFT:.0f} s",
            ms(pct(overheads, 95)), f"{ms(median(single))} one call at a time (median)",
            None, f"<= {ms(OVERHEAD_BAR)}", pct(overheads, 95) <= OVERHEAD_BAR,
            note=f"median overhead {ms(median(overheads))}; model requests sent "
                 f"p95 {ms(pct(arrivals, 95))} after the release; inside the call service "
                 f"(its call.timing `answer`, from the webhook's start) p95 "
                 f"{ms(pct(answered, 95) - TTFT)} above the model's second: the rest is "
                 f"the wait for a server thread, HTTP and Flask"),
        Row(f"5. {calls} model turns at once, server CPU per turn", ms(cpu_burst),
            f"{ms(cpu_alone)} one call at a time", cpu_burst / cpu_alone if cpu_alone else None,
            f"<= {ms(CPU_BAR)}", cpu_burst <= CPU_BAR,
            note="user+system CPU of the gunicorn master and workers over the burst (and the "
                 "second after it), divided by the turns"),
        Row(f"5. {calls} model turns at once, errors", str(len(failed) + errors_logged),
            "0", None, "0", not failed and not errors_logged,
            note=f"{len(failed)} failed or wrong answers, {errors_logged} server tracebacks"),
    ]


if __name__ == "__main__":
    main_for("5. Concurrency: 100 model turns at once", measure)
