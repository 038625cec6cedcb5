"""5. Concurrency: 100 model turns at once, each waiting a second on the model.

The OpenAI double answers every chat request with its whole reply one second after the request
(`TTFT`, all tokens at once), so the model's own time is one second for every call. One server
(`gunicorn -c gunicorn.conf.py`, as shipped; Twilio voices) takes 100 calls, created beforehand
and waiting at their `ai` node; then 100 client threads, released together, each send their
call's speech webhook. The overhead of a turn is its webhook time minus the model's second.
The baseline is the same turn on the same server one call at a time, before and after the burst.
An error is any answer that is not HTTP 200 with the model's first sentence (an apology or a
hold is an error here: the model answered every request), or a request that failed.
"""

from __future__ import annotations

import argparse
import time

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


def measure(args: argparse.Namespace) -> list[Row]:
    calls = 30 if args.quick else CALLS
    with workdir("concurrency") as scratch, OpenAIDouble(api_key=OPENAI_KEY) as double:
        double.default_chat(Text(REPLY, ttft=TTFT))
        project = make_project(scratch / "project", openai_voices=False)
        server = Server("phoney", scratch, project=project, env={
            "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": double.base_url})
        with server:
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
            alone = [turn(sid, session) for sid in singles[:SINGLES]]
            burst_sids = sids[:calls]
            released = time.monotonic()
            seen = len(double.chat_requests)
            results = in_threads(calls, lambda i: turn(burst_sids[i], requests.Session()))
            arrivals = sorted(r.received_at - released for r in double.chat_requests[seen:])
            time.sleep(TTFT)
            alone += [turn(sid, session) for sid in singles[SINGLES:]]
            errors_logged = server.errors_logged()
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
                 f"p95 {ms(pct(arrivals, 95))} after the release"),
        Row(f"5. {calls} model turns at once, errors", str(len(failed) + errors_logged),
            "0", None, "0", not failed and not errors_logged,
            note=f"{len(failed)} failed or wrong answers, {errors_logged} server tracebacks"),
    ]


if __name__ == "__main__":
    main_for("5. Concurrency: 100 model turns at once", measure)
