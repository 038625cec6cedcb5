"""Run every benchmark, one after the other, and print one table: `make bench`.

Each script runs in its own process (its servers and doubles start and stop with it) and hands
its rows back as JSON. `--docs docs/benchmarks.md` also writes the table, the command and the
machine's state into that file, between the `bench:results` markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import PYTHON, ROOT, Row, markdown_table, table

SCRIPTS = ("webhook_floor", "first_audio", "speech_cache", "event_delay", "concurrency",
           "flow_loading", "relay", "http_node", "intelligence")
TIMEOUT = 400  # seconds for one script; a full run takes well under ten minutes
BEGIN, END = "<!-- bench:results -->", "<!-- /bench:results -->"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def git_state() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no", "engine", "gunicorn.conf.py")
    return commit + (" + uncommitted engine changes" if dirty.strip() else "")


def run(name: str, quick: bool) -> tuple[list[Row], str]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    command = [PYTHON, "-m", f"bench.{name}", "--json", str(out)] + (["--quick"] if quick else [])
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=TIMEOUT)
        log = done.stderr + done.stdout
        rows = [Row(**item) for item in json.loads(out.read_text())] \
            if done.returncode == 0 and out.stat().st_size else []
    except subprocess.TimeoutExpired as expired:
        log = f"timed out after {TIMEOUT} s\n{expired.stderr or ''}"
        rows = []
    finally:
        out.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    if not rows:
        tail = "\n".join(log.strip().splitlines()[-15:])
        rows = [Row(f"{name}: did not finish", "-", "-", None, "-", False, note=tail[-500:])]
    print(f"{name}: {seconds:.0f} s", file=sys.stderr, flush=True)
    return rows, log


def write_docs(path: Path, rows: list[Row], command: str, started: str, seconds: float,
               loads: tuple[str, str]) -> None:
    notes = "\n".join(f"- {row.measure}: {row.note}" for row in rows if row.note)
    section = "\n".join([
        BEGIN,
        f"Command: `{command}`, run {started} on {platform.node() or 'this machine'} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}, code at "
        f"{git_state()}); {seconds / 60:.1f} minutes; load average {loads[0]} at the start, "
        f"{loads[1]} at the end.",
        "",
        markdown_table(rows),
        "",
        notes,
        END,
    ])
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help="comma-separated scripts, e.g. first_audio,concurrency")
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run")
    parser.add_argument("--docs", help="write the results into this Markdown file")
    parser.add_argument("--logs", help="keep every script's output in this folder")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = set(names) - set(SCRIPTS)
    if unknown:
        parser.error(f"unknown scripts: {', '.join(sorted(unknown))}")
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    loads = [load_average()]
    began = time.monotonic()
    rows: list[Row] = []
    for name in names:
        found, log = run(name, args.quick)
        rows += found
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            (Path(args.logs) / f"{name}.log").write_text(log)
    seconds = time.monotonic() - began
    loads.append(load_average())
    print()
    print(table(rows))
    for row in rows:
        if row.note:
            print(f"  - {row.measure}: {row.note}")
    failed = sum(1 for row in rows if row.ok is False)
    print(f"\n{len(rows)} rows, {failed} over their bar; {seconds / 60:.1f} minutes; "
          f"load average {loads[0]} -> {loads[1]}")
    if args.docs:
        command = "python -m bench.run_all " + " ".join(sys.argv[1:])
        write_docs(Path(args.docs), rows, command.strip(), started, seconds,
                   (loads[0], loads[1]))


if __name__ == "__main__":
    main()
