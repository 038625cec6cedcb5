"""6. Flow loading: validating and compiling 1 000 generated flows of 50 nodes each, against
reading the same files with plain `yaml.safe_load`, in the same run.

The flows are generated into a scratch folder with the bundled personalities: each has every node
type (say, gather, switch, ai, transfer, record, hangup), routes with `when:` conditions, exits,
templates, defaults with every error edge, and no problem at all (the run checks that). Phoney's
side is `engine.flows.loader.load` over the folder: YAML with line marks, JSON Schema, compile to
frozen dataclasses, every graph check, versions. The baseline reads every file with
`yaml.safe_load` (pure Python, as the loader's reader is) and does nothing else; libyaml's
`CSafeLoader` is shown too, as the fastest plain read there is. The set is taken in four chunks
(each with the personalities), and the baseline and the loader alternate chunk by chunk, so
noise on the machine hits both alike; the figures are totals over the chunks, per flow. Every
flow's conditions are its own, as in a real project (a repeated text could be cached).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from bench.common import ROOT, Row, main_for, ms, note, workdir
from engine.flows.loader import load, yaml_files

FLOWS = 1000
BLOCKS = 7  # 7 nodes a block, plus the goodbye: 50 nodes a flow
CHUNKS = 4  # baseline and loader alternate chunk by chunk


def flow_yaml(number: int) -> str:
    name = f"gen_{number:04d}"
    lines = [
        f"flow: {name}",
        f"description: Generated flow {number} for the loading benchmark.",
        "personality: friendly",
        "language: en-US",
        "timezone: America/New_York",
        f'numbers: ["+1555{number:07d}"]',
        "vars:",
        f"  business: Business {number}",
        f'  desk: "+1556{number:07d}"',
        "limits: {max_turns: 30, max_seconds: 900, then: goodbye}",
        "defaults:",
        "  no_input:",
        "    retries: 2",
        '    reprompt: ["Are you still there?", "Sorry, I did not catch that."]',
        "    then: goodbye",
        "  on_error:",
        "    network: {retry: 2, then: goodbye}",
        "    rate_limit: {retry: 1, then: b0_hold}",
        "    ai_failure: {personality: professional, then: goodbye}",
        "    tts_failure: {voice: twilio}",
        "start: b0_say",
        "nodes:",
    ]
    for block in range(BLOCKS):
        after = f"b{block + 1}_say" if block + 1 < BLOCKS else "goodbye"
        b = f"b{block}"
        lines += [
            f"  {b}_say:",
            "    type: say",
            f"    text: Part {block} of your call to {{{{ vars.business }}}}.",
            f"    next: {b}_menu",
            f"  {b}_menu:",
            "    type: gather",
            "    prompt: Say agent or press 0 for a person, or say message to leave one.",
            "    input: [speech, dtmf]",
            "    hints: [agent, message, help]",
            "    routes:",
            f"      - when: said_any('agent', 'person', 'desk {number}') or digits == '0'",
            f"        to: {b}_transfer",
            f"      - when: said_any('message', 'voicemail', 'note {number}')",
            f"        to: {b}_record",
            f"    next: {b}_switch",
            f"  {b}_switch:",
            "    type: switch",
            "    routes:",
            f"      - when: open_between('08:00', '18:{number % 60:02d}', days='Mon-Fri')",
            f"        to: {b}_ai",
            f"    next: {after}",
            f"  {b}_ai:",
            "    type: ai",
            f"    opening: How can I help with part {block}?",
            "    instructions: |",
            f"      Help callers of {{{{ vars.business }}}} with part {block} of their question.",
            "      Keep answers short, and take them on when they are done.",
            "    routes:",
            f"      - when: said_any('human', 'operator', 'staff {number}')",
            f"        to: {b}_transfer",
            "    exits:",
            f"      {after}: The caller is done with this part.",
            f"      {b}_record: The caller wants to leave a message.",
            f"  {b}_transfer:",
            "    type: transfer",
            '    to: "{{ vars.desk }}"',
            "    announce: Connecting you now.",
            "    timeout: 20",
            f"    on_fail: {b}_record",
            f"  {b}_record:",
            "    type: record",
            "    prompt: Please leave a message after the tone.",
            "    max_seconds: 60",
            f"    next: {b}_hold",
            f"  {b}_hold:",
            "    type: say",
            "    text: One moment please.",
            "    pause: 1",
            f"    next: {after}",
        ]
    lines += ["  goodbye:", "    type: hangup", "    text: Thanks for calling. Goodbye!", ""]
    return "\n".join(lines)


def generate(into: Path, count: int) -> Path:
    (into / "flows").mkdir(parents=True)
    (into / "personalities").mkdir()
    for path in (ROOT / "personalities").glob("*.yaml"):
        (into / "personalities" / path.name).write_text(path.read_text())
    for number in range(count):
        (into / "flows" / f"gen_{number:04d}.yaml").write_text(flow_yaml(number))
    return into


def read_plain(files: list[Path], loader: type) -> float:
    started = time.perf_counter()
    for path in files:
        with path.open() as stream:
            yaml.load(stream, Loader=loader)  # SafeLoader or CSafeLoader only
    return time.perf_counter() - started


def measure(args: argparse.Namespace) -> list[Row]:
    count = 100 if args.quick else FLOWS
    plain = fast = loading = 0.0
    with workdir("flows") as scratch:
        root = generate(scratch, count)
        flows = yaml_files([root / "flows"])
        personalities = yaml_files([root / "personalities"])
        c_loader = getattr(yaml, "CSafeLoader", None)
        size = -(-count // CHUNKS)
        for number, first in enumerate(range(0, count, size)):
            chunk = flows[first:first + size]
            note(f"flow loading: chunk {number + 1}/{CHUNKS} ({len(chunk)} flows)")
            files = chunk + personalities
            plain += read_plain(files, yaml.SafeLoader)
            if c_loader is not None:
                fast += read_plain(files, c_loader)
            started = time.perf_counter()
            result = load(files, root=root)
            loading += time.perf_counter() - started
            errors = [p for p in result.problems if p.severity == "error"]
            if errors or result.registry is None or len(result.registry.flows) != len(chunk):
                raise RuntimeError(f"generated flows have problems: {errors[:5]}")
    per_flow, per_flow_plain = loading / count, plain / count
    nodes = 7 * BLOCKS + 1
    return [
        Row(f"6. flow loading, {count} flows of {nodes} nodes: time per flow",
            ms(per_flow), f"{ms(per_flow_plain)} yaml.safe_load", per_flow / per_flow_plain,
            "info", None,
            note=f"whole set {loading:.1f} s in {CHUNKS} chunks (4 personalities each); libyaml "
                 "CSafeLoader " + (f"{ms(fast / count)} per flow" if c_loader else "n/a")),
    ]


if __name__ == "__main__":
    main_for("6. Flow loading: validate and compile vs yaml.safe_load", measure)
