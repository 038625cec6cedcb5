"""The `flask doctor` command: every check, one line each, exit 1 when something is broken.

It reads the settings itself (the environment, and `.env` as every `flask` command does), so it
runs whatever they hold: with settings the server would refuse to start with, `flask` builds no
app, and `flask doctor` is the one command that still runs (engine/web/startup.py).
"""

from __future__ import annotations

import sys

import click

from engine.doctor.local import check_flows, check_store, check_twilio
from engine.doctor.model import check_model
from engine.doctor.pusher import check_pusher
from engine.doctor.report import Check, diagnose, summary
from engine.doctor.requests import check_requests
from engine.web.settings_check import read_settings

CHECKS: tuple[Check, ...] = (check_flows, check_store, check_twilio, check_model, check_pusher,
                             check_requests)


@click.command("doctor")
def doctor_command() -> None:
    """Check the settings, flows, store, Twilio credentials, model endpoint, Pusher and the
    flows' requests; print what works and what to fix; exit 1 when something is broken."""
    settings, problems = read_settings()
    findings = diagnose(settings, problems, CHECKS)
    for finding in findings:
        click.echo(finding.line())
    click.echo(summary(findings))
    sys.exit(1 if any(finding.status == "fail" for finding in findings) else 0)
