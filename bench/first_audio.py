"""2. Time to first audio on a model turn: streaming (first sentence, then <Redirect>) against
waiting for the whole reply, and against the model's own limit.

The OpenAI double streams a three-sentence reply, first token after `TTFT`, then `RATE` tokens a
second (a token is a word with its trailing space). Two servers run side by side on the same
double, with the same flows (Twilio voices, so no speech call muddies the model's time):
- `phoney`: the engine as shipped: it answers the caller's turn with the first complete
  sentence and a `<Redirect>` to the continuation;
- `whole-reply` (bench/apps.py): the same prompt through a plain non-streaming call, answered
  once the whole reply is in: the webhook-style bot.
Each sample is a new call: its incoming-call webhook (not timed), then the caller's speech at the
`ai` node, timed from sending the webhook to having the whole TwiML answer. Samples alternate
between the servers.

The limit is when the first sentence is complete at the model server: `TTFT` + (tokens in the
first sentence - 1) / `RATE` after the model request arrives there. The gap to it is everything
Phoney adds: the webhook before the model request, and the answer after the sentence.
"""

from __future__ import annotations

import argparse
import time

import openai
import requests

from bench.common import (
    OPENAI_KEY,
    Row,
    Server,
    call_sid,
    gather_input,
    incoming,
    main_for,
    make_project,
    median,
    ms,
    note,
    post,
    workdir,
)
from engine.ai.speakable import first_sentence
from tests.doubles.openai_server import OpenAIDouble, Text, tokens

TTFT = 0.3
RATE = 50.0
FIRST = "We are open Monday to Thursday from eight until five. "
REPLY = (FIRST + "On Friday we close at one in the afternoon. "
         "Is there anything else I can help you with today?")
SAMPLES = 15
GAP_BAR = 0.050
RATIO_BAR = 0.6


def first_sentence_at() -> float:
    """Seconds after the model request when the first sentence's last token is sent."""
    return TTFT + (len(tokens(FIRST)) - 1) / RATE


def whole_reply_at() -> float:
    return TTFT + (len(tokens(REPLY)) - 1) / RATE


def first_sentence_directly(client: openai.OpenAI) -> float:
    """A bare streaming client in this process: seconds from sending the request to holding a
    complete first sentence (found the way Phoney finds it). The limit as this machine can
    reach it, with the SDK, loopback and scheduling, but no webhook, store or TwiML."""
    started = time.monotonic()
    text = ""
    stream = client.chat.completions.create(
        model="gpt-4o-mini", stream=True,
        messages=[{"role": "user", "content": "What are your hours?"}])
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                if first_sentence(text) is not None:
                    return time.monotonic() - started
    raise RuntimeError(f"no sentence in {text!r}")


def measure(args: argparse.Namespace) -> list[Row]:
    samples = 4 if args.quick else SAMPLES
    timings: dict[str, list[float]] = {"phoney": [], "whole-reply": []}
    before_model: dict[str, list[float]] = {"phoney": [], "whole-reply": []}
    direct: list[float] = []
    with workdir("first-audio") as scratch, OpenAIDouble(api_key=OPENAI_KEY) as double:
        double.default_chat(Text(REPLY, ttft=TTFT, tokens_per_second=RATE))
        project = make_project(scratch / "project", openai_voices=False)
        env = {"OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": double.base_url}
        servers = {name: Server(name, scratch, app=name, project=project, env=env)
                   for name in timings}
        for server in servers.values():
            server.start()
        try:
            client = openai.OpenAI(api_key=OPENAI_KEY, base_url=double.base_url, max_retries=0)
            sessions = {name: requests.Session() for name in servers}
            counter = 0
            for number in range(samples + 1):  # the first round warms both up, not counted
                for name, server in servers.items():
                    session, url = sessions[name], server.url
                    sid = call_sid(counter, "first-audio")
                    counter += 1
                    _, answer = post(session, url, incoming(url, sid))
                    if "<Gather" not in answer.text:
                        raise RuntimeError(f"{name}: unexpected greeting {answer.text[:300]}")
                    seen = len(double.chat_requests)
                    sent = time.monotonic()
                    seconds, answer = post(session, url,
                                           gather_input(url, sid, 1, "What are your hours?"))
                    chats = double.chat_requests[seen:]
                    expected = FIRST.strip()
                    if answer.status_code != 200 or expected not in answer.text or not chats:
                        raise RuntimeError(f"{name}: unexpected answer {answer.text[:400]}")
                    if name == "phoney" and "<Redirect" not in answer.text:
                        raise RuntimeError(f"phoney did not stream: {answer.text[:400]}")
                    if number > 0:
                        timings[name].append(seconds)
                        before_model[name].append(chats[0].received_at - sent)
                    time.sleep(whole_reply_at() - TTFT)  # let the stream finish: no overlap
                seconds = first_sentence_directly(client)
                if number > 0:
                    direct.append(seconds)
                time.sleep(whole_reply_at() - TTFT)
            errors = sum(server.errors_logged() for server in servers.values())
        finally:
            for server in servers.values():
                server.stop()
    note(f"first audio: phoney {[round(t, 3) for t in timings['phoney']]}")
    note(f"first audio: whole reply {[round(t, 3) for t in timings['whole-reply']]}")
    streaming, whole = median(timings["phoney"]), median(timings["whole-reply"])
    limit = first_sentence_at()
    gaps = [t - limit for t in timings["phoney"]]
    rows = [
        Row("2. model turn, time to first audio (streaming vs whole reply)", ms(streaming),
            f"{ms(whole)} whole reply", streaming / whole, f"<= {RATIO_BAR:.2f} of whole reply",
            streaming / whole <= RATIO_BAR,
            note=f"median of {len(gaps)} turns each; double: ttft {ms(TTFT)}, {RATE:.0f} tok/s, "
                 f"whole reply at {ms(whole_reply_at())}"),
        Row("2. model turn, gap to the first sentence at the model", f"+{ms(median(gaps))}",
            f"limit {ms(limit)}", streaming / limit, f"<= +{ms(GAP_BAR)}",
            median(gaps) <= GAP_BAR,
            note=f"before the model request {ms(median(before_model['phoney']))} (median); "
                 f"the sentence is seen complete only when the next token starts "
                 f"(+{ms(1 / RATE)} at {RATE:.0f} tok/s)"),
        Row("2. model turn, gap to a bare streaming client", f"+{ms(streaming - median(direct))}",
            f"{ms(median(direct))} bare client", streaming / median(direct), "info", None,
            note="the same double read by the SDK in the benchmark's own process, no webhook: "
                 "what the machine itself adds to the limit"),
    ]
    if errors:
        rows.append(Row("2. server tracebacks", str(errors), "0", None, "0", False))
    return rows


if __name__ == "__main__":
    main_for("2. Time to first audio on a model turn", measure)
