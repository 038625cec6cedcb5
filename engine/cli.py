"""The `flask flows ...` commands (validate, export, test, languages), `flask personalities
show`, `flask calls prune` and `flask call`."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TextIO

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from engine.authoring.flow_tests import run_flow_tests
from engine.flows.export import render
from engine.flows.loader import LoadResult, load, load_project
from engine.flows.matrix import render_matrix, support_matrix
from engine.flows.model import Flow, Registry
from engine.flows.personality_view import personality_json
from engine.flows.problems import has_errors
from engine.flows.scenarios import is_scenario_file, load_scenarios, scenario_files
from engine.retention import prune_older_than, retention_days
from engine.terminal import CallOptions, call_clock, call_in_terminal
from engine.web.services import services

flows_cli = AppGroup("flows", help="Validate, export and test call flows.")
speech_cli = AppGroup("speech", help="Text-to-speech: warm the audio cache.")
calls_cli = AppGroup("calls", help="Recorded calls: remove the old ones.")
personalities_cli = AppGroup("personalities", help="Personalities: show one as compiled.")


def project_root() -> Path:
    """The current app's `PROJECT_ROOT` (where flows/ and personalities/ are); needs an app
    context.
    """
    return Path(current_app.config["PROJECT_ROOT"])


@flows_cli.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              help="text: one `path:line:col: message` a line; json: for tools.")
def validate_command(paths: tuple[Path, ...], fmt: str) -> None:
    """Check flows and personalities; every problem at once, exit 1 on any error.

    PATHS are files or directories (default: flows/ and personalities/). Personalities and
    flows not given are read from the project to resolve references. Scenario files
    (flows/*.test.yaml) are checked too, against the flows they call.
    """
    root = project_root()
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise click.UsageError(f"no such file or directory: {', '.join(missing)}")
    flow_paths = [path for path in paths if not is_scenario_file(path)]
    if paths:
        result = load(flow_paths, context_paths=[root / "personalities"], root=Path.cwd()) \
            if flow_paths else LoadResult(registry=None)
    else:
        result = load_project(root)
    flows, complete = _flows_for_scenarios(result, root, given=bool(paths))
    scenarios = load_scenarios(scenario_files(paths or [root / "flows"]), flows,
                               root=Path.cwd() if paths else root, complete=complete)
    result.problems = sorted(set(result.problems + scenarios.problems))
    result.files += scenarios.paths
    errors = sum(problem.severity == "error" for problem in result.problems)
    warnings = len(result.problems) - errors
    if fmt == "json":
        click.echo(json.dumps({"ok": not has_errors(result.problems), "files": result.files,
                               "errors": errors, "warnings": warnings,
                               "problems": [p.as_json() for p in result.problems]}, indent=2))
    else:
        for problem in result.problems:
            click.echo(str(problem))
        summary = (f"{len(result.files)} files checked: {errors} errors, {warnings} warnings")
        click.echo(summary if result.problems else f"{len(result.files)} files checked: all good",
                   err=True)
    sys.exit(1 if has_errors(result.problems) else 0)


def _flows_for_scenarios(result: LoadResult, root: Path, given: bool
                         ) -> tuple[dict[str, Flow], bool]:
    """The flows scenario files are checked against (the given ones over the project's),
    and whether they are all there: a set in error still gives every flow that compiled, so
    one broken flow leaves the other flows' scenario files checked."""
    project = load_project(root) if given else result
    complete = project.ok and (result.ok or not result.files)
    return {**project.compiled, **result.compiled}, complete


def _valid_project(what: str) -> Registry:
    """The project's registry; its problems printed and a ClickException when it does not
    validate (`what` names the files in the message)."""
    result = load_project(project_root())
    if result.registry is None:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        raise click.ClickException(f"the {what} do not validate; fix the problems above first")
    return result.registry


@flows_cli.command("export")
@click.argument("flow_id")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot", "json"]),
              default="mermaid", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
def export_command(flow_id: str, fmt: str, output: Path | None) -> None:
    """Draw FLOW_ID's graph: every node and edge, error edges dashed."""
    registry = _valid_project("flows")
    flow = registry.flows.get(flow_id)
    if flow is None:
        known = ", ".join(sorted(registry.flows)) or "none"
        raise click.ClickException(f"unknown flow '{flow_id}'; known flows: {known}")
    text = render(flow, fmt, registry.personalities)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@flows_cli.command("languages")
@click.argument("flow_ids", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def languages_command(flow_ids: tuple[str, ...], fmt: str) -> None:
    """The language support matrix of FLOW_IDS (every flow when none is given): per flow and
    language, its texts, the Twilio, OpenAI and relay voices, and speech recognition. Exits 1
    when any has a gap."""
    registry = _valid_project("flows")
    unknown = [flow_id for flow_id in flow_ids if flow_id not in registry.flows]
    if unknown:
        known = ", ".join(sorted(registry.flows)) or "none"
        raise click.ClickException(f"unknown flow '{unknown[0]}'; known flows: {known}")
    rows = support_matrix(registry, flow_ids)
    if fmt == "json":
        click.echo(json.dumps([row.as_json() for row in rows], indent=2, ensure_ascii=False))
    else:
        click.echo(render_matrix(rows), nl=False)
    if any(row.gaps for row in rows):
        sys.exit(1)


@personalities_cli.command("show")
@click.argument("personality_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def show_personality_command(personality_id: str, fmt: str) -> None:
    """Print PERSONALITY_ID as compiled: a blend's computed traits, prompt, examples, style
    and voices, with what it blends."""
    registry = _valid_project("files")
    personality = registry.personalities.get(personality_id)
    if personality is None:
        known = ", ".join(sorted(registry.personalities)) or "none"
        raise click.ClickException(f"unknown personality '{personality_id}'; known: {known}")
    data = personality_json(personality)
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    for key, value in data.items():
        if key in ("system_prompt", "examples"):
            continue
        click.echo(f"{key}: {json.dumps(value, ensure_ascii=False)}")
    click.echo("system_prompt: |")
    click.echo("\n".join(f"  {line}" for line in personality.system_prompt.splitlines()))
    click.echo("examples:")
    for example in personality.examples:
        click.echo(f"  - input: {example.input}\n    response: {example.response}")


@speech_cli.command("warm")
def warm_command() -> None:
    """Synthesise the static prompts of every flow (say, prompts, reprompts, goodbyes)."""
    found = services()
    if found.warmup is None:
        raise click.ClickException("OPENAI_API_KEY is not set: calls speak with Twilio voices, "
                                   "so there is nothing to warm")
    if not found.library.ok:
        raise click.ClickException("the flows do not validate; run `flask flows validate`")
    report = found.warmup.run()  # the app's client and cache; after any run in progress
    click.echo(f"{report.total} static prompts: {report.synthesised} synthesised, "
               f"{report.cached} already cached, {report.failed} failed")
    sys.exit(1 if report.failed else 0)


@flows_cli.command("test")
@click.argument("flow_ids", nargs=-1)
@click.option("--min-coverage", type=click.FloatRange(0, 100), default=None, metavar="N",
              help="Fail when a flow's edge coverage is below N percent.")
def test_command(flow_ids: tuple[str, ...], min_coverage: float | None) -> None:
    """Run the scenarios in flows/<flow>.test.yaml (default: every flow) through the real
    webhooks; print PASS/FAIL per scenario and each flow's edge coverage. Exit 1 on any
    failure."""
    sys.exit(run_flow_tests(project_root(), flow_ids, min_coverage, click.echo,
                            lambda line: click.echo(line, err=True), services().make_app))


@calls_cli.command("prune")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="N", help="Remove what is older than N days (default: RETENTION_DAYS).")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
def prune_command(days: float | None, dry_run: bool) -> None:
    """Remove finished calls (state, events, stored answers) last updated more than
    RETENTION_DAYS ago, the events of calls never stored, and old cached speech; print what
    was removed. Live calls are never removed. Servers do this on their own every hour."""
    found = services()
    if days is None:
        days = retention_days(found.settings.retention_days)
    if days is None:
        click.echo("RETENTION_DAYS is off: nothing removed (give --days N to prune anyway)")
        return
    pruned = prune_older_than(found.store, days, time.time(), dry_run=dry_run)
    click.echo(f"{'would remove' if dry_run else 'removed'} {pruned.describe()} "
               f"(older than {days:g} days)")


@click.command("call")
@click.argument("flow_id")
@click.option("--from", "caller", default="+15551230000", show_default=True,
              help="The caller's number.")
@click.option("--to", "called", default=None,
              help="The number called (default: the flow's first number).")
@click.option("--script", type=click.File("r", encoding="utf-8"), default=None,
              help="Read the caller's lines from FILE instead of the keyboard.")
@click.option("--url", default=None,
              help="Call a running server at URL (signed with TWILIO_AUTH_TOKEN) instead of "
                   "this app in process.")
@click.option("--at", "at", default=None, metavar="TIME", callback=lambda _c, _p, value:
              _moment(value),
              help="Call at this moment, in the flow's own timezone unless it has an offset "
                   "(2026-03-04T10:00); the call's clock runs on from there.")
@with_appcontext
def call_command(flow_id: str, caller: str, called: str | None, script: TextIO | None,
                 url: str | None, at: datetime | None) -> None:
    """Call FLOW_ID in the terminal through the webhooks Twilio uses.

    Type what the caller says; an empty line is silence, #1 presses keys, and at a transfer or
    recording the prompt asks how it ends (in a script: !no-answer, !record 10). On a
    ConversationRelay node the call converses over the session's WebSocket: the reply prints
    as it streams, and ! with what was heard of it talks over it. !hangup or Ctrl-D hangs up.
    At the end: the path through the graph and the timings.
    """
    options = CallOptions(flow_id, caller, called, script.read().splitlines() if script else None,
                          url.rstrip("/") if url else None, at)
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    found = services()
    flow = found.library.live.flows.get(flow_id) if found.library.ok else None
    made = None
    if at is not None:
        if url:
            raise click.UsageError("--at sets the clock of a call in process; a server at "
                                   "--url keeps its own")
        if flow is not None:  # else call_in_terminal says the flow is unknown
            config = {key: value for key, value in app.config.items() if key.isupper()}
            made = app = found.make_app({**config, "RELOAD": False},
                                        clock=call_clock(at, flow.timezone))
            zone = f"{at:%z}" if at.tzinfo else flow.timezone
            click.echo(f"The call rings at {at:%Y-%m-%d %H:%M} {zone} (--at).")
    try:
        status = call_in_terminal(app, options, click.echo, sys.stdin,
                                  prompt=lambda text: click.echo(text, nl=False))
    finally:
        if made is not None:
            made.extensions["phoney"].store.close()
    sys.exit(status)


def _moment(value: str | None) -> datetime | None:
    """`--at`'s value as a datetime: ISO 8601 with or without seconds and offset."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: write the moment as 2026-03-04T10:00 (the "
                                 "flow's local time) or with an offset, 2026-03-04T10:00-05:00",
                                 param_hint="--at") from None
