"""`flask calls dial`, `flask calls campaign`, `flask calls campaign-stop` and
`flask calls campaigns`: outbound calls and campaigns from the command line.

They run in the app's context, on its store, flows and Twilio client, so a campaign run here is
the one the dashboard shows; its progress is in the store, and the same command run again
resumes it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
from flask.cli import with_appcontext

from engine.outbound.campaign import (
    Campaign,
    CampaignRunner,
    campaign_id,
    campaigns,
    load,
    request_stop,
)
from engine.outbound.campaign_file import CampaignFileError, Row, read_rows
from engine.outbound.dial import DialError, parse_var
from engine.outbound.quiet import QuietHours
from engine.web.outbound_api import dialer, do_not_call, rest
from engine.web.services import services

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(min|minute|h|hour))?\s*$")


def parse_rate(text: str) -> float:
    """`10/min`, `10`, `120/hour` as calls a minute; click's error otherwise."""
    match = _RATE.fullmatch(text)
    if match is None or float(match[1]) <= 0:
        raise click.BadParameter(f"{text!r}: write calls a minute, such as 10/min or 120/hour")
    per = float(match[1])
    return per / 60.0 if match[2] in ("h", "hour") else per


def _duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", text)
    if match is None:
        raise click.BadParameter(f"{text!r}: write a duration such as 30m, 90s or 2h")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600}[match[2] or "m"]


@click.command("dial")
@with_appcontext
@click.argument("flow_id")
@click.argument("to")
@click.option("--var", "vars_", multiple=True, metavar="NAME=VALUE",
              help="A var of the call's flow; repeat for more.")
def dial_command(flow_id: str, to: str, vars_: tuple[str, ...]) -> None:
    """Call TO on FLOW through Twilio (answering-machine detection when the flow has
    `on_machine`); prints the CallSid."""
    svc = services()
    try:
        values = dict(parse_var(text) for text in vars_)
        placed = dialer(svc).dial(flow_id, to, values, by="cli")
    except DialError as error:
        raise click.ClickException(error.message) from None
    call = placed.call
    amd = " with answering-machine detection" if call.machine_detection else ""
    click.echo(f"{call.call_sid}: calling {call.to} from {call.from_} on flow {call.flow}{amd} "
               f"({placed.status})")


@click.command("campaign")
@with_appcontext
@click.argument("flow_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rate", default="10/min", show_default=True, help="Calls placed a minute.")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 100),
              help="Calls under way at once, at most.")
@click.option("--retries", default=2, show_default=True, type=click.IntRange(0, 10),
              help="Tries again of a call that is busy or not answered.")
@click.option("--retry-delay", default="30m", show_default=True,
              help="Wait before trying a number again (30m, 90s, 2h).")
@click.option("--poll", default=2.0, show_default=True, type=click.FloatRange(0.01, 60),
              help="Seconds between looks at the calls under way.")
def campaign_command(flow_id: str, file: Path, rate: str, concurrency: int, retries: int,
                     retry_delay: str, poll: float) -> None:
    """Call every row of FILE (CSV: a `to` column, an optional `timezone`, the rest vars) on
    FLOW, paced, retried, outside quiet hours; run it again to resume. Ctrl-C stops it."""
    svc = services()
    per_minute, delay = parse_rate(rate), _duration(retry_delay)
    flow = svc.library.live.flows.get(flow_id) if svc.library.ok else None
    if flow is None:
        raise click.ClickException(f"unknown flow {flow_id!r}")
    if not rest(svc).configured:
        raise click.ClickException("placing calls needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    calls = dialer(svc)
    try:  # before any row: a number to call from, and PUBLIC_BASE_URL
        calls.caller_id(flow)
        if not calls.base_url.startswith(("http://", "https://")):
            raise DialError("PUBLIC_BASE_URL is not set: Twilio needs an absolute URL to "
                            "fetch the calls' TwiML from", 503)
    except DialError as error:
        raise click.ClickException(error.message) from None
    text = file.read_text(encoding="utf-8-sig")
    ident = campaign_id(flow_id, text)
    campaign = load(svc.store, ident)
    clock = svc.call_service.clock
    if campaign is None:
        try:
            rows: list[Row] = read_rows(text, do_not_call(svc))
        except CampaignFileError as error:
            raise click.ClickException(f"{file}: {error}") from None
        campaign = Campaign(ident, flow_id, file.name, per_minute, concurrency, retries, delay,
                            clock(), rows=rows)
        for row in rows:
            if row.state == "skipped":
                click.echo(f"{file}:{row.line}: skipped: {row.why}", err=True)
        click.echo(f"campaign {ident}: {len(rows)} rows, "
                   f"{sum(r.state == 'pending' for r in rows)} to call")
    else:
        campaign.rate, campaign.concurrency = per_minute, concurrency
        campaign.retries, campaign.retry_delay = retries, delay
        counts = ", ".join(f"{count} {state}" for state, count in sorted(campaign.counts().items()))
        click.echo(f"campaign {ident}: resuming ({counts})")
    runner = CampaignRunner(campaign, calls, svc.store, default_zone=flow.timezone,
                            quiet=QuietHours.parse(svc.settings.quiet_hours), clock=clock,
                            poll=poll, said=click.echo)
    ended = runner.run()
    counts = ", ".join(f"{count} {state}" for state, count in sorted(ended.counts().items()))
    click.echo(f"campaign {ident}: {ended.status} ({counts})")
    sys.exit(0 if ended.status == "done" else 1)


@click.command("campaign-stop")
@with_appcontext
@click.argument("campaign")
def campaign_stop_command(campaign: str) -> None:
    """Stop CAMPAIGN: its runner places no more calls (those under way go on)."""
    if not request_stop(services().store, campaign):
        raise click.ClickException(f"unknown campaign {campaign!r}; `flask calls campaigns` "
                                   f"lists them")
    click.echo(f"campaign {campaign}: stopping")


@click.command("campaigns")
@with_appcontext
def campaigns_command() -> None:
    """List the campaigns, newest first, with their progress."""
    for found in campaigns(services().store):
        summary = found.summary()
        counts = ", ".join(f"{n} {state}" for state, n in sorted(summary["counts"].items()))
        click.echo(f"{found.id}  {found.flow}  {found.file}  {found.status}  "
                   f"{summary['progress']}%  ({counts})")


COMMANDS = (dial_command, campaign_command, campaign_stop_command, campaigns_command)
"""The commands added to the `flask calls` group."""
