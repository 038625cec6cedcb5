"""What every benchmark shares: servers, doubles, signed Twilio requests, wrk, statistics, tables.

Rules the scripts keep (the machine is small, shared and noisy):
- every number is paired with a baseline measured in the same run, on the same machine,
  interleaved with it where the design allows, and reported as a ratio or a difference of
  medians, never as a lone absolute time;
- all traffic goes to 127.0.0.1, every loop is bounded in count and in time;
- servers are started here and stopped here, by the id of the process this module started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
import yaml
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TOKEN = "bench-auth-token"
PASSWORD = "bench-dashboard-password"
OPENAI_KEY = "bench-key"
WRK_SCRIPT = Path(__file__).with_name("wrk_signed.lua")

if str(ROOT) not in sys.path:  # `python bench/x.py` as well as `python -m bench.x`
    sys.path.insert(0, str(ROOT))


# -- statistics ---------------------------------------------------------------------------------

def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- results ------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the table. `ok` None means informational (no bar applies)."""

    measure: str
    value: str
    baseline: str
    ratio: float | None
    bar: str
    ok: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else ("pass" if self.ok else "FAIL")


HEADERS = ("measure", "value", "baseline", "ratio", "bar", "result")


def _cells(row: Row) -> tuple[str, ...]:
    ratio = "" if row.ratio is None or math.isnan(row.ratio) else f"{row.ratio:.2f}"
    return (row.measure, row.value, row.baseline, ratio, row.bar, row.verdict)


def table(rows: Sequence[Row]) -> str:
    cells = [HEADERS, *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True))
             .rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(escape(cell) for cell in _cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def note(text: str) -> None:
    """Progress and side observations go to stderr; the table goes to stdout."""
    print(text, file=sys.stderr, flush=True)


def main_for(title: str, measure: Callable[[argparse.Namespace], list[Row]],
             configure: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """The command line every script shares: run, print the table, `--json FILE` for run_all."""
    parser = argparse.ArgumentParser(description=title)
    parser.add_argument("--json", help="also write the rows to this file (for run_all)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer samples: a smoke run, not a measurement")
    if configure is not None:
        configure(parser)
    args = parser.parse_args()
    started = time.monotonic()
    rows = measure(args)
    print(f"\n{title}  ({time.monotonic() - started:.0f} s)")
    print(table(rows))
    for row in rows:
        if row.note:
            print(f"  - {row.measure}: {row.note}")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(row) for row in rows], indent=1))


# -- a project to serve -------------------------------------------------------------------------

def make_project(into: Path, *, openai_voices: bool = True) -> Path:
    """A copy of the bundled flows and personalities under `into` (others may be editing the
    real ones while a benchmark runs). Without `openai_voices`, every personality speaks with its
    Twilio voice only, so no speech request happens at all."""
    for folder in ("flows", "personalities"):
        target = into / folder
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted((ROOT / folder).glob("*.yaml")):
            if path.name.endswith(".test.yaml"):
                continue
            if folder == "personalities" and not openai_voices:
                data = yaml.safe_load(path.read_text())
                data.get("voice", {}).pop("openai", None)
                (target / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
            else:
                shutil.copy(path, target / path.name)
    return into


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"phoney-bench-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- servers ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`gunicorn -c gunicorn.conf.py bench.apps:app` on 127.0.0.1: the project's own serving
    configuration (workers = cores, gthread, 64 threads each) unless `env` overrides it."""

    def __init__(self, name: str, workdir: Path, *, app: str = "phoney",
                 project: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.store_path = workdir / f"{name}.sqlite3"
        self.log_path = workdir / f"{name}.log"
        self.env = {
            **{key: value for key, value in os.environ.items()
               if not key.startswith(("TWILIO_", "OPENAI_", "PUSHER_", "STORE_", "PUBLIC_"))},
            "BENCH_APP": app, "HOST": "127.0.0.1", "PORT": str(self.port),
            "PROJECT_ROOT": str(project or workdir), "STORE_URL": f"sqlite:///{self.store_path}",
            "PUBLIC_BASE_URL": self.url, "TWILIO_AUTH_TOKEN": TOKEN,
            "DASHBOARD_PASSWORD": PASSWORD, "SECRET_KEY": "bench-secret",
            # The benchmarks' calls never get Twilio's final status callback, so every one of
            # them would stay live for the ceiling: thousands of them, not the 100 it allows.
            "MAX_LIVE_CALLS": "off",
            "PYTHONUNBUFFERED": "1", **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "bench.apps:app"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            try:
                answer = requests.get(self.url + "/ping", timeout=2)
                if answer.status_code < 500:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"{self.name} did not start in {timeout} s: {self.log_tail()}")
        self.wait_for_workers(deadline)
        return self

    def wait_for_workers(self, deadline: float) -> None:
        """Each gunicorn worker builds its own app after the fork: wait until all have."""
        workers = int(self.env.get("WEB_CONCURRENCY") or os.cpu_count() or 1)
        while time.monotonic() < deadline:
            if self.log_path.read_text(errors="replace").count("Booting worker") >= workers:
                break
            time.sleep(0.1)
        session = requests.Session()
        for _ in range(4 * workers):  # a request or two for each worker's first-use costs
            with contextlib.suppress(requests.RequestException):
                session.get(self.url + "/ping", timeout=5)
        time.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def errors_logged(self) -> int:
        """Tracebacks in the server's log (an error answer never reaches Twilio as HTTP 500,
        so the log is where an internal failure shows)."""
        try:
            return self.log_path.read_text(errors="replace").count("Traceback (most recent")
        except OSError:
            return 0

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the server's store, read directly --

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=10)
        try:
            return list(db.execute(sql, params).fetchall())
        finally:
            db.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Change the server's store (a benchmark's own scratch database) between samples."""
        db = sqlite3.connect(self.store_path, timeout=10)
        try:
            with db:
                db.execute(sql, params)
        finally:
            db.close()


# -- signed Twilio requests ---------------------------------------------------------------------

_validator = RequestValidator(TOKEN)


def call_sid(number: int, salt: str = "") -> str:
    """A CallSid that differs for every (number, salt) and is unique to this run."""
    import hashlib
    return "CA" + hashlib.md5(f"{RUN_ID}:{salt}:{number}".encode()).hexdigest()


RUN_ID = f"{os.getpid()}-{time.time_ns()}"


def caller_number(sid: str) -> str:
    """A caller's number that follows from the CallSid: a load of many calls comes from many
    callers, as real traffic does (Phoney limits new calls per caller)."""
    return "+1555" + str(int(sid[2:14], 16) % 10**7).zfill(7)


def call_params(sid: str, **extra: str) -> dict[str, str]:
    """What Twilio sends with every voice webhook of an inbound call."""
    return {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": caller_number(sid),
            "To": "+15550001000", "CallStatus": "in-progress", "Direction": "inbound",
            "ApiVersion": "2010-04-01", "FromCity": "SPRINGFIELD", "FromState": "IL",
            "FromZip": "62701", "FromCountry": "US", "ToCountry": "US", **extra}


def signature(url: str, params: Mapping[str, str]) -> str:
    return str(_validator.compute_signature(url, dict(params)))


@dataclass(frozen=True)
class Signed:
    """One webhook, ready to send: the path, its X-Twilio-Signature and its form body."""

    path: str
    signature: str
    body: str

    @classmethod
    def make(cls, base_url: str, path: str, params: Mapping[str, str]) -> Signed:
        return cls(path, signature(base_url + path, params), urlencode(dict(params)))

    def headers(self) -> dict[str, str]:
        return {"X-Twilio-Signature": self.signature,
                "Content-Type": "application/x-www-form-urlencoded"}


def incoming(base_url: str, sid: str) -> Signed:
    return Signed.make(base_url, "/api/incoming-call", call_params(sid, CallStatus="ringing"))


def gather_input(base_url: str, sid: str, step: int, speech: str = "") -> Signed:
    extra = {"SpeechResult": speech, "Confidence": "0.92"} if speech else {}
    return Signed.make(base_url, f"/api/voice/input?step={step}", call_params(sid, **extra))


def post(session: requests.Session, base_url: str, signed: Signed,
         timeout: float = 20.0) -> tuple[float, requests.Response]:
    """Send one webhook; (seconds from sending to the whole answer, answer)."""
    started = time.perf_counter()
    answer = session.post(base_url + signed.path, data=signed.body, headers=signed.headers(),
                          timeout=timeout)
    return time.perf_counter() - started, answer


# -- wrk ------------------------------------------------------------------------------------------

@dataclass
class WrkResult:
    requests: int = 0
    seconds: float = 0.0
    p50: float = math.nan  # seconds
    p90: float = math.nan
    p99: float = math.nan
    socket_errors: int = 0
    bad: int = 0  # not HTTP 200, or the answer lacks the expected marker
    wrapped: int = 0  # the request list ran out and started again (duplicates were sent)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan


def wrk(base_url: str, requests_: Sequence[Signed], *, connections: int, seconds: float,
        marker: str = "", threads: int = 1, scratch: Path) -> WrkResult:
    """Load `base_url` with wrk, sending `requests_` in order (each wrk thread takes every
    `threads`-th one), for `seconds`, over `connections` keep-alive connections."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    listing = scratch / f"wrk-{time.time_ns()}.tsv"
    with listing.open("w") as out:
        for item in requests_:
            out.write(f"{item.path}\t{item.signature}\t{item.body}\n")
    command = ["wrk", "-t", str(threads), "-c", str(connections),
               "-d", f"{max(1, round(seconds))}s", "--timeout", "20s", "-s", str(WRK_SCRIPT),
               base_url, "--", str(listing), str(threads), marker]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    listing.unlink(missing_ok=True)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            raw = json.loads(line.removeprefix("BENCH_JSON "))
            return WrkResult(
                requests=raw["requests"], seconds=raw["duration_us"] / 1e6,
                p50=raw["p50_us"] / 1e6, p90=raw["p90_us"] / 1e6, p99=raw["p99_us"] / 1e6,
                socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
                bad=raw["bad"], wrapped=raw["wrapped"])
    raise RuntimeError(f"wrk gave no result: {done.stdout[-2000:]} {done.stderr[-2000:]}")


# -- waiting ------------------------------------------------------------------------------------

def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def in_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run `target(i)` for i in range(count), all at once (released together), and return the
    results in order; an exception is returned in its slot rather than raised."""
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = target(index)
        except Exception as error:  # reported by the caller, counted as an error
            results[index] = error

    workers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    return results
