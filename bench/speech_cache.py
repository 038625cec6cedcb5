"""3. Speech: time to first audio of a call's greeting with the warm-up cache, against a cold one.

OpenAI speech is on (personalities with an OpenAI voice); the OpenAI double answers each speech
request after `SPEECH_DELAY`. Two servers run side by side on that double:
- `warm`: as shipped: the warm-up synthesises every static prompt when the server starts (the
  benchmark waits for it to finish before measuring);
- `cold`: the warm-up off, and the cached audio deleted before every sample, so each greeting
  is synthesised while the caller waits.
Each sample is a new call's incoming-call webhook (greeting and opening, `<Play>`ed), timed from
sending it to the whole TwiML answer; the double counts the speech requests made meanwhile.
Samples alternate between the servers.
"""

from __future__ import annotations

import argparse

import requests

from bench.common import (
    OPENAI_KEY,
    Row,
    Server,
    call_sid,
    incoming,
    main_for,
    make_project,
    median,
    ms,
    note,
    post,
    wait_until,
    workdir,
)
from tests.doubles.openai_server import Audio, OpenAIDouble

SPEECH_DELAY = 0.2
SAMPLES = 15


def measure(args: argparse.Namespace) -> list[Row]:
    samples = 4 if args.quick else SAMPLES
    timings: dict[str, list[float]] = {"warm": [], "cold": []}
    speech_calls: dict[str, list[int]] = {"warm": [], "cold": []}
    with workdir("speech") as scratch, OpenAIDouble(api_key=OPENAI_KEY) as double:
        double.default_speech(Audio(delay=SPEECH_DELAY))
        project = make_project(scratch / "project")
        env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": double.base_url}
        servers = {"warm": Server("warm", scratch, project=project, env=env),
                   "cold": Server("cold", scratch, project=project,
                                  env={**env, "BENCH_SPEECH_WARMUP": "0"})}
        for server in servers.values():
            server.start()
        try:
            warm = servers["warm"]

            def warmed() -> bool:  # both workers' warm-ups done: every static prompt stored
                return "speech warm-up:" in warm.log_tail(400) and \
                    warm.log_path.read_text().count("speech warm-up:") >= 2

            if not wait_until(warmed, 120, interval=0.5):
                raise RuntimeError(f"the warm-up did not finish: {warm.log_tail()}")
            note(f"speech cache: warm-up made {len(double.speech_requests)} speech requests")
            sessions = {name: requests.Session() for name in servers}
            counter = 0
            for number in range(samples + 1):  # the first round warms the servers up
                for name, server in servers.items():
                    if name == "cold":
                        server.execute("DELETE FROM blobs WHERE key LIKE 'audio:%'")
                    sid = call_sid(counter, "speech")
                    counter += 1
                    before = len(double.speech_requests)
                    seconds, answer = post(sessions[name], server.url,
                                           incoming(server.url, sid))
                    made = len(double.speech_requests) - before
                    if answer.status_code != 200 or "<Play>" not in answer.text:
                        raise RuntimeError(f"{name}: unexpected greeting {answer.text[:300]}")
                    if number > 0:
                        timings[name].append(seconds)
                        speech_calls[name].append(made)
            errors = sum(server.errors_logged() for server in servers.values())
        finally:
            for server in servers.values():
                server.stop()
    note(f"speech cache: warm {[round(t, 3) for t in timings['warm']]}")
    note(f"speech cache: cold {[round(t, 3) for t in timings['cold']]}")
    warm_ms, cold_ms = median(timings["warm"]), median(timings["cold"])
    warm_calls, cold_calls = sum(speech_calls["warm"]), sum(speech_calls["cold"])
    count = len(timings["warm"])
    rows = [
        Row("3. greeting, speech calls during the webhook (warm-up cache)",
            f"{warm_calls} in {count} calls", f"{cold_calls} in {count} calls, cold cache",
            None, "0 (no speech call)", warm_calls == 0),
        Row("3. greeting, time to first audio (warm-up cache vs cold)", ms(warm_ms),
            f"{ms(cold_ms)} cold", warm_ms / cold_ms, "info", None,
            note=f"double speaks after {ms(SPEECH_DELAY)}; a cold greeting waits for "
                 f"{cold_calls / max(count, 1):.0f} syntheses in a row"),
    ]
    if errors:
        rows.append(Row("3. server tracebacks", str(errors), "0", None, "0", False))
    return rows


if __name__ == "__main__":
    main_for("3. Speech: warm-up cache against a cold cache", measure)
