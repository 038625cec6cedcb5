"""1. Webhook floor: Phoney's webhooks against a bare Flask route and a hand-written peer.

The three servers run `gunicorn -c gunicorn.conf.py` (workers = cores, gthread) side by side; wrk
loads one at a time with pre-signed requests (bench/wrk_signed.lua), in rounds that alternate
among them, so noise on the machine hits all alike. Each phase is measured twice: throughput (16
connections for a few seconds) and latency (one connection: the median round trip, where
"added" is Phoney's median minus the bare route's).

Two baselines (bench/apps.py):
- the bare route answers every request with one fixed TwiML string; it checks no signature;
- the peer is what a careful hand-written app does for a new call: the signature checked with
  the twilio SDK, the call written to SQLite (WAL, a connection per thread), and the same TwiML
  Phoney answers for the greeting built with the SDK's VoiceResponse. It gets the same load as
  Phoney's new calls: every request a new call from a new number. The peer ratio says what
  Phoney's engine (flows, state, events, the stored answer, limits, logs, metrics) costs over
  the work any webhook of this kind must do; the bare ratio, what all of it costs over Flask.

Phoney's requests are all valid and each does the work its name says:
- incoming-call, new call: a new CallSid each time, so a call is created, its greeting and
  opening (OpenAI voices, warmed up before the load: `<Play>` from the cache, no speech call)
  rendered in a `<Gather>`, state, events and answer committed;
- no-input reprompt: the silence webhook (`/api/voice/input?step=1`, no speech) of a call
  created earlier and still at step 1: a real step to the first reprompt;
- stored answer: the same incoming-call request again (same CallSid and body): Twilio's retry,
  answered from the store without stepping the call.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass, field

import requests

from bench.common import (
    OPENAI_KEY,
    Row,
    Server,
    Signed,
    WrkResult,
    call_sid,
    gather_input,
    incoming,
    main_for,
    make_project,
    median,
    ms,
    note,
    post,
    wait_until,
    workdir,
    wrk,
)
from tests.doubles.openai_server import Audio, OpenAIDouble

CONNECTIONS = 16
THROUGHPUT_SECONDS = 3
LATENCY_SECONDS = 2
ROUNDS = 5
RATIO_BAR = 0.5
PEER_BAR = 0.8
RATIO_GOAL = 0.8  # of bare, for a new call: beyond the bar, where the engine should get to
ADDED_BAR = 0.005
LIST_SIZE = 12_000  # more requests than a phase can send (a wrap would be flagged)


@dataclass
class Samples:
    throughput: list[WrkResult] = field(default_factory=list)
    latency: list[WrkResult] = field(default_factory=list)


def _check(name: str, result: WrkResult) -> None:
    if result.bad or result.socket_errors or result.wrapped:
        raise RuntimeError(f"{name}: {result.bad} bad answers, {result.socket_errors} socket "
                           f"errors, {result.wrapped} wraps of the request list")


class Sids:
    """New CallSids, never reused."""

    def __init__(self) -> None:
        self.counter = itertools.count()

    def take(self, count: int) -> list[str]:
        return [call_sid(next(self.counter), "floor") for _ in range(count)]


def measure(args: argparse.Namespace) -> list[Row]:
    rounds = 1 if args.quick else ROUNDS
    tp_seconds = 2 if args.quick else THROUGHPUT_SECONDS
    lat_seconds = 1 if args.quick else LATENCY_SECONDS
    with workdir("floor") as scratch, OpenAIDouble(api_key=OPENAI_KEY) as double:
        double.default_speech(Audio(delay=0.05))
        project = make_project(scratch / "project")
        phoney = Server("phoney", scratch, project=project, env={
            "OPENAI_API_KEY": OPENAI_KEY, "OPENAI_BASE_URL": double.base_url})
        bare = Server("bare", scratch, app="bare")
        peer = Server("peer", scratch, app="peer")
        with phoney, bare, peer:
            # The warm-up runs in each worker at start: wait until speech requests stop coming.
            last = [-1]

            def settled() -> bool:
                count = len(double.speech_requests)
                done = count > 0 and count == last[0]
                last[0] = count
                return done

            if not wait_until(settled, 60, interval=1.0):
                raise RuntimeError("the speech warm-up did not finish")
            sids = Sids()
            session = requests.Session()
            before = len(double.speech_requests)
            _, answer = post(session, phoney.url, incoming(phoney.url, sids.take(1)[0]))
            if "<Play>" not in answer.text or "<Gather" not in answer.text:
                raise RuntimeError(f"unexpected greeting: {answer.text[:300]}")
            if len(double.speech_requests) != before:
                raise RuntimeError("the greeting was synthesised during the call: not warmed")

            def at_step_one(count: int) -> list[Signed]:
                """Calls still waiting at step 1 (the store is the truth: one that was sent its
                silence webhook is at step 2 now)."""
                found = phoney.query("SELECT call_sid FROM calls WHERE step = 1 ORDER BY rowid "
                                     "LIMIT ?", (count,))
                return [gather_input(phoney.url, sid, 1) for (sid,) in found]

            def new_calls(count: int) -> list[Signed]:
                return [incoming(phoney.url, sid) for sid in sids.take(count)]

            def waiting() -> int:
                return int(phoney.query("SELECT count(*) FROM calls WHERE step = 1")[0][0])

            def top_up(wanted: int) -> None:
                """Make sure `wanted` calls wait at step 1 for a reprompt phase (not timed)."""
                for _ in range(5):
                    short = wanted - waiting()
                    if short <= 0:
                        return
                    result = wrk(phoney.url, new_calls(LIST_SIZE), connections=CONNECTIONS,
                                 seconds=max(1, min(8, short / max(prep.rps, 1))),
                                 marker="<Gather", scratch=scratch)
                    _check("top-up", result)

            # Warm both servers, and make calls waiting at step 1 for the first reprompt phase.
            bare_list = [incoming(bare.url, "CA" + "0" * 32)]
            wrk(bare.url, bare_list, connections=CONNECTIONS, seconds=1, scratch=scratch)

            def peer_calls(count: int) -> list[Signed]:
                return [incoming(peer.url, sid) for sid in sids.take(count)]

            _check("peer warm-up", wrk(peer.url, peer_calls(LIST_SIZE), connections=CONNECTIONS,
                                       seconds=1, marker="<Play>", scratch=scratch))
            prep = wrk(phoney.url, new_calls(LIST_SIZE), connections=CONNECTIONS,
                       seconds=tp_seconds, marker="<Gather", scratch=scratch)
            note(f"  prep: {prep.requests} requests, {prep.rps:.0f}/s")
            _check("prep", prep)
            replay = [incoming(phoney.url, sid) for (sid,) in phoney.query(
                "SELECT call_sid FROM calls ORDER BY rowid LIMIT 500")]

            results = {name: Samples()
                       for name in ("bare", "peer", "incoming", "reprompt", "stored")}
            for number in range(rounds):
                note(f"webhook floor: round {number + 1}/{rounds}")
                for kind, seconds, connections in (("throughput", tp_seconds, CONNECTIONS),
                                                   ("latency", lat_seconds, 1)):
                    seen = getattr(results["reprompt"], kind)  # how fast reprompts went
                    top_up(int(1.5 * seconds * max([r.rps for r in seen] + [3 * prep.rps])))
                    phases = (
                        ("bare", bare.url, bare_list, "<Gather"),
                        ("peer", peer.url, peer_calls(LIST_SIZE), "<Play>"),
                        ("incoming", phoney.url, new_calls(LIST_SIZE), "<Play>"),
                        ("reprompt", phoney.url, at_step_one(LIST_SIZE), "<Gather"),
                        ("stored", phoney.url, replay, "<Gather"),
                    )
                    for name, url, listing, marker in phases:
                        result = wrk(url, listing, connections=connections, seconds=seconds,
                                     marker=marker, scratch=scratch)
                        if name in ("bare", "stored"):
                            result.wrapped = 0  # repeating these requests is the point
                        note(f"  {name} {kind}: {result.rps:.0f} req/s, p50 {ms(result.p50)}")
                        _check(f"{name} {kind}", result)
                        getattr(results[name], kind).append(result)
            errors = phoney.errors_logged() + peer.errors_logged()
    return rows(results, errors)


def _ratios(samples: Samples, baseline: Samples) -> list[float]:
    """Throughput over the baseline's, round by round (each pair measured back to back)."""
    return [a.rps / b.rps for a, b in zip(samples.throughput, baseline.throughput, strict=True)]


def rows(results: dict[str, Samples], errors: int) -> list[Row]:
    bare, peer = results["bare"], results["peer"]
    out = []
    labels = {"incoming": "incoming-call, new call (cached greeting, gather)",
              "reprompt": "no-input reprompt (fresh step)",
              "stored": "incoming-call repeated (stored answer)"}
    for name, label in labels.items():
        samples = results[name]
        ratios = _ratios(samples, bare)
        ratio = median(ratios)
        out.append(Row(
            f"1. {label}: throughput", f"{median([r.rps for r in samples.throughput]):.0f} req/s",
            f"{median([r.rps for r in bare.throughput]):.0f} req/s bare route", ratio,
            f">= {RATIO_BAR:.2f} of bare", ratio >= RATIO_BAR,
            note=f"{CONNECTIONS} connections; per-round ratios "
                 + ", ".join(f"{value:.2f}" for value in ratios)))
        if name == "incoming":
            out.append(Row(
                f"1. {label}: throughput, goal", f"{ratio:.2f} of bare", "the bare route",
                ratio, f">= {RATIO_GOAL:.2f} of bare (goal)", None,
                note="where the engine should get to beyond the bar"))
            peer_ratios = _ratios(samples, peer)
            peer_ratio = median(peer_ratios)
            out.append(Row(
                f"1. {label}: throughput vs a hand-written peer",
                f"{median([r.rps for r in samples.throughput]):.0f} req/s",
                f"{median([r.rps for r in peer.throughput]):.0f} req/s peer", peer_ratio,
                f">= {PEER_BAR:.2f} of peer", peer_ratio >= PEER_BAR,
                note="peer: signature, one SQLite row (WAL), the same TwiML (bench/apps.py); "
                     "per-round ratios " + ", ".join(f"{value:.2f}" for value in peer_ratios)
                     + "; peer/bare "
                     + ", ".join(f"{value:.2f}" for value in _ratios(peer, bare))))
        added = [a.p50 - b.p50 for a, b in zip(samples.latency, bare.latency, strict=True)]
        phoney_p50 = median([r.p50 for r in samples.latency])
        bare_p50 = median([r.p50 for r in bare.latency])
        out.append(Row(
            f"1. {label}: median latency", f"{ms(phoney_p50)} (+{ms(median(added))})",
            f"{ms(bare_p50)} bare route", phoney_p50 / bare_p50,
            f"< {ms(ADDED_BAR)} added", median(added) < ADDED_BAR,
            note="one connection; added per round " + ", ".join(ms(a) for a in added)
                 + (f"; peer {ms(median([r.p50 for r in peer.latency]))}"
                    if name == "incoming" else "")))
    if errors:
        out.append(Row("1. server tracebacks during the load", str(errors), "0", None, "0",
                       False))
    return out


if __name__ == "__main__":
    main_for("1. Webhook floor (Phoney vs a bare Flask route and a hand-written peer, same "
             "gunicorn, wrk, signed)", measure)
